"""Event fan-out shared by every driver, and the reconnecting thread of the camera and stethoscope.

:class:`EventFanout` is what every driver uses to publish: the serial drivers
(:class:`devices.serial_link.SerialDriver`) and the camera and stethoscope,
which read through blocking calls (OpenCV, PyAV) and so run them in a thread
(:class:`ThreadedDriver`) instead of the serial machinery. One method
changes state, logs ``old -> new`` and publishes a
:class:`~devices.events.StateChanged` to every ``events()`` subscriber, whose
bounded queue drops its oldest event when full; an unplug gives
``DISCONNECTED`` with the error, and the path is reopened when it comes back.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

from devices.errors import DeviceError, Reason
from devices.events import DeviceEvent, DeviceState, StateChanged

Clock = Callable[[], float]
H = TypeVar("H")


class EventFanout:
    """A driver's current :class:`DeviceState` and its event subscribers.

    Every method must be called from the event loop's thread.
    """

    def __init__(self, name: str, clock: Clock, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.name = name
        self.clock = clock
        self.log = log
        self.state = DeviceState.DISCONNECTED
        self.last_error: DeviceError | None = None
        self._subscribers: list[asyncio.Queue[DeviceEvent]] = []

    def set_state(self, new: DeviceState, error: DeviceError | None = None) -> None:
        """Move to ``new``; an unchanged state is only re-announced with an error."""
        old = self.state
        if old is new and error is None:
            return
        self.state = new
        if error is not None:
            self.last_error = error
        self.log.info("%s: %s -> %s%s", self.name, old.value, new.value, f" ({error.reason.value})" if error else "")
        self.publish(StateChanged(self.name, old, new, self.clock(), error))

    def publish(self, event: DeviceEvent) -> None:
        for queue in self._subscribers:
            if queue.full():
                # A slow subscriber loses its oldest events, never the newest:
                # a live display wants the present.
                queue.get_nowait()
            queue.put_nowait(event)

    def events(self, maxsize: int = 4096) -> EventSubscription:
        """Every state change from the moment of this call, in order."""
        return EventSubscription(self._subscribers, maxsize)

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions: each one is a queue every event goes into until it is closed."""
        return len(self._subscribers)


class EventSubscription(AsyncIterator[DeviceEvent]):
    """An ``events()`` subscriber, registered when created, not when first awaited.

    A state change reported between the call and the first ``await`` is kept,
    which a plain async generator would lose. Close it with :meth:`aclose` (or
    ``async with``) when done; until then its bounded queue keeps filling.
    """

    def __init__(self, subscribers: list[asyncio.Queue[DeviceEvent]], maxsize: int) -> None:
        self._subscribers = subscribers
        self._queue: asyncio.Queue[DeviceEvent] = asyncio.Queue(maxsize)
        subscribers.append(self._queue)
        self._closed = False

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> DeviceEvent:
        if self._closed:
            raise StopAsyncIteration
        return await self._queue.get()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._subscribers.remove(self._queue)

    async def __aenter__(self) -> EventSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ThreadedDriver(abc.ABC, Generic[H]):
    """A device read by blocking calls in its own thread, kept connected.

    The thread opens the source (:meth:`_open`), serves it (:meth:`_serve`)
    until it fails, reports ``DISCONNECTED`` with the error, and reopens it
    every :attr:`reconnect_interval` seconds until it is back. Everything the
    thread reports reaches the event loop through ``call_soon_threadsafe``, so
    states and subscribers are only touched from the loop's thread.
    """

    reconnect_interval = 0.2
    kind = "device"

    def __init__(self, path: str, *, name: str, clock: Clock, logger: logging.Logger) -> None:
        self.path = path
        self.name = name
        self.clock = clock
        self.log = logging.LoggerAdapter(logger, {"device": name})
        self._fanout = EventFanout(name, clock, self.log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = asyncio.Event()
        self._failure_announced = False  # thread side: the current outage was reported

    # -- loop side -------------------------------------------------------
    @property
    def state(self) -> DeviceState:
        return self._fanout.state

    @property
    def last_error(self) -> DeviceError | None:
        """The error that came with the latest ``DISCONNECTED`` or ``ERROR`` state."""
        return self._fanout.last_error

    def events(self, maxsize: int = 4096) -> EventSubscription:
        """Every state change from the moment of this call, in order (as ``SerialDriver.events``)."""
        return self._fanout.events(maxsize)

    @property
    def subscriber_count(self) -> int:
        """Open :meth:`events` subscriptions."""
        return self._fanout.subscriber_count

    async def start(self) -> None:
        """Start keeping the device open, in a background thread."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-{self.name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop the thread and close the device; waits for a blocked read to return."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        await asyncio.to_thread(thread.join)
        # The thread's last call_soon_threadsafe callbacks ran before this
        # point: they were queued before to_thread's own completion callback.
        self._connected.clear()
        self._on_stopped()
        self._fanout.set_state(DeviceState.DISCONNECTED)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once the device delivers data; raise ``TimeoutError`` after ``timeout``."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    def _apply_state(self, new: DeviceState, error: DeviceError | None) -> None:
        if self._thread is None:
            return  # stopped: a late report from the thread changes nothing
        if new is DeviceState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        self._fanout.set_state(new, error)

    def _on_stopped(self) -> None:
        """Fail whatever still waits on the device; runs in the loop after stop()."""

    # -- thread side -----------------------------------------------------
    def _call(self, callback: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under a daemon thread
            loop.call_soon_threadsafe(callback, *args)

    def _report(self, new: DeviceState, error: DeviceError | None = None) -> None:
        if new is DeviceState.CONNECTED:
            self._failure_announced = False
        self._call(self._apply_state, new, error)

    def _fail(self, error: DeviceError, state: DeviceState = DeviceState.DISCONNECTED) -> None:
        self._on_lost(error)
        # Once per outage: a source that stays away (or keeps failing) is
        # announced when it goes, not again at every retry.
        if not self._failure_announced:
            self._failure_announced = True
            self._report(state, error)

    @property
    def _stopping(self) -> bool:
        return self._stop.is_set()

    def _sleep(self, seconds: float) -> bool:
        """Wait in the thread; False when stop() was asked meanwhile."""
        if seconds > 0:
            return not self._stop.wait(seconds)
        return not self._stop.is_set()

    def _run(self) -> None:
        self._failure_announced = False
        while not self._stopping:
            try:
                handle = self._open()
            except DeviceError as exc:
                self._fail(exc)
                self._sleep(self.reconnect_interval)
                continue
            try:
                self._serve(handle)
            except DeviceError as exc:
                self._fail(exc)
            except Exception as exc:  # a library failure must not kill the reconnect loop
                if not self._failure_announced:
                    self.log.exception("%s: unexpected failure (%s)", self.name, exc.__class__.__name__)
                error = DeviceError(f"the {self.kind} stopped working", reason=Reason.PROTOCOL, device=self.name)
                self._fail(error, DeviceState.ERROR)
            finally:
                self._close(handle)
            self._sleep(self.reconnect_interval)

    @abc.abstractmethod
    def _open(self) -> H:
        """Open the source; raise :class:`DeviceNotFound` when it is not there."""

    @abc.abstractmethod
    def _serve(self, handle: H) -> None:
        """Read until stop() (return) or failure (raise :class:`DeviceError`)."""

    @abc.abstractmethod
    def _close(self, handle: H) -> None:
        """Release the source; must not raise."""

    def _on_lost(self, error: DeviceError) -> None:
        """Fail what waits on the device; called in the thread on each failure."""
