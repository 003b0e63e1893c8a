"""Reading a step's own TOML table into typed values, naming the key on every error.

The policy steps (ssh, firewall, usbguard, udev, apparmor) share these small
readers so that a technician who mistypes a value is told which key, in which
table, is wrong: ``ssh.port must be an integer from 1 to 65535``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from provisioning.config import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def fail(key: str, message: str) -> ConfigError:
    """The typed error for a bad value at ``key`` (``table.key``)."""
    return ConfigError(key, message)


def check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Refuse unknown keys: a typo would otherwise silently fall back to a default."""
    for key in table:
        if key not in allowed:
            raise fail(f"{where}.{key}", f"unknown key; known: {', '.join(sorted(allowed))}")


def get_bool(table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise fail(f"{where}.{key}", "must be true or false")
    return value


def get_int(table: Mapping[str, Any], key: str, where: str, default: int, low: int, high: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise fail(f"{where}.{key}", f"must be an integer from {low} to {high}")
    return value


def get_str(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise fail(f"{where}.{key}", "must be a non-empty string")
    return value


def get_list(table: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise fail(f"{where}.{key}", "must be a list")
    return value


def port(value: object, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise fail(key, "must be a port number from 1 to 65535")
    return value


def ports(value: object, key: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (port(value, key),)
    if not isinstance(value, list) or not value:
        raise fail(key, "must be a port number or a non-empty list of them")
    return tuple(sorted({port(item, key) for item in value}))


def address(value: object, key: str) -> IPAddress:
    if not isinstance(value, str):
        raise fail(key, "must be an IP address as a string")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise fail(key, f"{value!r} is not an IP address") from None


def network(value: object, key: str) -> IPNetwork:
    if not isinstance(value, str):
        raise fail(key, "must be an IP network as a string (10.0.0.0/8, 2001:db8::/32, 192.0.2.7)")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise fail(key, f"{value!r} is not an IP network (host bits set?)") from None
