"""SerialLink, SerialDriver and PtyRunner over real pseudo-terminals."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import ClassVar

import pytest

from devices.errors import DeviceDisconnected, DeviceNotFound
from devices.events import DeviceState, StateChanged
from devices.serial_link import SerialDriver, SerialLink, SerialSettings
from devices.simulators.base import Firmware, PtyRunner, UnknownScenario, split_scenario

SETTINGS = SerialSettings(115200)


class EchoFirmware(Firmware):
    """Answers each byte with its complement; ticks a counter byte every 20 ms."""

    kind: ClassVar[str] = "echo"
    scenarios: ClassVar[tuple[str, ...]] = ("normal", "ticking")

    def __init__(self, scenario: str | None = None, *, seed: int = 0) -> None:
        super().__init__(scenario, seed=seed)
        self.next_tick = 0.0
        self.ticks = 0

    def receive_data(self, data: bytes, now: float) -> None:
        self._emit(bytes(0xFF - b for b in data))

    def get_timer(self) -> float | None:
        return self.next_tick if self.scenario == "ticking" else None

    def handle_timer(self, now: float) -> None:
        self.ticks += 1
        self._emit(bytes([self.ticks & 0x7F]))
        self.next_tick = now + 0.02


class CountingDriver(SerialDriver):
    kind = "counter"
    settings = SETTINGS
    reconnect_interval = 0.05

    def _reset_protocol(self) -> None:
        self.received = bytearray()

    def _on_data(self, data: bytes, now: float) -> None:
        self.received += data


async def _read_exactly(link: SerialLink, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk, _ = await asyncio.wait_for(link.read(), 2)
        data += chunk
    return data


async def test_link_round_trip_and_binary_transparency(tmp_path: Path) -> None:
    runner = PtyRunner(lambda: EchoFirmware(), link=str(tmp_path / "port"))
    port = runner.plug()
    assert os.path.islink(port)
    link = SerialLink(port, SETTINGS)
    link.open()
    try:
        # Every byte value crosses unchanged: no echo, no CR/LF or XON/XOFF
        # translation by the line discipline.
        payload = bytes(range(256))
        link.write(payload)
        assert await _read_exactly(link, 256) == bytes(0xFF - b for b in payload)
    finally:
        link.close()
        runner.close()


async def test_unplug_is_a_disconnection_and_replug_moves_the_link(tmp_path: Path) -> None:
    runner = PtyRunner(lambda: EchoFirmware(), link=str(tmp_path / "port"))
    port = runner.plug()
    first_target = os.readlink(port)
    link = SerialLink(port, SETTINGS)
    link.open()
    runner.unplug()
    with pytest.raises(DeviceDisconnected):
        await asyncio.wait_for(link.read(), 2)
    assert not os.path.exists(port)
    with pytest.raises(DeviceDisconnected):
        link.write(b"x")
    runner.plug()
    assert os.path.exists(port)
    assert os.readlink(port) != first_target or os.path.exists(first_target)
    runner.close()


def test_missing_port_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(DeviceNotFound):
        SerialLink(str(tmp_path / "absent"), SETTINGS).open()


async def _next_state(events: asyncio.Queue[StateChanged], state: DeviceState) -> StateChanged:
    while True:
        event = await asyncio.wait_for(events.get(), 3)
        if event.new is state:
            return event


async def test_driver_reconnects_by_itself(tmp_path: Path) -> None:
    runner = PtyRunner(lambda: EchoFirmware("ticking"), link=str(tmp_path / "port"))
    runner.plug()
    driver = CountingDriver(runner.port)
    states: asyncio.Queue[StateChanged] = asyncio.Queue()

    async def collect() -> None:
        async for event in driver.events():
            if isinstance(event, StateChanged):
                states.put_nowait(event)

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)
    async with driver:
        await _next_state(states, DeviceState.CONNECTED)
        await asyncio.sleep(0.2)
        assert len(driver.received) > 3

        runner.unplug()
        lost = await _next_state(states, DeviceState.DISCONNECTED)
        assert isinstance(lost.error, DeviceDisconnected)
        assert driver.state is DeviceState.DISCONNECTED

        runner.plug()
        await _next_state(states, DeviceState.CONNECTED)
        driver._send(b"\x00")
        await asyncio.sleep(0.1)
        assert b"\xff" in driver.received
    collector.cancel()
    runner.close()


async def test_garbage_fault_injects_bytes(tmp_path: Path) -> None:
    runner = PtyRunner(lambda: EchoFirmware(), fault="garbage", garbage_rate=1.0, seed=3)
    port = runner.plug()
    link = SerialLink(port, SETTINGS)
    link.open()
    try:
        link.write(b"\x10")
        data = await _read_exactly(link, 2)
        assert b"\xef" in data and len(data) >= 2
    finally:
        link.close()
        runner.close()


async def test_silence_fault_says_nothing(tmp_path: Path) -> None:
    runner = PtyRunner(lambda: EchoFirmware(), fault="silence")
    port = runner.plug()
    link = SerialLink(port, SETTINGS)
    link.open()
    try:
        link.write(b"\x10\x11")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(link.read(), 0.3)
    finally:
        link.close()
        runner.close()


def test_scenario_names_are_checked() -> None:
    assert split_scenario("garbage", ("normal",)) == (None, "garbage")
    assert split_scenario("normal", ("normal",)) == ("normal", None)
    assert split_scenario(None, ("normal",)) == (None, None)
    with pytest.raises(UnknownScenario):
        split_scenario("volcano", ("normal",))
    with pytest.raises(UnknownScenario):
        EchoFirmware("volcano")
