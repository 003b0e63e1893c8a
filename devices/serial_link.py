"""The thin asyncio side of the serial drivers.

:class:`SerialLink` owns one pyserial port inside the event loop: it turns
readable bytes into chunks stamped with their arrival time, and an unplug
(``SerialException``/``OSError`` from the port) into :class:`DeviceDisconnected`,
as pyserial's ``ReaderThread`` turns it into ``connection_lost``.

:class:`SerialDriver` keeps a peripheral connected: it opens the configured
path, runs the device's session, and when the port goes away it reports
``DISCONNECTED``, fails whatever was waiting on the device with a clear error,
and reopens the path as soon as it comes back.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import serial

from devices.errors import DeviceDisconnected, DeviceError, DeviceNotFound, RemoteProtocolError
from devices.events import DeviceEvent, DeviceState
from devices.fanout import EventFanout, EventSubscription
from devices.protocols import NEED_DATA, NeedData

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
E_co = TypeVar("E_co", covariant=True)


class FrameParser(Protocol[E_co]):
    """The sans-IO parser shape every serial protocol module follows."""

    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> E_co | NeedData: ...


@dataclass(frozen=True)
class SerialSettings:
    """Line settings of a peripheral's port, from its protocol description."""

    baudrate: int
    bytesize: int = serial.EIGHTBITS
    parity: str = serial.PARITY_NONE
    stopbits: float = serial.STOPBITS_ONE
    xonxoff: bool = False


class SerialLink:
    """One open serial port, read and written from the asyncio loop."""

    def __init__(self, path: str, settings: SerialSettings, *, clock: Clock = time.monotonic) -> None:
        self.path = path
        self.settings = settings
        self._clock = clock
        self._port: serial.Serial | None = None
        self._chunks: asyncio.Queue[tuple[bytes, float] | DeviceError] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: DeviceError | None = None

    def open(self) -> None:
        """Open the port; raise :class:`DeviceNotFound` when it is absent."""
        if not os.path.exists(self.path):
            raise DeviceNotFound(f"no device at {self.path}")
        try:
            port = serial.Serial(
                port=self.path,
                baudrate=self.settings.baudrate,
                bytesize=self.settings.bytesize,
                parity=self.settings.parity,
                stopbits=self.settings.stopbits,
                xonxoff=self.settings.xonxoff,
                timeout=0,
                write_timeout=0,
                exclusive=True,
            )
        except (serial.SerialException, OSError) as exc:
            raise DeviceNotFound(f"cannot open {self.path}: {exc.__class__.__name__}") from exc
        self._port = port
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(port.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        port = self._port
        if port is None:
            return
        try:
            data = port.read(max(port.in_waiting, 1))
        except (serial.SerialException, OSError) as exc:
            self._fail(DeviceDisconnected(f"{self.path} went away ({exc.__class__.__name__})"))
            return
        if data:
            self._chunks.put_nowait((data, self._clock()))

    def _fail(self, error: DeviceError) -> None:
        if self._lost is None:
            self._lost = error
            self._chunks.put_nowait(error)
        self._detach()

    def _detach(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(port.fileno())
        with contextlib.suppress(Exception):
            port.close()

    async def read(self) -> tuple[bytes, float]:
        """Next chunk of bytes and the monotonic time it arrived."""
        item = await self._chunks.get()
        if isinstance(item, DeviceError):
            self._chunks.put_nowait(item)
            raise item
        return item

    def write(self, data: bytes) -> None:
        """Write a whole command, or raise :class:`DeviceDisconnected`."""
        port = self._port
        if port is None:
            raise self._lost or DeviceDisconnected(f"{self.path} is not open")
        try:
            port.write(data)
            port.flush()
        except (serial.SerialException, OSError) as exc:
            self._fail(DeviceDisconnected(f"{self.path} went away ({exc.__class__.__name__})"))
            raise self._lost or DeviceDisconnected(self.path) from exc

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def close(self) -> None:
        self._detach()


class SerialDriver(abc.ABC):
    """A serial peripheral kept connected, its events fanned out to subscribers.

    Subclasses give the line settings, the protocol work done on each chunk
    (:meth:`_on_data`) and what to do on connection (:meth:`_on_connected`).
    """

    settings: SerialSettings
    kind: str = "device"
    reconnect_interval = 0.2

    def __init__(self, path: str, *, name: str | None = None, clock: Clock = time.monotonic) -> None:
        self.path = path
        self.name = name or self.kind
        self.clock = clock
        self._link: SerialLink | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.log = logging.LoggerAdapter(logger, {"device": self.name})
        self._fanout = EventFanout(self.name, clock, self.log)
        self.protocol_errors = 0
        """Runs of bytes dropped off the line as not valid frames, since creation."""

    # -- state -----------------------------------------------------------
    @property
    def state(self) -> DeviceState:
        return self._fanout.state

    @property
    def last_error(self) -> DeviceError | None:
        """The error that came with the latest ``DISCONNECTED`` or ``ERROR`` state."""
        return self._fanout.last_error

    def _set_state(self, new: DeviceState, error: DeviceError | None = None) -> None:
        self._fanout.set_state(new, error)

    def _publish(self, event: DeviceEvent) -> None:
        self._fanout.publish(event)

    def events(self, maxsize: int = 4096) -> EventSubscription:
        """Every reading and state change from the moment of this call, in order."""
        return self._fanout.events(maxsize)

    @property
    def subscriber_count(self) -> int:
        """Open :meth:`events` subscriptions."""
        return self._fanout.subscriber_count

    # -- connection ------------------------------------------------------
    async def start(self) -> None:
        """Start keeping the device connected, in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"driver-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._link is not None:
            self._link.close()
            self._link = None
        self._connected.clear()

    async def __aenter__(self) -> SerialDriver:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _run(self) -> None:
        announced_missing = False
        while True:
            link = SerialLink(self.path, self.settings, clock=self.clock)
            try:
                link.open()
            except DeviceNotFound as exc:
                if not announced_missing:
                    # Once per absence: the UI can say "not plugged in", the
                    # log is not flooded while we poll for the port's return.
                    self.log.info("%s: waiting for %s (%s)", self.name, self.path, exc.reason.value)
                    self._set_state(DeviceState.DISCONNECTED, exc)
                    announced_missing = True
                await asyncio.sleep(self.reconnect_interval)
                continue
            announced_missing = False
            self._link = link
            self._reset_protocol()
            self._connected.set()
            self._set_state(DeviceState.CONNECTED)
            try:
                await self._serve(link)
            except DeviceError as exc:
                self._connected.clear()
                self._link = None
                link.close()
                self._on_lost(exc)
                self._set_state(DeviceState.DISCONNECTED, exc)
            await asyncio.sleep(self.reconnect_interval)

    async def _serve(self, link: SerialLink) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read_loop(link))
                await self._on_connected(link, group)
        except* DeviceError as group_error:
            raise _first_leaf(group_error) from None

    async def _read_loop(self, link: SerialLink) -> None:
        while True:
            data, now = await link.read()
            self._on_data(data, now)

    def _decode(self, parser: FrameParser[E_co], data: bytes) -> tuple[list[E_co], bool]:
        """Feed ``data`` to ``parser``: the frames it completes, and whether bytes were dropped.

        A dropped run is counted and logged by size only (its bytes may carry
        a reading); the parser has already resynchronised past it.
        """
        parser.receive_data(data)
        events: list[E_co] = []
        dropped = False
        while True:
            try:
                event = parser.next_event()
            except RemoteProtocolError as exc:
                dropped = True
                self.protocol_errors += 1
                self.log.debug("%s: dropped %d byte(s) off the line", self.name, len(getattr(exc, "skipped", b"")))
                continue
            if event is NEED_DATA:
                return events, dropped
            events.append(event)

    def _send(self, data: bytes) -> None:
        link = self._link
        if link is None:
            raise DeviceDisconnected(f"{self.name} is not connected", device=self.name)
        link.write(data)

    # -- for subclasses --------------------------------------------------
    @abc.abstractmethod
    def _reset_protocol(self) -> None:
        """Start a fresh protocol object for a new connection."""

    @abc.abstractmethod
    def _on_data(self, data: bytes, now: float) -> None:
        """Feed bytes to the protocol and publish what it decodes."""

    async def _on_connected(self, link: SerialLink, group: asyncio.TaskGroup) -> None:  # noqa: B027
        """Send what the device needs on connection; may add tasks to ``group``."""

    def _on_lost(self, error: DeviceError) -> None:  # noqa: B027
        """Fail whatever waits on the device; called once per lost connection."""


def _first_leaf(group: BaseExceptionGroup[DeviceError]) -> DeviceError:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, DeviceError)
    return error
