"""Full-disk encryption support: LUKS2 unlocked by the TPM2 (``provisioning/fde/README.md``).

With ``[fde] enabled = true``: dracut (Debian 12's initramfs-tools ignores
``tpm2-device=`` in crypttab) with the systemd, crypt and tpm2-tss modules,
the TPM2 tools and libraries, and ``/usr/local/sbin/kiosk-enroll-tpm2``. The
enrolment itself needs the booth's TPM and the volume's passphrase: the
technician runs it (README, step 4). Without ``enabled`` the step does nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, EnsurePackages, Target, WriteFile

SCRIPT: Final = Path(__file__).parents[1] / "fde" / "enroll-tpm2.sh"
PCRS: Final = re.compile(r"\d{1,2}(?:\+\d{1,2})*")
PACKAGES: Final = ("dracut", "cryptsetup", "tpm2-tools", "libtss2-esys-3.0.2-0", "libtss2-rc0", "libtss2-mu0")


@dataclass(frozen=True)
class FdeConfig:
    enabled: bool
    pcrs: str


def parse(config: BoothConfig) -> FdeConfig:
    table = config.table("fde")
    enabled = table.boolean("enabled", False)
    pcrs = table.string("pcrs", "7", pattern=PCRS, what="PCR numbers joined by +, e.g. 7 or 0+7")
    table.done()
    return FdeConfig(enabled, pcrs)


def dracut_conf(settings: FdeConfig) -> bytes:
    return (
        "# kiosk-provision (fde): the initrd runs systemd-cryptsetup, which unseals the LUKS2 key\n"
        f"# from the TPM2 (PCRs {settings.pcrs}); initramfs-tools would ignore tpm2-device=.\n"
        'add_dracutmodules+=" systemd crypt tpm2-tss "\n'
        'hostonly="yes"\n'
    ).encode()


@dataclass(frozen=True)
class FdeStep:
    name: str = "fde"
    description: str = "LUKS2 + TPM2 support: dracut with tpm2-tss, kiosk-enroll-tpm2"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse(config)
        if not settings.enabled:
            return []
        return [
            EnsurePackages(PACKAGES),
            WriteFile("/etc/dracut.conf.d/50-kiosk-tpm2.conf", dracut_conf(settings)),
            WriteFile("/usr/local/sbin/kiosk-enroll-tpm2", SCRIPT.read_bytes(), mode=0o755),
        ]


STEP: Final = FdeStep()
