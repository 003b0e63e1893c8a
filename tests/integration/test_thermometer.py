"""The thermometer driver against its firmware emulator over real pseudo-terminals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from devices.errors import DeviceDisconnected, DeviceTimeout, Reason
from devices.events import DeviceState, Quality, Reading, StateChanged
from devices.simulators.base import PtyRunner
from devices.simulators.thermometer import ThermometerFirmware
from devices.thermometer import Thermometer


@asynccontextmanager
async def bench(
    tmp_path: Path, scenario: str = "normal", *, fault: str | None = None, garbage_rate: float = 0.3
) -> AsyncIterator[tuple[PtyRunner, Thermometer]]:
    runner = PtyRunner(
        lambda: ThermometerFirmware(scenario), link=str(tmp_path / "thermo"), fault=fault, garbage_rate=garbage_rate
    )
    runner.plug()
    driver = Thermometer(runner.port)
    driver.reconnect_interval = 0.05
    try:
        async with driver:
            await driver.wait_connected(3)
            yield runner, driver
    finally:
        runner.close()


def firmware(runner: PtyRunner) -> ThermometerFirmware:
    assert isinstance(runner.firmware, ThermometerFirmware)
    return runner.firmware


@pytest.mark.parametrize(
    ("scenario", "low", "high"),
    [
        ("normal", 36.4, 37.2),
        ("hypertension", 36.4, 37.2),
        ("tachycardia", 38.3, 39.2),
        ("fever", 38.5, 40.0),
    ],
)
async def test_read_in_range(tmp_path: Path, scenario: str, low: float, high: float) -> None:
    async with bench(tmp_path, scenario) as (runner, driver):
        published: list[Reading] = []

        async def collect() -> None:
            async for event in driver.events():
                if isinstance(event, Reading):
                    published.append(event)

        collector = asyncio.create_task(collect())
        await asyncio.sleep(0)
        reading = await driver.read()
        assert reading.kind == "celsius"
        assert reading.unit == "Cel"
        assert reading.value is not None and low <= reading.value <= high
        assert reading.quality == frozenset()
        assert firmware(runner).requests == 1
        await asyncio.sleep(0.01)
        assert published == [reading]
        collector.cancel()


async def test_out_of_range_is_flagged(tmp_path: Path) -> None:
    async with bench(tmp_path, "out-of-range") as (_runner, driver):
        reading = await driver.read()
        assert reading.value is not None and reading.value > 60
        assert reading.quality == frozenset({Quality.OUT_OF_RANGE})


async def test_garbage_on_the_line_is_survived(tmp_path: Path) -> None:
    async with bench(tmp_path, "fever", fault="garbage", garbage_rate=0.4) as (runner, driver):
        for _ in range(30):
            reading = await driver.read()
            assert reading.value is not None and 38.5 <= reading.value <= 40.0
        assert driver.protocol_errors > 0
        assert firmware(runner).requests > 30  # garbled replies were asked again


async def test_silence_times_out_after_one_retry(tmp_path: Path) -> None:
    async with bench(tmp_path, fault="silence") as (runner, driver):
        started = time.monotonic()
        with pytest.raises(DeviceTimeout) as caught:
            await driver.read(timeout=0.4)
        elapsed = time.monotonic() - started
        assert 0.35 <= elapsed < 1.0
        assert caught.value.reason is Reason.TIMEOUT
        assert firmware(runner).requests == 0


async def test_unplug_and_replug(tmp_path: Path) -> None:
    async with bench(tmp_path) as (runner, driver):
        states: asyncio.Queue[StateChanged] = asyncio.Queue()

        async def collect() -> None:
            async for event in driver.events():
                if isinstance(event, StateChanged):
                    states.put_nowait(event)

        async def wait_state(state: DeviceState) -> StateChanged:
            async with asyncio.timeout(3):
                while True:
                    event = await states.get()
                    if event.new is state:
                        return event

        collector = asyncio.create_task(collect())
        await asyncio.sleep(0)
        assert (await driver.read()).value is not None

        runner.unplug()
        lost = await wait_state(DeviceState.DISCONNECTED)
        assert isinstance(lost.error, DeviceDisconnected)
        with pytest.raises(DeviceDisconnected):
            await driver.read()

        runner.plug()
        await wait_state(DeviceState.CONNECTED)
        reading = await driver.read()
        assert reading.value is not None and 36.4 <= reading.value <= 37.2
        collector.cancel()
