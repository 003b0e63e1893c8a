"""Mount hardening (ANSSI BP-028 R28): nodev, nosuid, noexec wherever nothing is run from.

The step owns one block of ``/etc/fstab`` between marker lines and leaves the
rest alone, except a line of its own mount points, which it comments out (two
lines for one mount point would leave the outcome to chance):

- ``/tmp`` and ``/dev/shm``: tmpfs, ``nodev,nosuid,noexec``; apt remounts
  ``/tmp`` executable for the length of a dpkg run (some maintainer scripts
  run from it) through a ``DPkg::Pre-Invoke``/``Post-Invoke`` pair;
- ``/var/tmp``, ``/home`` and ``/var/lib/kiosk``: bound onto themselves with
  ``nodev,nosuid,noexec`` (or the device given in ``[mounts] kiosk_state_device``
  for ``/var/lib/kiosk``, when it has a partition of its own). Nothing runs
  from the kiosk state: the project lives in ``/opt/kiosk/venv``;
- ``/proc`` with ``hidepid=invisible``: a user sees only its own processes;
  members of the ``proc`` group (systemd-logind, which must see every session's
  processes) see all.

These take effect at the next boot; the whole-system test checks the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, EnsureGroup, Target, WriteFile
from provisioning.errors import ConfigError

BEGIN: Final = "# --- kiosk-provision (mounts) begin: edit [mounts] in the booth configuration ---"
END: Final = "# --- kiosk-provision (mounts) end ---"
REPLACED: Final = "# replaced by kiosk-provision: "
DEVICE: Final = re.compile(r"(?:/dev/[A-Za-z0-9/_.-]+|(?:UUID|PARTUUID|LABEL|PARTLABEL)=[A-Za-z0-9._-]+)")
SIZE: Final = re.compile(r"\d{1,6}[kKmMgG%]?")
HARDENED: Final = "nodev,nosuid,noexec"

APT_TMP_EXEC: Final = b"""\
// kiosk-provision (mounts): /tmp is noexec; some maintainer scripts run from it,
// so it is executable only while dpkg runs.
DPkg::Pre-Invoke { "if mountpoint -q /tmp; then mount -o remount,exec /tmp; fi"; };
DPkg::Post-Invoke { "if mountpoint -q /tmp; then mount -o remount,noexec /tmp; fi"; };
"""

LOGIND_PROC: Final = b"""\
# kiosk-provision (mounts): /proc is mounted hidepid=invisible,gid=proc; logind
# must still see the processes of every session it tracks.
[Service]
SupplementaryGroups=proc
"""


@dataclass(frozen=True)
class MountsConfig:
    tmp_size: str
    hidepid: bool
    bind_hardened: tuple[str, ...]
    kiosk_state_device: str


def parse(config: BoothConfig) -> MountsConfig:
    table = config.table("mounts")
    size = table.string("tmp_size", "25%", pattern=SIZE, what="a tmpfs size (e.g. 512M or 25%)")
    hidepid = table.boolean("hidepid", True)
    binds = table.strings(
        "bind_hardened", ("/var/tmp", "/home", "/var/lib/kiosk"), pattern=re.compile(r"/[A-Za-z0-9/_.-]+")
    )
    device = table.string("kiosk_state_device", "")
    table.done()
    if device and DEVICE.fullmatch(device) is None:
        raise ConfigError("mounts.kiosk_state_device", "must be /dev/... or UUID=, PARTUUID=, LABEL=, PARTLABEL=")
    return MountsConfig(tmp_size=size, hidepid=hidepid, bind_hardened=binds, kiosk_state_device=device)


def entries(settings: MountsConfig) -> list[tuple[str, str, str, str]]:
    """(source, mount point, type, options) of the block, in mount order."""
    rows = [
        ("tmpfs", "/tmp", "tmpfs", f"{HARDENED},mode=1777,size={settings.tmp_size}"),
        ("tmpfs", "/dev/shm", "tmpfs", f"{HARDENED},mode=1777"),
    ]
    for point in settings.bind_hardened:
        if point == "/var/lib/kiosk" and settings.kiosk_state_device:
            rows.append((settings.kiosk_state_device, point, "ext4", f"{HARDENED},noatime"))
        else:
            rows.append((point, point, "none", f"bind,{HARDENED}"))
    if settings.hidepid:
        rows.append(("proc", "/proc", "proc", f"{HARDENED},hidepid=invisible,gid=proc"))
    return rows


def render_fstab(current: str, settings: MountsConfig) -> str:
    """``current`` with the step's block (re)written at its end and conflicting lines commented out."""
    rows = entries(settings)
    points = {row[1] for row in rows}
    kept: list[str] = []
    inside = False
    for line in current.splitlines():
        if line == BEGIN:
            inside = True
        elif line == END:
            inside = False
        elif not inside:
            fields = line.split()
            if fields and not line.lstrip().startswith("#") and len(fields) >= 2 and fields[1] in points:
                line = REPLACED + line
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    block = [BEGIN, *("\t".join((*row, "0", "0")) for row in rows), END]
    return "\n".join([*kept, *([""] if kept else []), *block]) + "\n"


@dataclass(frozen=True)
class MountsStep:
    name: str = "mounts"
    description: str = "tmpfs /tmp and /dev/shm, hardened bind mounts, /proc hidepid (fstab)"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse(config)
        current = target.read_text("/etc/fstab") or ""
        changes: list[Change] = []
        if settings.hidepid:
            changes.append(EnsureGroup("proc"))
            changes.append(WriteFile("/etc/systemd/system/systemd-logind.service.d/50-kiosk-proc.conf", LOGIND_PROC))
        changes.append(WriteFile("/etc/fstab", render_fstab(current, settings).encode()))
        changes.append(WriteFile("/etc/apt/apt.conf.d/50kiosk-tmp-exec", APT_TMP_EXEC))
        return changes


STEP: Final = MountsStep()
