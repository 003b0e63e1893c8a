"""auditd: who touched the booth's configuration, identity, software and accounts.

One rules file in ``/etc/audit/rules.d/`` (``augenrules`` concatenates them
into ``audit.rules`` at boot). Watches (``-w PATH -p PERMS -k KEY``) cover the
booth's own files (``/etc/kiosk``, its identity key, the project in
``/opt/kiosk``), the account databases and sudoers, and the policies other
steps write (SSH, nftables, USBGuard, AppArmor, units). Syscall rules log
module loading and clock changes (ANSSI BP-028 R73). With ``immutable`` (the
default) the rules end with ``-e 2``: changing them takes a reboot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, SystemdUnitState, Target, WriteFile

PATH: Final = "/etc/audit/rules.d/50-kiosk.rules"
WATCH_PATH: Final = re.compile(r"/[A-Za-z0-9/_.@+-]*")

WATCHES: Final[tuple[tuple[str, str, str], ...]] = (
    # (path, permissions, key)
    ("/etc/kiosk/", "wa", "kiosk-config"),
    ("/var/lib/kiosk/identity/", "rwa", "kiosk-identity"),
    ("/opt/kiosk/", "wa", "kiosk-software"),
    ("/etc/passwd", "wa", "accounts"),
    ("/etc/shadow", "wa", "accounts"),
    ("/etc/group", "wa", "accounts"),
    ("/etc/gshadow", "wa", "accounts"),
    ("/etc/sudoers", "wa", "privilege"),
    ("/etc/sudoers.d/", "wa", "privilege"),
    ("/etc/pam.d/", "wa", "privilege"),
    ("/etc/security/", "wa", "privilege"),
    ("/etc/ssh/sshd_config", "wa", "sshd"),
    ("/etc/ssh/sshd_config.d/", "wa", "sshd"),
    ("/etc/nftables.conf", "wa", "firewall"),
    ("/etc/usbguard/", "wa", "usbguard"),
    ("/etc/apparmor.d/", "wa", "apparmor"),
    ("/etc/systemd/system/", "wa", "units"),
    ("/etc/sysctl.d/", "wa", "sysctl"),
    ("/etc/fstab", "wa", "mounts"),
    ("/etc/audit/", "wa", "audit-config"),
    ("/etc/apt/", "wa", "packages"),
)

SYSCALLS: Final = (
    "-a always,exit -F arch=b64 -S init_module,finit_module,delete_module -F auid!=unset -k modules",
    "-a always,exit -F arch=b32 -S init_module,finit_module,delete_module -F auid!=unset -k modules",
    "-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time",
    "-a always,exit -F arch=b32 -S adjtimex,settimeofday,clock_settime -k time",
    "-a always,exit -F arch=b64 -S mount,umount2 -F auid!=unset -k mounts",
    "-a always,exit -F arch=b64 -S kexec_load,kexec_file_load -k kexec",
)


@dataclass(frozen=True)
class AuditdConfig:
    extra_watches: tuple[str, ...]
    immutable: bool
    backlog: int


def parse(config: BoothConfig) -> AuditdConfig:
    table = config.table("auditd")
    extra = table.strings("extra_watches", (), pattern=WATCH_PATH, what="an absolute path")
    immutable = table.boolean("immutable", True)
    backlog = table.integer("backlog", 8192, minimum=64, maximum=1 << 20)
    table.done()
    return AuditdConfig(extra_watches=extra, immutable=immutable, backlog=backlog)


def render(settings: AuditdConfig) -> bytes:
    lines = [
        "## kiosk-provision (auditd): edit [auditd] in the booth configuration.",
        "-D",
        f"-b {settings.backlog}",
        # 1: a lost record is logged (2 would panic the booth mid-consultation).
        "-f 1",
        "--backlog_wait_time 60000",
    ]
    lines += [f"-w {path} -p {perms} -k {key}" for path, perms, key in WATCHES]
    lines += [f"-w {path} -p wa -k kiosk-extra" for path in settings.extra_watches]
    lines += SYSCALLS
    if settings.immutable:
        lines.append("-e 2")
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class AuditdStep:
    name: str = "auditd"
    description: str = "audit rules watching the booth's files, accounts and policies"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        return [
            WriteFile(PATH, render(parse(config)), mode=0o640),
            SystemdUnitState("auditd.service", "enabled"),
        ]


STEP: Final = AuditdStep()
