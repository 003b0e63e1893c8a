"""Session: the kiosk user, a single-app session on tty1 and no way out of it from the keyboard.

The ``kiosk`` user has no password (``!*``) and no login shell; the systemd
step's ``kiosk-app.service`` runs cage (which refuses VT switching unless given
``-s``) with the Kivy app as that user on tty1; seatd gives it the seat (the
user is in its group, ``video``). This step removes everything else a keyboard
could reach:

- no getty on any VT (``getty@tty1..6`` and ``autovt@`` masked, logind's
  ``NAutoVTs=0`` and ``ReserveVT=0``), so there is no console to switch to;
- no SysRq (``kernel.sysrq=0``) and no Ctrl-Alt-Del (``ctrl-alt-del.target``
  masked, ``CtrlAltDelBurstAction=none``, ``kernel.ctrl-alt-del=0``);
- the power, suspend and hibernate keys ignored by logind (a patient leaning on
  the keyboard must not end a consultation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, EnsureDirectory, EnsureUser, Symlink, SystemdUnitState, Target, WriteFile

USER_NAME: Final = re.compile(r"[a-z_][a-z0-9_-]{0,30}")
STATE: Final = "/var/lib/kiosk"
STATE_DIRS: Final = ("app", "records", "audit", "identity")
"""Contract of issue 6: ``/var/lib/kiosk/{app,records,audit,identity}``, owned by the kiosk user, 0700."""

SYSCTL: Final = b"""\
# kiosk-provision (session): no magic SysRq keys, Ctrl-Alt-Del does not reboot.
kernel.sysrq = 0
kernel.ctrl-alt-del = 0
"""


def logind_conf(ignore_power_keys: bool) -> bytes:
    lines = [
        "# kiosk-provision (session): no spare VT for a getty, none reserved;",
        "# the booth's keyboard cannot switch, suspend or power off the booth.",
        "[Login]",
        "NAutoVTs=0",
        "ReserveVT=0",
    ]
    if ignore_power_keys:
        lines += [f"{key}=ignore" for key in ("HandlePowerKey", "HandleSuspendKey", "HandleHibernateKey")]
        lines += ["HandleRebootKey=ignore", "HandleLidSwitch=ignore"]
    return ("\n".join(lines) + "\n").encode()


SYSTEM_CONF: Final = b"""\
# kiosk-provision (session): Ctrl-Alt-Del pressed seven times in two seconds
# reboots by default even with ctrl-alt-del.target masked.
[Manager]
CtrlAltDelBurstAction=none
"""


@dataclass(frozen=True)
class SessionConfig:
    user: str
    groups: tuple[str, ...]
    vts: int
    """getty@tty1 .. getty@ttyN are masked."""
    ignore_power_keys: bool


def parse(config: BoothConfig) -> SessionConfig:
    table = config.table("session")
    user = table.string("user", "kiosk", pattern=USER_NAME, what="a user name")
    groups = table.strings("groups", ("video", "audio", "dialout", "plugdev", "input", "render"), pattern=USER_NAME)
    vts = table.integer("mask_vts", 6, minimum=1, maximum=63)
    ignore = table.boolean("ignore_power_keys", True)
    table.done()
    return SessionConfig(user=user, groups=groups, vts=vts, ignore_power_keys=ignore)


@dataclass(frozen=True)
class SessionStep:
    name: str = "session"
    description: str = "kiosk user without password or shell; no getty, VT switch, SysRq or Ctrl-Alt-Del"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse(config)
        user = settings.user
        changes: list[Change] = [EnsureUser(user, home=STATE, shell="/usr/sbin/nologin", groups=settings.groups)]
        changes.append(EnsureDirectory(STATE, mode=0o700, owner=user, group=user))
        changes += [EnsureDirectory(f"{STATE}/{name}", mode=0o700, owner=user, group=user) for name in STATE_DIRS]
        changes += [SystemdUnitState(f"getty@tty{n}.service", "masked") for n in range(1, settings.vts + 1)]
        changes.append(SystemdUnitState("autovt@.service", "masked"))
        changes.append(Symlink("/etc/systemd/system/ctrl-alt-del.target", "/dev/null"))
        changes.append(WriteFile("/etc/systemd/logind.conf.d/50-kiosk.conf", logind_conf(settings.ignore_power_keys)))
        changes.append(WriteFile("/etc/systemd/system.conf.d/50-kiosk.conf", SYSTEM_CONF))
        changes.append(WriteFile("/etc/sysctl.d/55-kiosk-session.conf", SYSCTL))
        return changes


STEP: Final = SessionStep()
