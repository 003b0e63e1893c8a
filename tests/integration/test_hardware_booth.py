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
from kiosk.session.hardware import hardware_booth
from tests.support_peripherals import media_files, peripherals_toml, serial_emulators


@pytest.fixture
async def emulators(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    async with serial_emulators(tmp_path / "dev") as ports:
        yield ports


async def test_booth_from_a_peripherals_file(tmp_path: Path, emulators: dict[str, str]) -> None:
    media = await media_files(tmp_path / "media")
    path = tmp_path / "peripherals.toml"
    path.write_text(peripherals_toml(emulators, media, with_thermometer=False))

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
