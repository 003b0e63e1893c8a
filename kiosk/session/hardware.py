"""A booth's peripherals and media on the hardware its peripheral configuration names.

``kiosk-app --peripherals /etc/kiosk/peripherals.toml`` (what kiosk-app.service
runs) and ``kiosk-booth --peripherals FILE`` use :func:`hardware_booth`; the
demo and the tests use :func:`kiosk.session.emulated.emulated_booth`. Both
build the same drivers and tracks and yield the same
:class:`~kiosk.session.emulated.EmulatedBooth` record (its ``runners`` stay
empty here: there are no emulators to fault-inject).

The booth camera, the microphone and the stethoscope are required: without
them there is no consultation. The serial peripherals and the examination
cameras are optional (a booth without a thermometer is still a booth). A
serial peripheral unplugged at start does not stop the app: its driver keeps
reconnecting, and the self-check reports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from aiortc.mediastreams import MediaStreamTrack

from devices.camera import UvcCamera
from devices.config import CameraPeripheral, ConfigError, PeripheralConfig, SerialPeripheral
from devices.nibp import BloodPressureMonitor
from devices.oximeter import Oximeter
from devices.stethoscope import Stethoscope
from devices.thermometer import Thermometer
from kiosk.session.consultation import BoothMedia
from kiosk.session.emulated import EmulatedBooth
from kiosk.session.peripherals import Peripherals
from kiosk.session.tracks import CameraTrack, StethoscopeTrack, SwitchableVideoTrack, stop_tracks

REQUIRED_ROLES = ("booth_camera", "microphone", "stethoscope")
EXAMINATION_ROLES = ("otoscope", "dermatoscope")

_GENERATIONS: dict[str, Literal["legacy", "current", "auto"]] = {
    "contec-cms50": "current",
    "contec-cms50-legacy": "legacy",
    "auto": "auto",
}
"""The oximeter driver's firmware generation for each configured protocol (devices.config.SERIAL_ROLES)."""

Driver = Oximeter | BloodPressureMonitor | Thermometer | UvcCamera | Stethoscope


def _camera(peripheral: CameraPeripheral, name: str) -> UvcCamera:
    return UvcCamera(peripheral.device, name=name, stream_size=peripheral.stream_size, fps=peripheral.fps)


def _oximeter(peripheral: SerialPeripheral | None) -> Oximeter | None:
    if peripheral is None:
        return None
    return Oximeter(peripheral.port, generation=_GENERATIONS[peripheral.protocol])


def check(config: PeripheralConfig) -> None:
    """Raise :class:`~devices.config.ConfigError` when a role the consultation cannot do without is missing."""
    present = {*config.cameras, *config.audio}
    missing = [role for role in REQUIRED_ROLES if role not in present]
    if missing:
        raise ConfigError(f"the peripheral configuration lacks [{'], ['.join(missing)}]: a booth needs them")


@contextlib.asynccontextmanager
async def hardware_booth(config: PeripheralConfig) -> AsyncIterator[EmulatedBooth]:
    """Start the drivers and tracks of the configured peripherals; stop everything on exit."""
    check(config)
    oximeter = _oximeter(config.serial.get("oximeter"))
    nibp = BloodPressureMonitor(config.serial["nibp"].port) if "nibp" in config.serial else None
    thermometer = Thermometer(config.serial["thermometer"].port) if "thermometer" in config.serial else None
    # "room" is the booth camera's name everywhere else (emulated booth, self-check, examination switch).
    cameras = {"room": _camera(config.cameras["booth_camera"], "room")}
    for role in EXAMINATION_ROLES:
        if role in config.cameras:
            cameras[role] = _camera(config.cameras[role], role)
    stethoscope_config, microphone_config = config.audio["stethoscope"], config.audio["microphone"]
    stethoscope = Stethoscope(
        stethoscope_config.device, sample_rate=stethoscope_config.sample_rate, channels=stethoscope_config.channels
    )
    voice = Stethoscope(
        microphone_config.device,
        name="microphone",
        sample_rate=microphone_config.sample_rate,
        channels=microphone_config.channels,
    )
    examination_cameras = {
        "booth": cameras["room"],
        **{role: cameras[role] for role in EXAMINATION_ROLES if role in cameras},
    }
    first = next((role for role in EXAMINATION_ROLES if role in cameras), "booth")
    examination = SwitchableVideoTrack(examination_cameras, first)
    stethoscope_track = StethoscopeTrack(stethoscope)
    tracks: list[MediaStreamTrack] = [
        CameraTrack(cameras["room"]),
        examination,
        StethoscopeTrack(voice),
        stethoscope_track,
    ]
    drivers: list[Driver] = [
        *(driver for driver in (oximeter, nibp, thermometer) if driver is not None),
        *cameras.values(),
        stethoscope,
        voice,
    ]
    started: list[Driver] = []
    try:
        for driver in drivers:
            await driver.start()
            started.append(driver)
        yield EmulatedBooth(
            peripherals=Peripherals(
                oximeter=oximeter,
                nibp=nibp,
                thermometer=thermometer,
                examination=examination,
                stethoscope=stethoscope_track,
            ),
            media=BoothMedia(tracks[0], tracks[1], tracks[2], tracks[3]),
            runners={},
            cameras=cameras,
            microphone=voice,
        )
    finally:
        await stop_tracks(*tracks)
        for driver in reversed(started):
            with contextlib.suppress(Exception):
                await driver.stop()
