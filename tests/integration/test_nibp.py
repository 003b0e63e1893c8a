"""The NIBP driver against its firmware emulator over real pseudo-terminals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from devices.errors import CommandRefused, DeviceDisconnected, DeviceTimeout, MeasurementAborted, Reason
from devices.events import DeviceState, Reading, StateChanged
from devices.nibp import BloodPressureMonitor, BloodPressureResult
from devices.protocols import suntech as proto
from devices.simulators.base import Firmware, PtyRunner
from devices.simulators.nibp import NibpFirmware, Phase

# At speed 15 a whole cycle takes about two seconds; polling scaled alike.
SPEED = 15.0
POLL = 0.04


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait for a condition on the emulator's state, which has no event to await."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@dataclass
class Bench:
    runner: PtyRunner
    driver: BloodPressureMonitor
    readings: list[Reading] = field(default_factory=list)
    states: asyncio.Queue[StateChanged] = field(default_factory=asyncio.Queue)

    @property
    def firmware(self) -> NibpFirmware:
        assert isinstance(self.runner.firmware, NibpFirmware)
        return self.runner.firmware

    def cuff(self) -> list[float]:
        return [r.value for r in self.readings if r.kind == "cuff_pressure" and r.value is not None]

    async def wait_state(self, state: DeviceState, timeout: float = 3.0) -> StateChanged:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.states.get()
                if event.new is state:
                    return event

    async def wait_cuff_over(self, mmhg: float, timeout: float = 5.0) -> None:
        await until(lambda: any(value > mmhg for value in self.cuff()), timeout)


@asynccontextmanager
async def bench(
    tmp_path: Path,
    factory: Callable[[], Firmware],
    *,
    fault: str | None = None,
    garbage_rate: float = 0.3,
) -> AsyncIterator[Bench]:
    runner = PtyRunner(factory, link=str(tmp_path / "nibp"), fault=fault, garbage_rate=garbage_rate)
    runner.plug()
    driver = BloodPressureMonitor(runner.port)
    driver.reconnect_interval = 0.05
    setup = Bench(runner, driver)

    async def collect() -> None:
        async for event in driver.events():
            if isinstance(event, Reading):
                setup.readings.append(event)
            else:
                setup.states.put_nowait(event)

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)
    try:
        async with driver:
            await driver.wait_connected(3)
            yield setup
    finally:
        collector.cancel()
        runner.close()


def firmware(scenario: str, speed: float = SPEED) -> Callable[[], NibpFirmware]:
    return lambda: NibpFirmware(scenario, speed=speed)


def assert_rise_then_fall(cuff: list[float]) -> None:
    peak = cuff.index(max(cuff))
    assert max(cuff) >= 140
    assert max(cuff) <= 300
    assert 0 < peak < len(cuff) - 1
    rising, falling = cuff[: peak + 1], cuff[peak:]
    assert rising == sorted(rising), "the cuff pressure goes up while inflating"
    assert falling == sorted(falling, reverse=True), "then only down while deflating"
    assert falling[-1] <= 10


@pytest.mark.parametrize(
    ("scenario", "systolic", "diastolic", "pulse"),
    [
        ("normal", (105, 135), (68, 90), (62, 78)),
        ("hypertension", (150, 180), (90, 110), (68, 88)),
        ("tachycardia", (105, 140), (68, 95), (120, 140)),
    ],
)
async def test_full_cycle(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    scenario: str,
    systolic: tuple[int, int],
    diastolic: tuple[int, int],
    pulse: tuple[int, int],
) -> None:
    async with bench(tmp_path, firmware(scenario)) as setup:
        result = await asyncio.wait_for(setup.driver.measure(poll_interval=POLL), 10)
        assert isinstance(result, BloodPressureResult)
        assert systolic[0] <= (result.systolic.value or 0) <= systolic[1]
        assert diastolic[0] <= (result.diastolic.value or 0) <= diastolic[1]
        assert (result.diastolic.value or 0) < (result.mean.value or 0) < (result.systolic.value or 0)
        assert pulse[0] <= (result.pulse.value or 0) <= pulse[1]
        assert result.systolic.unit == result.diastolic.unit == result.mean.unit == "mm[Hg]"
        assert result.pulse.unit == "/min"
        assert_rise_then_fall(setup.cuff())
        assert all(r.unit == "mm[Hg]" for r in setup.readings if r.kind == "cuff_pressure")
        await asyncio.sleep(0.02)
        published = {r.kind: r for r in setup.readings if r.kind != "cuff_pressure"}
        assert published == {
            "systolic": result.systolic,
            "diastolic": result.diastolic,
            "mean": result.mean,
            "pulse": result.pulse,
        }
        assert setup.driver.state is DeviceState.CONNECTED
        assert setup.firmware.commands.count(proto.StartMeasurement()) == 1
        # Readings never reach a log line, not even at DEBUG.
        values = {result.systolic.value, result.diastolic.value, result.mean.value, result.pulse.value}
        for record in caplog.records:
            args = record.args if isinstance(record.args, tuple) else ()
            assert not {arg for arg in args if isinstance(arg, int | float)} & values, record.getMessage()
            assert "mmHg" not in record.getMessage()


async def test_states_go_through_measuring(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal", speed=30)) as setup:
        await setup.wait_state(DeviceState.CONNECTED)
        await setup.driver.measure(poll_interval=POLL)
        await setup.wait_state(DeviceState.MEASURING)
        await setup.wait_state(DeviceState.CONNECTED)


async def test_initial_inflate_is_sent_before_start(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal", speed=30)) as setup:
        await setup.driver.measure(initial_inflate=180, poll_interval=POLL)
        assert setup.firmware.commands[:2] == [proto.SetInitialInflate(180), proto.StartMeasurement()]
        assert 175 <= max(setup.cuff()) <= 180


@pytest.mark.parametrize(
    ("scenario", "error_class", "code"),
    [
        ("weak-signal", proto.WeakSignal, 1),
        ("error-1", proto.WeakSignal, 1),
        ("error-2", proto.ErraticSignal, 2),
        ("error-3", proto.RetryLimitExceeded, 3),
        ("error-4", proto.MeasurementTimeout, 4),
        ("error-85", proto.PneumaticBlockage, 85),
        ("error-87", proto.InflateTimeout, 87),
        ("error-89", proto.OverPressure, 89),
        ("error-90", proto.PowerSupplyFault, 90),
    ],
)
async def test_module_error_codes_become_typed_errors(
    tmp_path: Path, scenario: str, error_class: type[proto.NibpMeasurementError], code: int
) -> None:
    async with bench(tmp_path, firmware(scenario, speed=40)) as setup:
        with pytest.raises(error_class) as caught:
            await asyncio.wait_for(setup.driver.measure(poll_interval=0.02), 10)
        assert caught.value.code == code
        assert caught.value.reason is Reason.MEASUREMENT
        assert caught.value.device == "nibp"
        # The module emptied the cuff and the driver did not retry the inflation.
        assert setup.firmware.cuff_pressure == 0
        assert setup.firmware.peak_pressure <= 300
        assert setup.firmware.commands.count(proto.StartMeasurement()) == 1
        assert not [r for r in setup.readings if r.kind in ("systolic", "diastolic", "mean", "pulse")]
        assert setup.driver.state is DeviceState.CONNECTED


async def test_abort_mid_inflation(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal", speed=2)) as setup:
        measuring = asyncio.create_task(setup.driver.measure(poll_interval=POLL))
        await setup.wait_cuff_over(40)
        assert setup.firmware.phase is Phase.INFLATING
        started = time.monotonic()
        await asyncio.wait_for(setup.driver.abort(), 2)
        with pytest.raises(MeasurementAborted) as caught:
            await asyncio.wait_for(measuring, 1)
        assert time.monotonic() - started < 0.5
        assert caught.value.reason is Reason.ABORTED
        assert proto.Abort() in setup.firmware.commands
        # The module deflates at once.
        await until(lambda: setup.firmware.cuff_pressure == 0, 3)
        assert setup.firmware.phase is Phase.IDLE
        assert setup.driver.state is DeviceState.CONNECTED
        assert not setup.driver.measuring


async def test_abort_when_idle_is_harmless(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal", speed=30)) as setup:
        await asyncio.wait_for(setup.driver.abort(), 2)
        assert setup.firmware.cycles_started == 0
        # And the next measurement works.
        result = await asyncio.wait_for(setup.driver.measure(poll_interval=POLL), 10)
        assert result.systolic.value is not None


class StallingFirmware(NibpFirmware):
    """Stops answering cuff-pressure polls once the cuff is inflating, so a poll is in flight."""

    scenarios: ClassVar[tuple[str, ...]] = NibpFirmware.scenarios

    def receive_data(self, data: bytes, now: float) -> None:
        if self.phase is not Phase.IDLE and data == proto.get_cuff_pressure():
            self.commands.append(proto.GetCuffPressure())
            return
        super().receive_data(data, now)


async def test_abort_while_a_poll_is_in_flight(tmp_path: Path) -> None:
    async with bench(tmp_path, lambda: StallingFirmware("normal", speed=2)) as setup:
        measuring = asyncio.create_task(setup.driver.measure(poll_interval=POLL))
        await until(lambda: proto.GetCuffPressure() in setup.firmware.commands, 2)
        await asyncio.wait_for(setup.driver.abort(), 2)
        with pytest.raises(MeasurementAborted):
            await asyncio.wait_for(measuring, 0.5)
        assert setup.firmware.aborts == 1


async def test_only_one_measurement_at_a_time(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal", speed=30)) as setup:
        first = asyncio.create_task(setup.driver.measure(poll_interval=POLL))
        await asyncio.sleep(0.05)
        with pytest.raises(CommandRefused):
            await setup.driver.measure(poll_interval=POLL)
        result = await asyncio.wait_for(first, 10)
        assert result.systolic.value is not None
        assert setup.firmware.cycles_started == 1


async def test_module_busy_is_refused(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal", speed=2)) as setup:
        # Someone else (a previous run of the kiosk) started a cycle.
        setup.driver._send(proto.start_measurement())
        await until(lambda: setup.firmware.phase is not Phase.IDLE, 2)
        with pytest.raises(CommandRefused, match="busy"):
            await setup.driver.measure(poll_interval=POLL)
        assert setup.firmware.cycles_started == 1


async def test_cancelling_measure_deflates_the_cuff(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal", speed=2)) as setup:
        measuring = asyncio.create_task(setup.driver.measure(poll_interval=POLL))
        await setup.wait_cuff_over(30)
        measuring.cancel()
        with pytest.raises(asyncio.CancelledError):
            await measuring
        await until(lambda: proto.Abort() in setup.firmware.commands, 2)


async def test_overall_timeout_aborts_the_cycle(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal", speed=1)) as setup:
        with pytest.raises(DeviceTimeout, match="too long"):
            await setup.driver.measure(poll_interval=POLL, timeout=0.5)
        await until(lambda: proto.Abort() in setup.firmware.commands, 2)


async def test_unplug_mid_measurement_then_reconnect(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal", speed=SPEED)) as setup:
        await setup.wait_state(DeviceState.CONNECTED)
        measuring = asyncio.create_task(setup.driver.measure(poll_interval=POLL))
        await setup.wait_cuff_over(60)
        setup.runner.unplug()
        with pytest.raises(DeviceDisconnected) as caught:
            await asyncio.wait_for(measuring, 2)
        assert caught.value.reason is Reason.DISCONNECTED
        assert "disconnected" in caught.value.message
        lost = await setup.wait_state(DeviceState.DISCONNECTED)
        assert isinstance(lost.error, DeviceDisconnected)
        assert setup.driver.state is DeviceState.DISCONNECTED
        assert not setup.driver.measuring
        with pytest.raises(DeviceDisconnected):
            await setup.driver.measure()

        setup.runner.plug()
        await setup.wait_state(DeviceState.CONNECTED)
        result = await asyncio.wait_for(setup.driver.measure(poll_interval=POLL), 10)
        assert result.systolic.value is not None
        assert setup.firmware.cycles_started == 1  # a fresh module, started once


async def test_garbage_on_the_line_still_completes(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal"), fault="garbage", garbage_rate=0.3) as setup:
        result = await asyncio.wait_for(setup.driver.measure(poll_interval=POLL), 15)
        assert 105 <= (result.systolic.value or 0) <= 135
        assert setup.driver.protocol_errors > 0
        assert setup.firmware.commands.count(proto.StartMeasurement()) == 1


async def test_silent_module_times_out(tmp_path: Path) -> None:
    async with bench(tmp_path, firmware("normal"), fault="silence") as setup:
        started = time.monotonic()
        with pytest.raises(DeviceTimeout) as caught:
            await setup.driver.measure(poll_interval=POLL)
        assert time.monotonic() - started < 2
        assert caught.value.reason is Reason.TIMEOUT
        assert not setup.driver.measuring
