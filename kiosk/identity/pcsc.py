"""pyscard over pcscd, brought to asyncio.

- :class:`PcscMonitor` runs one daemon thread that loops on
  ``SCardGetStatusChange`` (with a short timeout, plus the ``\\\\?PnP?\\Notification``
  pseudo-reader so readers plugged or unplugged are seen at once). Reader and
  card changes become timestamped events delivered on the asyncio loop with
  ``call_soon_threadsafe``. pcscd going away or coming back is an event too;
  the thread reconnects by itself.
- :class:`PcscCard` is a connected card (a :class:`~.identity.CardChannel`).
  Each card owns one daemon worker thread for its blocking calls (connect,
  transmit, disconnect); every call has a timeout, so a mute card or a hung
  pcscd turns into :class:`~.errors.CardError` instead of a stuck session.
  Daemon threads (not the loop's default executor) so that a call the card
  never answers cannot block the loop's shutdown.
- :func:`read_card` waits for a card in any reader (or a named one), reads it
  and returns a :class:`ReadResult` with monotonic timestamps for benchmarks.

Pcscd's client socket can be redirected with the ``PCSCLITE_CSOCK_NAME``
environment variable (read once per process by libpcsclite), which the tests
use for a private pcscd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from smartcard import scard

from .errors import CardError, Reason
from .identity import CardIdentity, IdentityReader

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCARD_PRESENT = 0x0004
"""SCardStatus' dwState bit "card present" (pcsc-lite's pcsclite.h; pyscard does not export it)."""

REMOVAL_CHECKS = 8
REMOVAL_CHECK_INTERVAL = 0.1
"""After a failed or truncated exchange, how long to look for the removal (pcscd polls every 400 ms)."""

PNP_READER = "\\\\?PnP?\\Notification"
"""pcsc-lite's pseudo reader whose state changes when readers come and go."""

_REMOVED_CODES = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD}
_MUTE_CODES = {scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_W_UNPOWERED_CARD, scard.SCARD_W_UNSUPPORTED_CARD}
_READER_CODES = {scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE}
_SERVICE_CODES = {
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_E_INVALID_HANDLE,
    scard.SCARD_F_COMM_ERROR,
    scard.SCARD_F_INTERNAL_ERROR,
    scard.SCARD_E_NO_READERS_AVAILABLE,
}


def _error(hresult: int, op: str, reader: str = "") -> CardError:
    code = hresult & 0xFFFFFFFF
    if hresult in _REMOVED_CODES:
        return CardError(reason=Reason.REMOVED, reader=reader)
    if hresult in _MUTE_CODES:
        return CardError(reason=Reason.MUTE, reader=reader)
    if hresult in _READER_CODES:
        return CardError("The card reader was disconnected.", reason=Reason.NO_READER, reader=reader)
    if hresult == scard.SCARD_E_TIMEOUT:
        return CardError(reason=Reason.TIMEOUT, reader=reader)
    if hresult in _SERVICE_CODES:
        return CardError(reason=Reason.PCSC, reader=reader)
    return CardError(f"The smart-card service failed ({op}: 0x{code:08X}).", reason=Reason.PCSC, reader=reader)


# -- events ------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderAdded:
    """A reader appeared."""

    reader: str
    """Reader name as pcscd gives it."""
    at: float
    """``time.monotonic()`` when the monitor saw it."""


@dataclass(frozen=True)
class ReaderRemoved:
    """A reader disappeared (unplugged, or pcscd stopped)."""

    reader: str
    """Reader name."""
    at: float
    """``time.monotonic()`` when the monitor saw it."""


@dataclass(frozen=True)
class CardInserted:
    """A card is in a reader."""

    reader: str
    """The reader holding it."""
    atr: bytes
    """Answer to reset (empty for a mute card)."""
    mute: bool
    """pcscd could not get an ATR from it."""
    at: float
    """``time.monotonic()`` when the monitor saw it."""


@dataclass(frozen=True)
class CardRemoved:
    """A card left a reader."""

    reader: str
    """The reader it was in."""
    at: float
    """``time.monotonic()`` when the monitor saw it."""


@dataclass(frozen=True)
class ServiceChanged:
    """pcscd became reachable or unreachable."""

    available: bool
    """True when a context could be established."""
    at: float
    """``time.monotonic()`` of the change."""


PcscEvent = ReaderAdded | ReaderRemoved | CardInserted | CardRemoved | ServiceChanged


# -- thread plumbing -----------------------------------------------------------


def _deliver(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return  # timed out or cancelled meanwhile
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Worker:
    """One daemon thread running blocking calls in order."""

    def __init__(self, name: str) -> None:
        self._q: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop] | None]
        self._q = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[], T], timeout: float) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._q.put((fn, fut, loop))
        return await asyncio.wait_for(fut, timeout)

    def call_soon(self, fn: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        self._q.put((fn, loop.create_future(), loop))

    def close(self) -> None:
        self._q.put(None)

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            fn, fut, loop = item
            try:
                value, ok = fn(), True
            except BaseException as exc:
                value, ok = exc, False
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(_deliver, fut, ok, value)


# -- connected card ------------------------------------------------------------


class PcscCard:
    """A card connected through pcscd; use :meth:`connect`."""

    def __init__(self, reader: str, worker: _Worker, ctx: int, hcard: int, protocol: int, atr: bytes, timeout: float):
        self._reader = reader
        self._worker = worker
        self._ctx = ctx
        self._hcard = hcard
        self._protocol = protocol
        self._atr = atr
        self._timeout = timeout
        self._closed = False
        self._stuck = False

    @property
    def reader(self) -> str:
        """The reader holding the card."""
        return self._reader

    @property
    def atr(self) -> bytes:
        """Answer to reset."""
        return self._atr

    @classmethod
    async def connect(cls, reader: str, *, timeout: float = 5.0, apdu_timeout: float = 2.0) -> PcscCard:
        """Connect to the card in ``reader`` (shared mode, T=0 or T=1).

        Raises :class:`CardError`: MUTE when the card or pcscd does not answer
        within ``timeout``, NO_CARD / REMOVED / NO_READER / PCSC otherwise.
        Each later APDU gets ``apdu_timeout`` seconds (MUTE after that).
        """
        worker = _Worker(f"pcsc-card:{reader}")

        def blocking() -> tuple[int, int, int, bytes]:
            hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hr != scard.SCARD_S_SUCCESS:
                raise _error(hr, "establish", reader)
            hr, hcard, protocol = scard.SCardConnect(
                ctx, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
            )
            if hr != scard.SCARD_S_SUCCESS:
                scard.SCardReleaseContext(ctx)
                if hr == scard.SCARD_E_NO_SMARTCARD:
                    raise CardError(reason=Reason.NO_CARD, reader=reader)
                raise _error(hr, "connect", reader)
            hr, _name, _state, _proto, atr = scard.SCardStatus(hcard)
            if hr != scard.SCARD_S_SUCCESS:
                scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
                scard.SCardReleaseContext(ctx)
                raise _error(hr, "status", reader)
            return ctx, hcard, protocol, bytes(atr)

        try:
            ctx, hcard, protocol, atr = await worker.call(blocking, timeout)
        except TimeoutError:
            worker.close()
            raise CardError(reason=Reason.MUTE, reader=reader) from None
        except BaseException:
            worker.close()
            raise
        logger.debug("connected to card in %s (protocol %d)", reader, protocol)
        return cls(reader, worker, ctx, hcard, protocol, atr, apdu_timeout)

    async def transmit(self, apdu: bytes) -> bytes:
        """Send one APDU; raises :class:`CardError` (REMOVED, MUTE, TIMEOUT...)."""
        if self._closed:
            raise CardError("The card connection is closed.", reason=Reason.REMOVED, reader=self._reader)

        def blocking() -> bytes:
            hr, response = scard.SCardTransmit(self._hcard, self._protocol, list(apdu))
            if hr == scard.SCARD_S_SUCCESS and len(response) >= 2:
                return bytes(response)
            # A card pulled mid-command shows up as an error or (vpcd) as an
            # answer shorter than a status word; pcscd notices the removal at
            # its next presence poll (~400 ms), so ask the reader a few times.
            for _ in range(REMOVAL_CHECKS):
                shr, _n, state, _p, _a = scard.SCardStatus(self._hcard)
                if shr in _REMOVED_CODES or (shr == scard.SCARD_S_SUCCESS and not state & _SCARD_PRESENT):
                    raise CardError(reason=Reason.REMOVED, reader=self._reader)
                time.sleep(REMOVAL_CHECK_INTERVAL)
            if hr == scard.SCARD_S_SUCCESS:
                return bytes(response)  # the card is there: a genuinely short answer
            if hr == scard.SCARD_E_NOT_TRANSACTED:
                raise CardError(reason=Reason.MUTE, reader=self._reader)
            raise _error(hr, "transmit", self._reader)

        try:
            return await self._worker.call(blocking, self._timeout)
        except TimeoutError:
            self._stuck = True
            raise CardError(reason=Reason.MUTE, reader=self._reader) from None

    async def close(self) -> None:
        """Disconnect (leaving the card powered) and stop the worker thread."""
        if self._closed:
            return
        self._closed = True

        def blocking() -> None:
            scard.SCardDisconnect(self._hcard, scard.SCARD_LEAVE_CARD)
            scard.SCardReleaseContext(self._ctx)

        if self._stuck:
            # The worker is still blocked in a call the card never answered:
            # queue the disconnect behind it but do not wait for it.
            self._worker.call_soon(blocking)
        else:
            with contextlib.suppress(TimeoutError, CardError):
                await self._worker.call(blocking, 2.0)
        self._worker.close()

    async def __aenter__(self) -> PcscCard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# -- monitor -------------------------------------------------------------------


class PcscMonitor:
    """Watches every reader of pcscd and publishes :data:`PcscEvent` on the loop.

    ``readers`` maps each known reader to the card in it (a
    :class:`CardInserted`) or None; ``available`` says whether pcscd answers.
    Use as ``async with PcscMonitor() as monitor:``.
    """

    def __init__(self, *, poll_timeout: float = 0.5, retry_interval: float = 0.5) -> None:
        self.poll_timeout = poll_timeout
        self.retry_interval = retry_interval
        self.readers: dict[str, CardInserted | None] = {}
        """Known readers and the card each holds, as of the last event delivered."""
        self.available = False
        """True while pcscd answers."""
        self._subscribers: list[asyncio.Queue[PcscEvent]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ctx: int | None = None
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Start the monitor thread and wait for its first view of the readers."""
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._started.clear()
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="pcsc-monitor", daemon=True)
        self._thread.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._started.wait(), 3 * self.poll_timeout + 1)

    async def stop(self) -> None:
        """Stop the thread (cancelling a pending ``SCardGetStatusChange``)."""
        self._stop.set()
        ctx = self._ctx
        if ctx is not None:
            with contextlib.suppress(Exception):
                scard.SCardCancel(ctx)
        thread, self._thread = self._thread, None
        if thread is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), 3 * self.poll_timeout + 2)

    async def __aenter__(self) -> PcscMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def subscribe(self) -> asyncio.Queue[PcscEvent]:
        """A queue receiving every event from now on; :meth:`unsubscribe` it after use."""
        q: asyncio.Queue[PcscEvent] = asyncio.Queue()
        self._subscribers.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[PcscEvent]) -> None:
        """Stop delivering to ``q``."""
        with contextlib.suppress(ValueError):
            self._subscribers.remove(q)

    async def events(self) -> AsyncIterator[PcscEvent]:
        """Every event from now on."""
        q = self.subscribe()
        try:
            while True:
                yield await q.get()
        finally:
            self.unsubscribe(q)

    async def wait_for_card(self, reader: str | None = None, *, timeout: float | None = None) -> CardInserted:
        """A card present now or inserted within ``timeout``, in ``reader`` or any reader.

        Raises :class:`CardError`: PCSC when pcscd is unreachable, NO_READER
        when no (matching) reader exists, NO_CARD when none came in time.
        """
        q = self.subscribe()
        try:
            for card in self.readers.values():
                if card is not None and (reader is None or card.reader == reader):
                    return card
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    ev = await asyncio.wait_for(q.get(), remaining)
                except TimeoutError:
                    raise self._no_card_error(reader) from None
                if isinstance(ev, CardInserted) and (reader is None or ev.reader == reader):
                    return ev
        finally:
            self.unsubscribe(q)

    def _no_card_error(self, reader: str | None) -> CardError:
        if not self.available:
            return CardError(reason=Reason.PCSC, reader=reader or "")
        if not self.readers or (reader is not None and reader not in self.readers):
            return CardError(reason=Reason.NO_READER, reader=reader or "")
        return CardError(reason=Reason.NO_CARD, reader=reader or "")

    # -- loop side --

    def _dispatch(self, ev: PcscEvent | None) -> None:
        if ev is None:
            self._started.set()
            return
        if isinstance(ev, ServiceChanged):
            self.available = ev.available
            logger.info("pcscd %s", "available" if ev.available else "unavailable")
        elif isinstance(ev, ReaderAdded):
            self.readers[ev.reader] = None
            logger.info("reader added: %s", ev.reader)
        elif isinstance(ev, ReaderRemoved):
            self.readers.pop(ev.reader, None)
            logger.info("reader removed: %s", ev.reader)
        elif isinstance(ev, CardInserted):
            self.readers[ev.reader] = ev
            logger.info("card inserted in %s%s", ev.reader, " (mute)" if ev.mute else "")
        elif isinstance(ev, CardRemoved):
            self.readers[ev.reader] = None
            logger.info("card removed from %s", ev.reader)
        for q in list(self._subscribers):
            q.put_nowait(ev)

    # -- thread side --

    def _emit(self, ev: PcscEvent | None) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._dispatch, ev)
        except RuntimeError:  # loop closed under us
            self._stop.set()

    def _run(self) -> None:
        ctx: int | None = None
        states: dict[str, int] = {}  # reader -> last dwEventState (CHANGED bit cleared)
        cards: dict[str, bytes] = {}  # reader -> ATR of the card in it
        pnp_state = 0
        service: bool | None = None
        first = True

        def drop_reader(name: str, now: float) -> None:
            if name in cards:
                del cards[name]
                self._emit(CardRemoved(name, now))
            states.pop(name, None)
            self._emit(ReaderRemoved(name, now))

        def lose_service() -> None:
            nonlocal ctx, service, pnp_state
            now = time.monotonic()
            if ctx is not None:
                with contextlib.suppress(Exception):
                    scard.SCardReleaseContext(ctx)
            ctx = self._ctx = None
            pnp_state = 0
            for name in list(states):
                drop_reader(name, now)
            if service is not False:
                service = False
                self._emit(ServiceChanged(False, now))

        while not self._stop.is_set():
            if ctx is None:
                hr, new_ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                if hr != scard.SCARD_S_SUCCESS:
                    lose_service()
                    if first:
                        first = False
                        self._emit(None)
                    self._stop.wait(self.retry_interval)
                    continue
                ctx = self._ctx = new_ctx
                if service is not True:
                    service = True
                    self._emit(ServiceChanged(True, time.monotonic()))
            hr, names = scard.SCardListReaders(ctx, [])
            if hr == scard.SCARD_E_NO_READERS_AVAILABLE:
                names = []
            elif hr != scard.SCARD_S_SUCCESS:
                lose_service()
                continue
            now = time.monotonic()
            for name in [n for n in states if n not in names]:
                drop_reader(name, now)
            for name in names:
                if name not in states:
                    states[name] = scard.SCARD_STATE_UNAWARE
                    self._emit(ReaderAdded(name, now))
            query = [(n, states[n]) for n in names] + [(PNP_READER, pnp_state)]
            # A first query with UNAWARE readers returns at once with their state.
            hr, result = scard.SCardGetStatusChange(ctx, int(self.poll_timeout * 1000), query)
            if hr in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED, *_READER_CODES):
                if first and hr == scard.SCARD_E_TIMEOUT:
                    first = False
                    self._emit(None)
                continue
            if hr != scard.SCARD_S_SUCCESS:
                lose_service()
                continue
            now = time.monotonic()
            for name, event_state, atr in result:
                event_state &= 0xFFFFFFFF
                if name == PNP_READER:
                    pnp_state = event_state & ~scard.SCARD_STATE_CHANGED
                    continue
                if name not in states:
                    continue
                previous = states[name]
                states[name] = event_state & ~scard.SCARD_STATE_CHANGED
                present = bool(event_state & scard.SCARD_STATE_PRESENT)
                # The high 16 bits count insertions/removals: a change of count
                # while still present means a card swapped between two polls.
                swapped = present and name in cards and (previous >> 16) != (event_state >> 16) and previous != 0
                if name in cards and (not present or swapped):
                    del cards[name]
                    self._emit(CardRemoved(name, now))
                if present and name not in cards:
                    cards[name] = bytes(atr)
                    mute = bool(event_state & scard.SCARD_STATE_MUTE)
                    self._emit(CardInserted(name, bytes(atr), mute, now))
            if first:
                first = False
                self._emit(None)
        if ctx is not None:
            with contextlib.suppress(Exception):
                scard.SCardReleaseContext(ctx)
        self._ctx = None
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopped.set)


# -- one-shot read ---------------------------------------------------------------


@dataclass(frozen=True)
class ReadResult:
    """A card read, timestamped for benchmarks."""

    identity: CardIdentity
    """What the card says."""
    reader: str
    """The reader that held it."""
    inserted_at: float
    """``time.monotonic()`` when the monitor saw the card (or found it present)."""
    identity_at: float
    """``time.monotonic()`` when the identity was available."""


async def read_inserted(
    inserted: CardInserted, identity_reader: IdentityReader | None = None, *, timeout: float = 10.0
) -> ReadResult:
    """Connect to the card of ``inserted`` and read it within ``timeout`` seconds."""
    from .vitale import PublicVitaleReader

    if inserted.mute:
        raise CardError(reason=Reason.MUTE, reader=inserted.reader)
    reader_impl = identity_reader or PublicVitaleReader()
    deadline = time.monotonic() + timeout
    card = await PcscCard.connect(inserted.reader, timeout=min(timeout, 5.0), apdu_timeout=min(timeout / 2, 2.0))
    try:
        try:
            identity = await asyncio.wait_for(reader_impl.read(card), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise CardError(reason=Reason.TIMEOUT, reader=inserted.reader) from None
    finally:
        await card.close()
    return ReadResult(identity, inserted.reader, inserted.at, time.monotonic())


async def read_card(
    monitor: PcscMonitor,
    *,
    reader: str | None = None,
    timeout: float | None = None,
    identity_reader: IdentityReader | None = None,
) -> ReadResult:
    """Wait for a card (any reader unless ``reader``), then read it.

    ``timeout`` bounds the wait for the card and, separately, the read (default
    10 s for the read). Raises :class:`CardError`.
    """
    inserted = await monitor.wait_for_card(reader, timeout=timeout)
    return await read_inserted(inserted, identity_reader, timeout=timeout or 10.0)
