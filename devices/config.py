"""Which peripheral is where: the booth's peripheral configuration.

A TOML file maps each peripheral role to a stable device path, the names
udev keeps across reboots and re-plugging (``/dev/serial/by-id/...``,
``/dev/v4l/by-id/...``, an ALSA ``hw:CARD=...`` name), never ``/dev/ttyUSB0``,
whose number depends on plug order. ``systemd/70-kiosk-peripherals.rules``
gives the serial adapters those names and keeps ModemManager off them.

Example (every key documented in ``devices/peripherals.example.toml``)::

    [oximeter]
    protocol = "contec-cms50"
    port = "/dev/serial/by-id/usb-Silicon_Labs_CP2102_USB_to_UART_Bridge_Controller_0001-if00-port0"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.errors import DeviceError, Reason

SERIAL_ROLES: dict[str, tuple[str, ...]] = {
    "oximeter": ("contec-cms50", "contec-cms50-legacy", "auto"),
    "nibp": ("suntech-nibp",),
    "thermometer": ("lu90614",),
}
"""Serial peripheral roles and the protocols each may speak (first is the default)."""

CAMERA_ROLES = ("otoscope", "dermatoscope", "booth_camera")
AUDIO_ROLES = ("stethoscope", "microphone")

DEFAULT_PATH = Path("/etc/kiosk/peripherals.toml")


class ConfigError(DeviceError):
    """The peripheral configuration is missing, malformed or inconsistent."""

    reason = Reason.UNSUPPORTED


@dataclass(frozen=True)
class SerialPeripheral:
    """A serial peripheral: which protocol it speaks and on which port."""

    role: str
    protocol: str
    port: str


@dataclass(frozen=True)
class CameraPeripheral:
    """A UVC camera and the mode it streams in."""

    role: str
    device: str
    stream_size: tuple[int, int] = (1280, 720)
    fps: int = 30


@dataclass(frozen=True)
class AudioPeripheral:
    """A USB audio input (ALSA name) or a file standing in for one."""

    role: str
    device: str
    sample_rate: int = 48000
    channels: int = 1


@dataclass(frozen=True)
class PeripheralConfig:
    """Every configured peripheral, by role; absent roles are simply not fitted."""

    serial: dict[str, SerialPeripheral] = field(default_factory=dict)
    cameras: dict[str, CameraPeripheral] = field(default_factory=dict)
    audio: dict[str, AudioPeripheral] = field(default_factory=dict)


def load(path: str | Path = DEFAULT_PATH) -> PeripheralConfig:
    """Read and validate a peripheral configuration file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"peripheral configuration {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"peripheral configuration {path} is not valid TOML: {exc}") from exc
    return parse(raw, source=str(path))


def parse(raw: dict[str, Any], *, source: str = "<config>") -> PeripheralConfig:
    """Validate an already decoded configuration table."""
    config = PeripheralConfig()
    for role, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{role}] must be a table")
        if role in SERIAL_ROLES:
            config.serial[role] = _serial(role, table, source)
        elif role in CAMERA_ROLES:
            config.cameras[role] = CameraPeripheral(
                role=role,
                device=_string(table, "device", role, source),
                stream_size=_size(table.get("stream_size", [1280, 720]), role, source),
                fps=_positive_int(table.get("fps", 30), "fps", role, source),
            )
        elif role in AUDIO_ROLES:
            config.audio[role] = AudioPeripheral(
                role=role,
                device=_string(table, "device", role, source),
                sample_rate=_positive_int(table.get("sample_rate", 48000), "sample_rate", role, source),
                channels=_positive_int(table.get("channels", 1), "channels", role, source),
            )
        else:
            known = ", ".join((*SERIAL_ROLES, *CAMERA_ROLES, *AUDIO_ROLES))
            raise ConfigError(f"{source}: unknown peripheral [{role}]; known: {known}")
    return config


def _serial(role: str, table: dict[str, Any], source: str) -> SerialPeripheral:
    protocols = SERIAL_ROLES[role]
    protocol = table.get("protocol", protocols[0])
    if protocol not in protocols:
        raise ConfigError(f"{source}: [{role}] protocol must be one of {', '.join(protocols)}")
    return SerialPeripheral(role=role, protocol=protocol, port=_string(table, "port", role, source))


def _string(table: dict[str, Any], key: str, role: str, source: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: [{role}] needs a non-empty string {key!r}")
    return value


def _positive_int(value: object, key: str, role: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{source}: [{role}] {key} must be a positive integer")
    return value


def _size(value: object, role: str, source: str) -> tuple[int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(f"{source}: [{role}] stream_size must be [width, height]")
    return (value[0], value[1])
