"""Unattended upgrades: Debian security updates only, installed daily, reboots in a chosen window.

- the Debian security archive in apt's sources (added when no source
  names it yet: mmdebstrap and some installers leave it out);
- ``unattended-upgrades`` restricted to the security origin: ``#clear`` drops
  the package's default origins (point releases too), so only security fixes
  reach a booth without a technician;
- a reboot, when an upgrade needs one, at ``reboot_time`` (a booth is idle at
  night), even with the kiosk session logged in (it always is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, RemovePath, Target, WriteFile

SECURITY_SOURCES: Final = "/etc/apt/sources.list.d/kiosk-debian-security.list"
TIME: Final = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d")
MIRROR: Final = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[A-Za-z0-9._~/-]*)?")


@dataclass(frozen=True)
class UpgradesConfig:
    reboot: bool
    reboot_time: str
    security_mirror: str
    codename: str


def parse(config: BoothConfig) -> UpgradesConfig:
    table = config.table("upgrades")
    reboot = table.boolean("automatic_reboot", True)
    time = table.string("reboot_time", "03:30", pattern=TIME, what="a time HH:MM")
    mirror = table.string(
        "security_mirror", "http://deb.debian.org/debian-security", pattern=MIRROR, what="an http(s) URL"
    )
    codename = table.string("codename", "bookworm", pattern=re.compile(r"[a-z]+"), what="a Debian codename")
    table.done()
    return UpgradesConfig(reboot, time, mirror, codename)


def render_unattended(settings: UpgradesConfig) -> bytes:
    return f"""\
// kiosk-provision (upgrades): Debian security updates only; edit [upgrades] in the booth configuration.
#clear Unattended-Upgrade::Origins-Pattern;
#clear Unattended-Upgrade::Allowed-Origins;
Unattended-Upgrade::Origins-Pattern {{
    "origin=Debian,codename=${{distro_codename}}-security,label=Debian-Security";
}};
Unattended-Upgrade::Remove-Unused-Dependencies "true";
Unattended-Upgrade::Remove-Unused-Kernel-Packages "true";
Unattended-Upgrade::Automatic-Reboot "{"true" if settings.reboot else "false"}";
Unattended-Upgrade::Automatic-Reboot-WithUsers "true";
Unattended-Upgrade::Automatic-Reboot-Time "{settings.reboot_time}";
Unattended-Upgrade::SyslogEnable "true";
""".encode()


PERIODIC: Final = b"""\
// kiosk-provision (upgrades): refresh the lists and upgrade every day.
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
"""


def render_security_sources(settings: UpgradesConfig) -> bytes:
    # One-line format: what the Debian installer writes, and what audit tools (Lynis PKGS-7388) recognise.
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (
        "# kiosk-provision (upgrades): the Debian security archive.\n"
        f"deb [signed-by={keyring}] {settings.security_mirror} {settings.codename}-security main\n"
    ).encode()


def has_security_source(target: Target) -> bool:
    """Whether a source other than this step's already names the security archive."""
    texts = [target.read_text("/etc/apt/sources.list") or ""]
    directory = target.path("/etc/apt/sources.list.d", follow=True)
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix in (".list", ".sources") and f"/etc/apt/sources.list.d/{path.name}" != SECURITY_SOURCES:
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
    for text in texts:
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("#") or not stripped:
                continue
            if "-security" in stripped or "debian-security" in stripped:
                return True
    return False


@dataclass(frozen=True)
class UpgradesStep:
    name: str = "upgrades"
    description: str = "unattended Debian security upgrades with a reboot window"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse(config)
        changes: list[Change] = [
            WriteFile("/etc/apt/apt.conf.d/20auto-upgrades", PERIODIC),
            WriteFile("/etc/apt/apt.conf.d/52kiosk-unattended-upgrades", render_unattended(settings)),
        ]
        if has_security_source(target):
            changes.append(RemovePath(SECURITY_SOURCES))
        else:
            changes.append(WriteFile(SECURITY_SOURCES, render_security_sources(settings)))
        return changes


STEP: Final = UpgradesStep()
