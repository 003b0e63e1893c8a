"""The oximeter driver against both firmware emulators over real ptys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from devices.errors import DeviceDisconnected, DeviceError, DeviceTimeout, Reason
from devices.events import DeviceEvent, DeviceState, Quality, Reading, StateChanged
from devices.oximeter import Generation, Oximeter
from devices.simulators.base import Firmware, PtyRunner
from devices.simulators.oximeter import LegacyOximeterFirmware, OximeterFirmware


class Recorder:
    """Collects every event a driver publishes, from before it starts."""

    def __init__(self, driver: Oximeter) -> None:
        self.driver = driver
        self.queue: asyncio.Queue[DeviceEvent] = asyncio.Queue()
        self.seen: list[DeviceEvent] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.create_task(self._collect())
        await asyncio.sleep(0)
        await self.driver.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.driver.stop()
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _collect(self) -> None:
        async for event in self.driver.events():
            self.seen.append(event)
            self.queue.put_nowait(event)

    async def state(self, state: DeviceState, timeout: float = 3.0) -> StateChanged:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.queue.get()
                if isinstance(event, StateChanged) and event.new is state:
                    return event

    async def readings(self, kind: str, count: int, timeout: float = 3.0) -> list[Reading]:
        found: list[Reading] = []
        async with asyncio.timeout(timeout):
            while len(found) < count:
                event = await self.queue.get()
                if isinstance(event, Reading) and event.kind == kind:
                    found.append(event)
        return found


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, factory: Callable[[], Firmware], fault: str | None = None
) -> AsyncIterator[PtyRunner]:
    runner = PtyRunner(factory, link=str(tmp_path / "oxi"), fault=fault, seed=7)
    runner.plug()
    try:
        yield runner
    finally:
        runner.close()


@pytest.mark.parametrize(
    ("factory", "generation", "expected"),
    [
        (lambda: OximeterFirmware("normal"), "current", "current"),
        (lambda: LegacyOximeterFirmware("normal"), "legacy", "legacy"),
        (lambda: OximeterFirmware("normal"), "auto", "current"),
        (lambda: LegacyOximeterFirmware("normal"), "auto", "legacy"),
    ],
    ids=["current", "legacy", "auto-current", "auto-legacy"],
)
async def test_normal_readings_in_range(
    tmp_path: Path, factory: Callable[[], Firmware], generation: Generation, expected: str
) -> None:
    async with serving(tmp_path, factory) as runner:
        driver = Oximeter(runner.port, generation=generation)
        async with Recorder(driver) as rec:
            await rec.state(DeviceState.MEASURING, timeout=4)
            spo2 = await rec.readings("spo2", 20)
            pulses = [r for r in rec.seen if isinstance(r, Reading) and r.kind == "pulse" and r.value is not None]
            pleth = [r for r in rec.seen if isinstance(r, Reading) and r.kind == "pleth"]
        assert driver.active_generation == expected
        assert all(r.value is not None and 96 <= r.value <= 99 and r.unit == "%" for r in spo2)
        assert all(62 <= r.value <= 78 and r.unit == "/min" for r in pulses if r.value is not None)
        assert pulses and all(not r.quality for r in spo2)
        assert len({r.value for r in pleth}) > 5, "the pleth is a waveform, not a constant"
        # Auto-detection reopens the port quietly: no disconnection is shown.
        assert not [e for e in rec.seen if isinstance(e, StateChanged) and e.new is DeviceState.DISCONNECTED]


async def test_read_once_and_keep_alive(tmp_path: Path) -> None:
    firmware: list[OximeterFirmware] = []

    def factory() -> OximeterFirmware:
        firmware.append(OximeterFirmware("tachycardia"))
        firmware[-1].keep_alive_timeout = 0.5
        return firmware[-1]

    async with serving(tmp_path, factory) as runner:
        driver = Oximeter(runner.port, generation="current")
        driver.keep_alive_interval = 0.2
        async with Recorder(driver):
            spo2, pulse = await driver.read_once(timeout=3)
            assert spo2.kind == "spo2" and pulse.kind == "pulse"
            assert pulse.value is not None and 115 <= pulse.value <= 140
            # Streaming outlives the firmware's keep-alive limit thanks to the driver.
            before = driver.frames
            await asyncio.sleep(0.8)
            assert driver.frames - before > 30
        assert 0xAF in firmware[-1].commands


async def test_finger_out_flags_and_read_once_error(tmp_path: Path) -> None:
    async with serving(tmp_path, lambda: LegacyOximeterFirmware("finger-out")) as runner:
        driver = Oximeter(runner.port, generation="legacy")
        async with Recorder(driver) as rec:
            spo2 = await rec.readings("spo2", 5)
            assert all(r.value is None and Quality.FINGER_OUT in r.quality for r in spo2)
            assert driver.state is DeviceState.CONNECTED
            with pytest.raises(DeviceError) as caught:
                await driver.read_once(timeout=3, finger_out_limit=0.3)
        assert caught.value.reason is Reason.MEASUREMENT
        assert "finger" in caught.value.message


@pytest.mark.parametrize(
    "factory", [lambda: OximeterFirmware("probe-error"), lambda: LegacyOximeterFirmware("probe-error")]
)
async def test_probe_error_is_error_state(tmp_path: Path, factory: Callable[[], Firmware]) -> None:
    async with serving(tmp_path, factory) as runner:
        driver = Oximeter(runner.port)
        async with Recorder(driver) as rec:
            change = await rec.state(DeviceState.ERROR, timeout=4)
            assert change.error is not None and change.error.reason is Reason.MEASUREMENT
            pulse = await rec.readings("pulse", 3)
            assert all(r.value is None and Quality.PROBE_ERROR in r.quality for r in pulse)
            errors = [e for e in rec.seen if isinstance(e, StateChanged) and e.new is DeviceState.ERROR]
            assert len(errors) == 1, "the error state is announced once, not per frame"


@pytest.mark.parametrize("generation", ["current", "legacy"])
async def test_unplug_then_replug(tmp_path: Path, generation: Generation) -> None:
    def factory() -> Firmware:
        return OximeterFirmware() if generation == "current" else LegacyOximeterFirmware()

    async with serving(tmp_path, factory) as runner:
        driver = Oximeter(runner.port, generation=generation)
        driver.reconnect_interval = 0.05
        async with Recorder(driver) as rec:
            await rec.state(DeviceState.MEASURING, timeout=4)
            runner.unplug()
            lost = await rec.state(DeviceState.DISCONNECTED)
            assert isinstance(lost.error, DeviceDisconnected)
            assert driver.state is DeviceState.DISCONNECTED
            runner.plug()
            await rec.state(DeviceState.CONNECTED)
            await rec.state(DeviceState.MEASURING)
            assert (await rec.readings("spo2", 5))[-1].value is not None


async def test_read_once_fails_clearly_on_unplug(tmp_path: Path) -> None:
    async with serving(tmp_path, lambda: OximeterFirmware("searching")) as runner:
        driver = Oximeter(runner.port, generation="current")
        async with Recorder(driver) as rec:
            await rec.readings("pulse", 3)
            reading = asyncio.create_task(driver.read_once(timeout=5))
            await asyncio.sleep(0.2)
            runner.unplug()
            with pytest.raises(DeviceDisconnected):
                await reading


@pytest.mark.parametrize("generation", ["current", "legacy"])
async def test_garbage_is_skipped(tmp_path: Path, generation: Generation) -> None:
    def factory() -> Firmware:
        return OximeterFirmware() if generation == "current" else LegacyOximeterFirmware()

    async with serving(tmp_path, factory, fault="garbage") as runner:
        driver = Oximeter(runner.port, generation=generation)
        async with Recorder(driver) as rec:
            spo2 = await rec.readings("spo2", 60)
            # Frames have no checksum, so a rare torn frame can pass the
            # framing; read_once waits for frames that agree.
            first, pulse = await driver.read_once(timeout=3)
        assert driver.protocol_errors > 0
        assert sum(r.value is not None and 96 <= r.value <= 99 for r in spo2) > 40
        assert first.value is not None and 96 <= first.value <= 99
        assert pulse.value is not None and 62 <= pulse.value <= 78


@pytest.mark.parametrize("generation", ["current", "legacy", "auto"])
async def test_silence_is_a_timeout(tmp_path: Path, generation: Generation) -> None:
    async with serving(tmp_path, lambda: OximeterFirmware(), fault="silence") as runner:
        driver = Oximeter(runner.port, generation=generation)
        driver.silence_timeout = 0.5
        driver.probe_timeout = 0.3
        async with Recorder(driver) as rec:
            await rec.state(DeviceState.CONNECTED)
            lost = await rec.state(DeviceState.DISCONNECTED, timeout=3)
        assert isinstance(lost.error, DeviceTimeout)
        assert lost.error.message
