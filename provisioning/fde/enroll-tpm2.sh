#!/bin/bash
# kiosk-enroll-tpm2: bind a booth's LUKS2 volume to its TPM2, so it unlocks at boot
# without a passphrase as long as the firmware's Secure Boot state (PCR 7) is unchanged.
#
#   kiosk-enroll-tpm2 [--pcrs 7] [--tpm2-device auto|PATH|swtpm:host=H,port=P]
#                     [--recovery-key] [--wipe-old-tpm2] [--name NAME] DEVICE
#
# The volume's current passphrase is asked on the terminal, or read from $PASSWORD
# (systemd-cryptenroll's own convention). With --recovery-key a recovery key is
# generated and printed once: the technician files it off the booth.
# See provisioning/fde/README.md for the whole procedure (initrd, crypttab, checks).
set -euo pipefail

pcrs=7
device_tpm=auto
recovery=0
wipe=0
name=""

die() { echo "kiosk-enroll-tpm2: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --pcrs) pcrs="${2:?}"; shift 2 ;;
        --tpm2-device) device_tpm="${2:?}"; shift 2 ;;
        --recovery-key) recovery=1; shift ;;
        --wipe-old-tpm2) wipe=1; shift ;;
        --name) name="${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || die "one LUKS2 device expected (see --help)"
volume="$1"

[[ "$pcrs" =~ ^[0-9]+(\+[0-9]+)*$ ]] || die "--pcrs takes PCR numbers joined by +, e.g. 7 or 0+7"
command -v systemd-cryptenroll >/dev/null || die "systemd-cryptenroll is missing (package systemd)"
command -v cryptsetup >/dev/null || die "cryptsetup is missing"
cryptsetup isLuks --type luks2 "$volume" || die "$volume is not a LUKS2 volume"

if [ "$device_tpm" = auto ] && ! compgen -G '/dev/tpmrm*' >/dev/null; then
    die "no TPM2 resource manager (/dev/tpmrm0): enable the TPM in the firmware"
fi

if [ "$recovery" = 1 ]; then
    # Printed once on standard output; systemd-cryptenroll adds it as another keyslot.
    systemd-cryptenroll --recovery-key "$volume"
fi

wipe_args=()
if [ "$wipe" = 1 ]; then
    wipe_args=(--wipe-slot=tpm2)
fi
systemd-cryptenroll --tpm2-device="$device_tpm" --tpm2-pcrs="$pcrs" "${wipe_args[@]}" "$volume"

cryptsetup luksDump "$volume" | grep -q 'systemd-tpm2' || die "no systemd-tpm2 token after enrolment"

if [ -n "$name" ]; then
    uuid=$(cryptsetup luksUUID "$volume")
    echo "crypttab line for $name (tpm2-device=auto needs dracut or a systemd initrd, not initramfs-tools):"
    echo "$name UUID=$uuid none tpm2-device=auto,discard"
fi
if [ -d /etc/initramfs-tools ] && ! command -v dracut >/dev/null; then
    echo "kiosk-enroll-tpm2: warning: initramfs-tools ignores tpm2-device=; install dracut (see README)" >&2
fi
echo "enrolled: $volume unlocks with the TPM2 (PCRs $pcrs)"
