"""A booth's peripherals and media on emulated hardware, through the production drivers.

Firmware emulators serve real pseudo-terminals (oximeter, NIBP,
thermometer); the cameras and microphones read generated media files through
OpenCV and PyAV. Used by ``kiosk-booth --emulate``, the demo, the end-to-end
tests and the benches, so all of them exercise the same code paths as a
booth with real peripherals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiortc.mediastreams import MediaStreamTrack

from devices.camera import UvcCamera
from devices.nibp import BloodPressureMonitor
from devices.oximeter import Oximeter
from devices.simulators.base import PtyRunner
from devices.simulators.camera import write_synthetic_video
from devices.simulators.nibp import NibpFirmware
from devices.simulators.oximeter import OximeterFirmware
from devices.simulators.stethoscope import write_heart_sounds
from devices.simulators.thermometer import ThermometerFirmware
from devices.stethoscope import Stethoscope
from devices.thermometer import Thermometer
from kiosk.session.consultation import BoothMedia
from kiosk.session.peripherals import Peripherals
from kiosk.session.stamp import StampedCameraTrack
from kiosk.session.tracks import CameraTrack, StethoscopeTrack, SwitchableVideoTrack, stop_tracks


@dataclass(frozen=True)
class EmulationSettings:
    """Sizes and scenarios of the emulated booth."""

    stream_size: tuple[int, int] = (640, 360)
    """Live video size of every camera (the room camera's capture size too)."""
    still_size: tuple[int, int] = (1920, 1080)
    """Capture size of the examination cameras: their stills come out at this size."""
    fps: float = 15
    nibp_speed: float = 3.0
    """How much faster than a real cuff the emulated NIBP module runs."""
    oximeter_scenario: str = "normal"
    nibp_scenario: str = "normal"
    thermometer_scenario: str = "normal"
    stamp_frames: bool = False
    """Draw each room-camera frame's capture time into it (:mod:`kiosk.session.stamp`), for latency benches."""


@dataclass
class EmulatedBooth:
    """What :func:`emulated_booth` yields."""

    peripherals: Peripherals
    media: BoothMedia
    runners: dict[str, PtyRunner]
    cameras: dict[str, UvcCamera]
    microphone: Stethoscope
    """The patient's microphone (the driver behind ``media.microphone``), for the self-check."""


async def write_media(folder: Path, settings: EmulationSettings) -> dict[str, str]:
    """Generate the booth's media files (once per folder; reused when present)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, tuple[Path, Literal["room", "otoscope", "dermatoscope"], tuple[int, int]]] = {
        "room": (folder / "room.avi", "room", settings.stream_size),
        "otoscope": (folder / "otoscope.avi", "otoscope", settings.still_size),
        "dermatoscope": (folder / "dermatoscope.avi", "dermatoscope", settings.still_size),
    }
    paths: dict[str, str] = {}
    for name, (path, kind, size) in jobs.items():
        marker = path.with_suffix(f".{size[0]}x{size[1]}")
        if not marker.exists():
            await asyncio.to_thread(write_synthetic_video, path, kind=kind, size=size, fps=settings.fps, seconds=2)
            marker.touch()
        paths[name] = str(path)
    for name, rate, seed in (("stethoscope", 16000, 0), ("voice", 48000, 1)):
        path = folder / f"{name}.wav"
        if not path.exists():
            await asyncio.to_thread(write_heart_sounds, path, seconds=4, sample_rate=rate, seed=seed)
        paths[name] = str(path)
    return paths


@contextlib.asynccontextmanager
async def emulated_booth(workdir: Path, settings: EmulationSettings | None = None) -> AsyncIterator[EmulatedBooth]:
    """Start emulators, drivers and tracks under ``workdir``; stop everything on exit."""
    settings = settings or EmulationSettings()
    media_files = await write_media(workdir / "media", settings)
    dev = workdir / "dev"
    dev.mkdir(parents=True, exist_ok=True)
    runners = {
        "oximeter": PtyRunner(lambda: OximeterFirmware(settings.oximeter_scenario), link=str(dev / "oximeter")),
        "nibp": PtyRunner(
            lambda: NibpFirmware(settings.nibp_scenario, speed=settings.nibp_speed), link=str(dev / "nibp")
        ),
        "thermometer": PtyRunner(
            lambda: ThermometerFirmware(settings.thermometer_scenario), link=str(dev / "thermometer")
        ),
    }
    cameras = {
        name: UvcCamera(media_files[name], name=name, stream_size=settings.stream_size, fps=settings.fps)
        for name in ("room", "otoscope", "dermatoscope")
    }
    stethoscope = Stethoscope(media_files["stethoscope"])
    voice = Stethoscope(media_files["voice"], name="microphone")
    oximeter = Oximeter(str(dev / "oximeter"), generation="auto")
    nibp = BloodPressureMonitor(str(dev / "nibp"))
    thermometer = Thermometer(str(dev / "thermometer"))
    examination = SwitchableVideoTrack(
        {"booth": cameras["room"], "otoscope": cameras["otoscope"], "dermatoscope": cameras["dermatoscope"]},
        "otoscope",
    )
    stethoscope_track = StethoscopeTrack(stethoscope)
    tracks: list[MediaStreamTrack] = [
        (StampedCameraTrack if settings.stamp_frames else CameraTrack)(cameras["room"]),
        examination,
        StethoscopeTrack(voice),
        stethoscope_track,
    ]
    started: list[Oximeter | BloodPressureMonitor | Thermometer | UvcCamera | Stethoscope] = []
    try:
        for runner in runners.values():
            runner.plug()
        drivers: list[Oximeter | BloodPressureMonitor | Thermometer | UvcCamera | Stethoscope] = [
            oximeter,
            nibp,
            thermometer,
            *cameras.values(),
            stethoscope,
            voice,
        ]
        for driver in drivers:
            await driver.start()
            started.append(driver)
        for serial in (oximeter, nibp, thermometer):
            await serial.wait_connected(15)
        yield EmulatedBooth(
            peripherals=Peripherals(
                oximeter=oximeter,
                nibp=nibp,
                thermometer=thermometer,
                examination=examination,
                stethoscope=stethoscope_track,
            ),
            media=BoothMedia(tracks[0], tracks[1], tracks[2], tracks[3]),
            runners=runners,
            cameras=cameras,
            microphone=voice,
        )
    finally:
        await stop_tracks(*tracks)
        for driver in reversed(started):
            with contextlib.suppress(Exception):
                await driver.stop()
        for runner in runners.values():
            runner.close()
