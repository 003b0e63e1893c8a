"""Serial peripherals in the loop: opt-in, skipped unless --device-port names them.

    pytest tests/integration/test_hardware.py --device-port oximeter=/dev/serial/by-id/... \\
        --device-port thermometer=/dev/serial/by-id/... --device-port nibp=/dev/serial/by-id/...

The blood-pressure test inflates a cuff: run it only with the cuff on a
person who knows, or on a cuff simulator.
"""

from __future__ import annotations

import pytest

from devices.events import Quality
from devices.nibp import BloodPressureMonitor
from devices.oximeter import Oximeter
from devices.thermometer import Thermometer

pytestmark = pytest.mark.hardware


def _port(device_ports: dict[str, str], kind: str) -> str:
    port = device_ports.get(kind)
    if port is None:
        pytest.skip(f"no --device-port {kind}=PATH given")
    return port


async def test_real_oximeter_gives_a_plausible_reading(device_ports: dict[str, str]) -> None:
    async with Oximeter(_port(device_ports, "oximeter"), generation="auto") as oximeter:
        await oximeter.wait_connected(10)
        spo2, pulse = await oximeter.read_once(timeout=30)
    assert spo2.value is not None
    assert 70 <= spo2.value <= 100
    assert pulse.value is not None
    assert 30 <= pulse.value <= 220
    assert oximeter.active_generation in ("legacy", "current")


async def test_real_thermometer_reads_in_range(device_ports: dict[str, str]) -> None:
    async with Thermometer(_port(device_ports, "thermometer")) as thermometer:
        await thermometer.wait_connected(10)
        reading = await thermometer.read(timeout=3)
    assert reading.value is not None
    assert Quality.OUT_OF_RANGE not in reading.quality


async def test_real_nibp_cycle_and_abort(device_ports: dict[str, str]) -> None:
    async with BloodPressureMonitor(_port(device_ports, "nibp")) as nibp:
        await nibp.wait_connected(10)
        result = await nibp.measure(timeout=180)
        assert result.systolic.value is not None
        assert result.diastolic.value is not None
        assert result.systolic.value > result.diastolic.value
        # Abort when idle must be harmless.
        await nibp.abort()
