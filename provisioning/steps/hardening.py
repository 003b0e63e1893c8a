"""System hardening that is neither a sysctl nor a mount (ANSSI BP-028, and what Lynis checks for).

- ``/etc/login.defs``: umask 027 (R35), password ageing and hashing rounds
  for the accounts that have passwords (the kiosk user has none);
- no core dumps (limits and systemd-coredump): a dump of the booth app could
  hold a patient's data;
- a shell idle timeout (``TMOUT``) for maintenance shells;
- a legal banner on the console and over the network;
- kernel modules a booth never needs refused at load (``install M /bin/false``):
  USB and FireWire storage (USBGuard blocks the devices too), Thunderbolt,
  rare network protocols and file systems (R. "reduce the attack surface").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, Target, WriteFile

MODULE: Final = re.compile(r"[a-z0-9_-]{1,64}")
MODULES: Final = (
    "usb-storage",
    "uas",
    "firewire-core",
    "firewire-ohci",
    "firewire-sbp2",
    "thunderbolt",
    "dccp",
    "sctp",
    "rds",
    "tipc",
    "cramfs",
    "freevxfs",
    "jffs2",
    "hfs",
    "hfsplus",
    "udf",
)
BANNER: Final = "Teleconsultation booth. Authorised maintenance personnel only; every action is logged and audited."

PROFILE_LIMITS: Final = b"""\
# kiosk-provision (hardening): no core dumps from login shells either.
ulimit -c 0
"""

CORE_LIMITS: Final = b"""\
# kiosk-provision (hardening): no core dumps (a dump of the booth app could hold patient data).
*    hard    core    0
root hard    core    0
"""

COREDUMP: Final = b"""\
# kiosk-provision (hardening): systemd-coredump keeps nothing.
[Coredump]
Storage=none
ProcessSizeMax=0
"""


@dataclass(frozen=True)
class HardeningConfig:
    umask: str
    shell_timeout: int
    banner: str
    blacklist: tuple[str, ...]
    pass_max_days: int


def parse(config: BoothConfig) -> HardeningConfig:
    table = config.table("hardening")
    umask = table.string("umask", "027", pattern=re.compile(r"0[0-7]{2}"), what="an octal umask like 027")
    timeout = table.integer("shell_timeout", 600, minimum=0, maximum=86400)
    banner = table.string("banner", BANNER, pattern=re.compile(r"[ -~]{1,600}"), what="one line of printable ASCII")
    blacklist = table.strings("blacklist_modules", MODULES, pattern=MODULE, what="a kernel module name")
    max_days = table.integer("pass_max_days", 365, minimum=1, maximum=99999)
    table.done()
    return HardeningConfig(umask, timeout, banner, blacklist, max_days)


def login_defs(current: str, settings: HardeningConfig) -> str:
    """``current`` with the step's keys set (a key's first line replaced, later duplicates removed)."""
    wanted = {
        "UMASK": settings.umask,
        "PASS_MAX_DAYS": str(settings.pass_max_days),
        "PASS_MIN_DAYS": "1",
        "PASS_WARN_AGE": "14",
        "ENCRYPT_METHOD": "YESCRYPT",
        "YESCRYPT_COST_FACTOR": "8",
        "SHA_CRYPT_MIN_ROUNDS": "65536",
        "SHA_CRYPT_MAX_ROUNDS": "65536",
        "HOME_MODE": "0700",
    }
    done: set[str] = set()
    lines: list[str] = []
    for line in current.splitlines():
        fields = line.split()
        key = fields[0] if fields and not line.lstrip().startswith("#") else None
        if key in wanted:
            if key not in done:
                lines.append(f"{key}\t{wanted[key]}")
                done.add(key)
            continue
        lines.append(line)
    missing = [key for key in wanted if key not in done]
    if missing:
        lines.append("# kiosk-provision (hardening)")
        lines += [f"{key}\t{wanted[key]}" for key in missing]
    return "\n".join(lines) + "\n"


def modprobe(settings: HardeningConfig) -> bytes:
    lines = ["# kiosk-provision (hardening): modules a booth never loads; loading one fails."]
    for module in settings.blacklist:
        lines += [f"blacklist {module}", f"install {module} /bin/false"]
    return ("\n".join(lines) + "\n").encode()


def tmout(settings: HardeningConfig) -> bytes:
    return (
        "# kiosk-provision (hardening): idle maintenance shells end by themselves.\n"
        f"TMOUT={settings.shell_timeout}\nreadonly TMOUT\nexport TMOUT\n"
    ).encode()


@dataclass(frozen=True)
class HardeningStep:
    name: str = "hardening"
    description: str = "umask and login.defs, no core dumps, shell timeout, banners, refused kernel modules"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse(config)
        current = target.read_text("/etc/login.defs") or ""
        changes: list[Change] = [
            WriteFile("/etc/login.defs", login_defs(current, settings).encode()),
            WriteFile("/etc/security/limits.d/50-kiosk-core.conf", CORE_LIMITS),
            WriteFile("/etc/systemd/coredump.conf.d/50-kiosk.conf", COREDUMP),
            WriteFile("/etc/profile.d/kiosk-limits.sh", PROFILE_LIMITS),
            WriteFile("/etc/issue", f"{settings.banner}\n".encode()),
            WriteFile("/etc/issue.net", f"{settings.banner}\n".encode()),
            WriteFile("/etc/modprobe.d/kiosk-blacklist.conf", modprobe(settings)),
        ]
        if settings.shell_timeout:
            changes.append(WriteFile("/etc/profile.d/kiosk-tmout.sh", tmout(settings)))
        return changes


STEP: Final = HardeningStep()
