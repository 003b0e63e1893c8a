"""``hardware_booth`` on a generated peripherals.toml that names the firmware emulators' ptys and media files.

The same path a booth takes with ``kiosk-app --peripherals /etc/kiosk/peripherals.toml``:
configuration file → :mod:`devices.config` → drivers → tracks, with real
pseudo-terminals where the USB-serial bridges would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devices import config as peripheral_config
from devices.events import DeviceState
from devices.simulators.base import PtyRunner
from devices.simulators.nibp import NibpFirmware
from devices.simulators.oximeter import OximeterFirmware
from devices.simulators.thermometer import ThermometerFirmware
from kiosk.session.emulated import EmulationSettings, write_media
from kiosk.session.hardware import hardware_booth


@pytest.fixture
async def emulators(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    dev = tmp_path / "dev"
    dev.mkdir()
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


def _toml(ports: dict[str, str], media: dict[str, str], *, with_thermometer: bool = True) -> str:
    lines = [
        f'[oximeter]\nprotocol = "auto"\nport = "{ports["oximeter"]}"',
        f'[nibp]\nport = "{ports["nibp"]}"',
        f'[booth_camera]\ndevice = "{media["room"]}"\nstream_size = [320, 180]\nfps = 15',
        f'[otoscope]\ndevice = "{media["otoscope"]}"\nstream_size = [320, 180]\nfps = 15',
        f'[stethoscope]\ndevice = "{media["stethoscope"]}"\nsample_rate = 16000',
        f'[microphone]\ndevice = "{media["voice"]}"',
    ]
    if with_thermometer:
        lines.append(f'[thermometer]\nport = "{ports["thermometer"]}"')
    return "\n\n".join(lines) + "\n"


async def test_booth_from_a_peripherals_file(tmp_path: Path, emulators: dict[str, str]) -> None:
    media = await write_media(tmp_path / "media", EmulationSettings(stream_size=(320, 180), still_size=(640, 360)))
    path = tmp_path / "peripherals.toml"
    path.write_text(_toml(emulators, media, with_thermometer=False))

    async with hardware_booth(peripheral_config.load(path)) as booth:
        peripherals = booth.peripherals
        assert peripherals.thermometer is None  # not fitted: the booth runs without it
        assert peripherals.oximeter is not None and peripherals.nibp is not None
        await peripherals.oximeter.wait_connected(15)
        await peripherals.nibp.wait_connected(15)
        spo2, pulse = await peripherals.oximeter.read_once(timeout=15)
        assert spo2.kind == "spo2" and pulse.kind == "pulse"
        assert peripherals.examination is not None
        assert set(peripherals.examination.choices) == {"booth", "otoscope"}
        assert peripherals.examination.selected == "otoscope"
        frame = await asyncio.wait_for(booth.media.booth_camera.recv(), 15)
        assert (frame.width, frame.height) == (320, 180)
        assert booth.runners == {}
        assert peripherals.oximeter.state is DeviceState.MEASURING


async def test_a_booth_without_its_camera_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "peripherals.toml"
    path.write_text('[stethoscope]\ndevice = "hw:CARD=Stethoscope,DEV=0"\n')

    with pytest.raises(peripheral_config.ConfigError, match=r"booth_camera\], \[microphone"):
        async with hardware_booth(peripheral_config.load(path)):
            pass
