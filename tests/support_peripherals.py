"""A booth's peripherals.toml naming the firmware emulators' pseudo-terminals and generated media files.

What ``kiosk-app --peripherals`` and ``kiosk.session.hardware`` read on a booth,
with the emulators standing where the USB-serial bridges, cameras and sound
cards would be.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from devices.simulators.base import PtyRunner
from devices.simulators.nibp import NibpFirmware
from devices.simulators.oximeter import OximeterFirmware
from devices.simulators.thermometer import ThermometerFirmware
from kiosk.session.emulated import EmulationSettings, write_media


@contextlib.asynccontextmanager
async def serial_emulators(dev: Path) -> AsyncIterator[dict[str, str]]:
    """The oximeter, NIBP and thermometer emulators on ptys linked under ``dev``; yields role -> port."""
    dev.mkdir(parents=True, exist_ok=True)
    runners = {
        "oximeter": PtyRunner(lambda: OximeterFirmware("normal"), link=str(dev / "oximeter")),
        "nibp": PtyRunner(lambda: NibpFirmware("normal", speed=3.0), link=str(dev / "nibp")),
        "thermometer": PtyRunner(lambda: ThermometerFirmware("normal"), link=str(dev / "thermometer")),
    }
    for runner in runners.values():
        runner.plug()
    try:
        yield {name: str(dev / name) for name in runners}
    finally:
        for runner in runners.values():
            runner.close()


async def media_files(folder: Path) -> dict[str, str]:
    """Small synthetic camera videos and sound files (see kiosk.session.emulated.write_media)."""
    return await write_media(folder, EmulationSettings(stream_size=(320, 180), still_size=(640, 360)))


def peripherals_toml(ports: dict[str, str], media: dict[str, str], *, with_thermometer: bool = True) -> str:
    tables = [
        f'[oximeter]\nprotocol = "auto"\nport = "{ports["oximeter"]}"',
        f'[nibp]\nport = "{ports["nibp"]}"',
        f'[booth_camera]\ndevice = "{media["room"]}"\nstream_size = [320, 180]\nfps = 15',
        f'[otoscope]\ndevice = "{media["otoscope"]}"\nstream_size = [320, 180]\nfps = 15',
        f'[stethoscope]\ndevice = "{media["stethoscope"]}"\nsample_rate = 16000',
        f'[microphone]\ndevice = "{media["voice"]}"',
    ]
    if with_thermometer:
        tables.append(f'[thermometer]\nport = "{ports["thermometer"]}"')
    return "\n\n".join(tables) + "\n"
