"""USBGuard: only the booth's own peripheral models work; mass storage never does.

A booth stands in a public place with USB ports within reach. The policy
allows each configured model by vendor:product *and* its exact set of
interfaces (``with-interface equals``), so a device that copies a trusted id
but adds a keyboard interface (a "BadUSB" stick) does not match. Everything
else is blocked (``ImplicitPolicyTarget=block``), and the kernel leaves new
devices unauthorized until the daemon decides (``AuthorizedDefault=none``).

Mass storage (interface class 08) is blocked by the *first* rule, before any
allow rule can match, and a configuration that tries to allow it (class 08 or
a class wildcard) is refused with :class:`MassStorageRefused`: patient data
must not leave, nor code arrive, on a stick.

Rule grammar: usbguard-rules.conf(5); every rendered rule is checked with
``usbguard-rule-parser`` in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from provisioning.config import BoothConfig, ConfigError
from provisioning.core import Change, EnsurePackages, RemovePath, SystemdUnitState, Target, WriteFile
from provisioning.fields import check_keys, fail, get_bool, get_list, get_str

RULES: Final = "/etc/usbguard/rules.conf"
DAEMON_CONF: Final = "/etc/usbguard/usbguard-daemon.conf"
PLUGDEV_ACCESS: Final = "/etc/usbguard/IPCAccessControl.d/:plugdev"

MASS_STORAGE_CLASS: Final = "08"
HUB_CLASS: Final = "09"
_DEVICE_ID: Final = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
_INTERFACE: Final = re.compile(r"^[0-9a-f]{2}:(\*:\*|[0-9a-f]{2}:\*|[0-9a-f]{2}:[0-9a-f]{2})$")
_SERIAL: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LABEL: Final = re.compile(r"^[\x20-\x7e]{1,80}$")


class MassStorageRefused(ConfigError):
    """The configuration would let a USB mass-storage interface through."""


@dataclass(frozen=True)
class AllowedDevice:
    """One allowed peripheral model."""

    name: str
    """A label for people (the rule's comment); USBGuard does not match on it."""
    device_id: str
    """vendor:product, lower-case hex."""
    interfaces: tuple[str, ...]
    """The device's whole interface set, "cc:ss:pp" with trailing wildcards ("0e:*:*")."""
    serial: str = ""
    """Optional: this one unit only."""


@dataclass(frozen=True)
class UsbguardSettings:
    """The ``[usbguard]`` table."""

    allow: tuple[AllowedDevice, ...] = ()
    allow_hubs: bool = True
    """Hubs (hub interface only): the booth's internal hubs, and the devices behind them get judged one by one."""


def parse_interface(value: object, key: str) -> str:
    """Check one interface pattern; class 08 and class wildcards are refused."""
    if not isinstance(value, str):
        raise fail(key, 'must be an interface "cc:ss:pp" as a string')
    pattern = value.strip().lower()
    if pattern.startswith("*"):
        raise MassStorageRefused(key, "an interface class wildcard would match mass storage (08); name the class")
    if not _INTERFACE.match(pattern):
        raise fail(key, f'{value!r} is not an interface pattern "cc:ss:pp" (e.g. "03:00:00", "0e:*:*")')
    if pattern.startswith(MASS_STORAGE_CLASS + ":"):
        raise MassStorageRefused(key, "USB mass storage (class 08) is always blocked on a booth")
    return pattern


def parse_settings(table: Mapping[str, Any]) -> UsbguardSettings:
    check_keys(table, {"allow", "allow_hubs"}, "usbguard")
    allowed = []
    for i, entry in enumerate(get_list(table, "allow", "usbguard")):
        where = f"usbguard.allow[{i}]"
        if not isinstance(entry, dict):
            raise fail(where, "must be a table with name, id and interfaces")
        check_keys(entry, {"name", "id", "interfaces", "serial"}, where)
        name = get_str(entry, "name", where)
        if not _LABEL.match(name):
            raise fail(f"{where}.name", "must be printable ASCII, at most 80 characters")
        device_id = get_str(entry, "id", where).lower()
        if not _DEVICE_ID.match(device_id):
            raise fail(f"{where}.id", 'must be "vendor:product" in hex, e.g. "10c4:ea60"')
        raw = get_list(entry, "interfaces", where)
        if not raw:
            raise fail(
                f"{where}.interfaces", "must list the device's interfaces (see `lsusb -v` or `usbguard list-devices`)"
            )
        interfaces = tuple(sorted({parse_interface(item, f"{where}.interfaces[{j}]") for j, item in enumerate(raw)}))
        serial = entry.get("serial", "")
        if serial != "" and (not isinstance(serial, str) or not _SERIAL.match(serial)):
            raise fail(f"{where}.serial", "must be letters, digits, '.', '_' or '-'")
        allowed.append(AllowedDevice(name, device_id, interfaces, serial))
    return UsbguardSettings(allow=tuple(allowed), allow_hubs=get_bool(table, "allow_hubs", "usbguard", True))


def rule_for(device: AllowedDevice) -> str:
    serial = f' serial "{device.serial}"' if device.serial else ""
    return f"allow id {device.device_id}{serial} with-interface equals {{ {' '.join(device.interfaces)} }}"


def rules(settings: UsbguardSettings) -> list[str]:
    """The policy's rules in order (first match wins), without comments."""
    out = [f"block with-interface one-of {{ {MASS_STORAGE_CLASS}:*:* }}"]
    if settings.allow_hubs:
        out.append(f"allow with-interface equals {{ {HUB_CLASS}:00:* }}")
    out.extend(rule_for(device) for device in settings.allow)
    return out


def render_rules(settings: UsbguardSettings) -> str:
    """``/etc/usbguard/rules.conf``."""
    lines = [
        "# Rendered by kiosk-provision (step usbguard). Do not edit: `kiosk-provision --check` reports drift.",
        "# First match wins; anything no rule allows is blocked (ImplicitPolicyTarget=block).",
        "# Mass storage first: blocked even as one interface of a device an allow rule names.",
        rules(settings)[0],
    ]
    if settings.allow_hubs:
        lines += [
            "# USB hubs, hub interface only: devices behind them are judged by the rules below.",
            rules(settings)[1],
        ]
    for device in settings.allow:
        lines += [f"# {device.name}", rule_for(device)]
    return "\n".join(lines) + "\n"


def render_daemon_conf(rules_path: str = RULES) -> str:
    """``/etc/usbguard/usbguard-daemon.conf`` (keys: usbguard-daemon.conf(5), usbguard 1.1)."""
    return "\n".join(
        [
            "# Rendered by kiosk-provision (step usbguard). Do not edit: `kiosk-provision --check` reports drift.",
            f"RuleFile={rules_path}",
            "RuleFolder=/etc/usbguard/rules.d/",
            "# Anything no rule allows is blocked.",
            "ImplicitPolicyTarget=block",
            "# Devices present at boot are judged too, not trusted for being there first;",
            "# the controllers themselves (root hubs) are kept.",
            "PresentDevicePolicy=apply-policy",
            "PresentControllerPolicy=keep",
            "InsertedDevicePolicy=apply-policy",
            "# The kernel leaves a new device unauthorized until the daemon has judged it.",
            "AuthorizedDefault=none",
            "RestoreControllerDeviceState=false",
            "DeviceManagerBackend=uevent",
            "# Only root may change the policy at run time (Debian's default adds plugdev).",
            "IPCAllowedUsers=root",
            "IPCAllowedGroups=",
            "IPCAccessControlFiles=/etc/usbguard/IPCAccessControl.d/",
            "DeviceRulesWithPort=false",
            "# Decisions go to the Linux audit log, with the booth's other audit events.",
            "AuditBackend=LinuxAudit",
            "AuditFilePath=/var/log/usbguard/usbguard-audit.log",
            "HidePII=true",
            "",
        ]
    )


@dataclass(frozen=True)
class UsbguardStep:
    """The ``usbguard`` step: the daemon installed, its policy and configuration written, enabled at boot."""

    name: str = "usbguard"
    description: str = "USBGuard: only the configured peripheral models, never mass storage"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse_settings(config.section("usbguard"))
        # 0600: the daemon refuses policy files others can read or write.
        return [
            EnsurePackages(("usbguard",)),
            WriteFile(RULES, render_rules(settings).encode(), mode=0o600),
            WriteFile(DAEMON_CONF, render_daemon_conf().encode(), mode=0o600),
            # Debian's postinst lets group plugdev allow devices over IPC; the kiosk user may be in plugdev.
            RemovePath(PLUGDEV_ACCESS),
            SystemdUnitState("usbguard.service", "enabled"),
        ]


STEP = UsbguardStep()
