"""Packages: what a booth needs, installed with apt without recommends; what it must not have, purged.

The defaults are the booth's whole footprint: the single-app session (cage,
Xwayland, Mesa, the Python runtime the project's venv uses), the card reader
stack (pcscd, libccid), and the tools the other steps configure (nftables,
USBGuard, auditd, AppArmor, unattended-upgrades...). Recommends stay off for
good (``/etc/apt/apt.conf.d/60kiosk-no-recommends``): every package on a booth
is one somebody chose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, EnsurePackages, RemovePackages, Target, WriteFile
from provisioning.errors import ConfigError

PACKAGE: Final = re.compile(r"[a-z0-9][a-z0-9+.-]+")
"""Debian policy 5.6.1: a package name."""

BOOTH: Final = (
    # Boot, time, logind (through dbus and pam_systemd: the power keys it ignores, the VTs it leaves alone).
    "systemd-sysv",
    "systemd-timesyncd",
    "dbus",
    "libpam-systemd",
    "ca-certificates",
    # The single-app session: cage (a Wayland kiosk compositor) running the Kivy app.
    "cage",
    # seatd gives cage the seat (DRM, input) without a login session; see kiosk-app.service.
    "seatd",
    "xwayland",
    "libgl1",
    "libegl1",
    "libgles2",
    "libgl1-mesa-dri",
    "libglib2.0-0",
    "libasound2",
    "fonts-dejavu-core",
    "python3",
    "python3-venv",
    # Carte Vitale reader (PC/SC, CCID readers).
    "pcscd",
    "libccid",
    # Configured by the hardening steps.
    "nftables",
    "usbguard",
    "auditd",
    "apparmor",
    "unattended-upgrades",
    "apt-listchanges",
    "debsums",
    "libpam-tmpdir",
    "libpam-pwquality",
    "acct",
    "aide",
    # A rootkit scanner (daily); small, no daemon.
    "chkrootkit",
    "tpm2-tools",
)

FORBIDDEN: Final = (
    # Clear-text remote access and legacy network services (ANSSI BP-028 R62: no unneeded service).
    "telnet",
    "telnetd",
    "inetutils-telnet",
    "inetutils-telnetd",
    "ftp",
    "tnftp",
    "vsftpd",
    "tftpd-hpa",
    "rsh-client",
    "rsh-server",
    "talk",
    "talkd",
    "nis",
    "xinetd",
    "rpcbind",
    "nfs-common",
    "nfs-kernel-server",
    "samba",
    "snmpd",
    # Announces the booth on the pharmacy's network.
    "avahi-daemon",
    # Sends the package list home.
    "popularity-contest",
    # A compiler on a booth only serves an intruder (needrestart is left out of the
    # defaults for that reason: it depends on binutils; the reboot window covers it).
    "gcc",
    "build-essential",
)

NO_RECOMMENDS: Final = b"""\
// kiosk-provision: every package on a booth is one somebody chose.
APT::Install-Recommends "false";
APT::Install-Suggests "false";
"""


@dataclass(frozen=True)
class PackagesConfig:
    install: tuple[str, ...]
    remove: tuple[str, ...]


def parse(config: BoothConfig) -> PackagesConfig:
    table = config.table("packages")
    what = "a Debian package name"
    install = table.strings("install", BOOTH, pattern=PACKAGE, what=what)
    extra = table.strings("extra", (), pattern=PACKAGE, what=what)
    remove = table.strings("remove", FORBIDDEN, pattern=PACKAGE, what=what)
    table.done()
    wanted = tuple(dict.fromkeys(install + extra))
    both = sorted(set(wanted) & set(remove))
    if both:
        raise ConfigError("packages.remove", f"{both[0]} is also to be installed")
    return PackagesConfig(install=wanted, remove=remove)


@dataclass(frozen=True)
class PackagesStep:
    name: str = "packages"
    description: str = "booth packages installed without recommends; forbidden packages purged"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse(config)
        changes: list[Change] = [WriteFile("/etc/apt/apt.conf.d/60kiosk-no-recommends", NO_RECOMMENDS)]
        if settings.install:
            changes.append(EnsurePackages(settings.install))
        if settings.remove:
            changes.append(RemovePackages(settings.remove))
        return changes


STEP: Final = PackagesStep()
