"""udev: stable names for the booth's peripherals, and ModemManager kept off them.

Renders ``/etc/udev/rules.d/70-kiosk-peripherals.rules``. With an empty
``[udev]`` table the result is exactly the repository's
``systemd/70-kiosk-peripherals.rules`` (a test keeps them equal), which
handles the USB-serial bridges our peripherals use. The configuration adds,
per role:

- serial peripherals and cameras: ``/dev/kiosk/<role>`` (``/dev/kiosk/nibp``,
  ``/dev/kiosk/otoscope``), matched on vendor:product and, when two units of
  one model are fitted, the adapter's USB serial number;
- sound cards: a fixed ALSA card id, so ``hw:CARD=Stethoscope`` names the
  stethoscope whatever the plug order (udev writes the card's ``id``
  attribute, as alsa-utils' own rules do).

The role is set before the rules that use it, in the same file: udev reads
rule files in name order, so a separate roles file would have to sort first.
ModemManager is also masked: its AT-command probes on a serial port could
start a blood-pressure cycle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from devices.config import AUDIO_ROLES, CAMERA_ROLES, SERIAL_ROLES
from provisioning.config import BoothConfig
from provisioning.core import Change, SystemdUnitState, Target, WriteFile
from provisioning.fields import check_keys, fail, get_list, get_str

RULES: Final = "/etc/udev/rules.d/70-kiosk-peripherals.rules"

BRIDGES: Final = (
    ("Contec CMS50D+ cables: Silicon Labs CP210x (newer) and Prolific PL2303 (older).", ("10c4:ea60", "067b:2303")),
    ("NIBP modules behind FTDI FT232R/FT231X bridges.", ("0403:6001", "0403:6015")),
    ("LU90614 modules behind WCH CH340/CH341 bridges.", ("1a86:7523",)),
)
"""The USB-serial bridges of the peripherals the project supports (devices/)."""

_DEVICE_ID: Final = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
_SERIAL: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CARD_ID: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,14}$")
"""ALSA card ids: at most 15 characters (snd_card.id), letters first so hw:CARD= never reads it as an index."""


@dataclass(frozen=True)
class RoleDevice:
    """One configured peripheral: which role it plays and how udev recognises it."""

    kind: str
    """"serial", "camera" or "sound"."""
    role: str
    device_id: str
    serial: str = ""
    card: str = ""
    """Sound only: the ALSA card id to give it."""


@dataclass(frozen=True)
class UdevSettings:
    """The ``[udev]`` table."""

    devices: tuple[RoleDevice, ...] = ()


_KINDS: Final = {"serial": tuple(SERIAL_ROLES), "camera": CAMERA_ROLES, "sound": AUDIO_ROLES}


def _default_card(role: str) -> str:
    # The names devices/peripherals.example.toml uses: hw:CARD=Stethoscope, hw:CARD=Booth.
    return {"stethoscope": "Stethoscope", "microphone": "Booth"}.get(role, role.title().replace("_", ""))


def parse_settings(table: Mapping[str, Any]) -> UdevSettings:
    check_keys(table, set(_KINDS), "udev")
    devices: list[RoleDevice] = []
    for kind, roles in _KINDS.items():
        for i, entry in enumerate(get_list(table, kind, "udev")):
            where = f"udev.{kind}[{i}]"
            if not isinstance(entry, dict):
                raise fail(where, "must be a table with role and id")
            check_keys(entry, {"role", "id", "serial", "card"} if kind == "sound" else {"role", "id", "serial"}, where)
            role = get_str(entry, "role", where)
            if role not in roles:
                raise fail(f"{where}.role", f"must be one of {', '.join(roles)}")
            device_id = get_str(entry, "id", where).lower()
            if not _DEVICE_ID.match(device_id):
                raise fail(f"{where}.id", 'must be "vendor:product" in hex, e.g. "0403:6001"')
            serial = entry.get("serial", "")
            if serial != "" and (not isinstance(serial, str) or not _SERIAL.match(serial)):
                raise fail(f"{where}.serial", "must be letters, digits, '.', '_' or '-'")
            card = ""
            if kind == "sound":
                card = get_str(entry, "card", where, _default_card(role))
                if not _CARD_ID.match(card):
                    raise fail(f"{where}.card", "must be a letter then up to 14 letters, digits or '_'")
            devices.append(RoleDevice(kind, role, device_id, serial, card))
    roles_seen = [d.role for d in devices]
    for role in roles_seen:
        if roles_seen.count(role) > 1:
            raise fail("udev", f"role {role!r} is given to two devices")
    cards = [d.card for d in devices if d.card]
    if len(set(cards)) != len(cards):
        raise fail("udev.sound", "two sound cards would get the same card id")
    return UdevSettings(devices=tuple(devices))


def _usb_match(device: RoleDevice) -> str:
    vendor, product = device.device_id.split(":")
    match = f'ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}"'
    if device.serial:
        match += f', ATTRS{{serial}}=="{device.serial}"'
    return match


def _bridge_rule(device_id: str) -> str:
    vendor, product = device_id.split(":")
    return (
        f'SUBSYSTEM=="tty", ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}", '
        'ENV{ID_MM_DEVICE_IGNORE}="1", GROUP="kiosk", MODE="0660"'
    )


_HEADER: Final = """\
# Stable names and ownership for the booth's peripherals.
#
# Rendered by kiosk-provision (step udev, provisioning/steps/udev.py); the copy
# in the repository's systemd/ is the rendering of an empty [udev] table.
#
# udev's own 60-serial.rules and 60-persistent-v4l.rules already create
# /dev/serial/by-id/... and /dev/v4l/by-id/...; the booth's configuration
# (/etc/kiosk/peripherals.toml) refers to those. These rules add, for the
# USB-serial bridges our peripherals use:
#  - ID_MM_DEVICE_IGNORE, so ModemManager never probes the port with AT
#    commands: its probe bytes would start a blood-pressure cycle or confuse an
#    oximeter's framing;
#  - group "kiosk" access, so the app runs without root;
#  - a role name under /dev/kiosk/ for each peripheral the [udev] table of the
#    booth configuration names (ENV{KIOSK_ROLE}, set below before it is used),
#    and a fixed ALSA card id for its sound cards (hw:CARD=Stethoscope).
#
# Install: /etc/udev/rules.d/70-kiosk-peripherals.rules, then
#   udevadm control --reload && udevadm trigger --subsystem-match=tty

ACTION=="remove", GOTO="kiosk_end"
"""

_FOOTER: Final = """
# Role names: /dev/kiosk/oximeter, /dev/kiosk/nibp, /dev/kiosk/otoscope, ...
SUBSYSTEM=="tty", ENV{KIOSK_ROLE}=="?*", SYMLINK+="kiosk/$env{KIOSK_ROLE}"

# Cameras (otoscope, dermatoscope, booth camera) and the stethoscope's sound card.
# UVC is USB interface class 0x0e.
SUBSYSTEM=="video4linux", ATTRS{bInterfaceClass}=="0e", GROUP="kiosk", MODE="0660"
SUBSYSTEM=="video4linux", ENV{KIOSK_ROLE}=="?*", SYMLINK+="kiosk/$env{KIOSK_ROLE}"
SUBSYSTEM=="sound", ENV{KIOSK_ROLE}=="?*", GROUP="kiosk", MODE="0660"

LABEL="kiosk_end"
"""


def render_rules(settings: UdevSettings) -> str:
    """``70-kiosk-peripherals.rules``, checked with ``udevadm test`` in the tests."""
    lines = [_HEADER]
    known = {device_id for _, ids in BRIDGES for device_id in ids}
    for comment, ids in BRIDGES:
        lines.append(f"# {comment}")
        lines.extend(_bridge_rule(device_id) for device_id in ids)
    extra = sorted({d.device_id for d in settings.devices if d.kind == "serial"} - known)
    if extra:
        lines.append("# Other serial adapters the configuration names.")
        lines.extend(_bridge_rule(device_id) for device_id in extra)
    if settings.devices:
        lines.append("")
        lines.append("# Roles from the booth configuration.")
    for device in settings.devices:
        match = _usb_match(device)
        if device.kind == "serial":
            lines.append(f'SUBSYSTEM=="tty", {match}, ENV{{KIOSK_ROLE}}="{device.role}"')
        elif device.kind == "camera":
            # index 0 is the capture node; UVC also creates a metadata node (index 1).
            lines.append(f'SUBSYSTEM=="video4linux", {match}, ATTR{{index}}=="0", ENV{{KIOSK_ROLE}}="{device.role}"')
        else:
            lines.append(
                f'SUBSYSTEM=="sound", KERNEL=="card*", {match}, ATTR{{id}}="{device.card}", '
                f'ENV{{KIOSK_ROLE}}="{device.role}"'
            )
    return "\n".join(lines) + "\n" + _FOOTER


@dataclass(frozen=True)
class UdevStep:
    """The ``udev`` step: the peripheral rules written; ModemManager masked."""

    name: str = "udev"
    description: str = "udev: stable peripheral names, ModemManager kept off the serial ports"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse_settings(config.section("udev"))
        return [
            WriteFile(RULES, render_rules(settings).encode()),
            SystemdUnitState("ModemManager.service", "masked"),
        ]


STEP = UdevStep()
