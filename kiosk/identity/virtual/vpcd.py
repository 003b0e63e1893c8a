"""The vpcd protocol: framing (sans-IO) and the asyncio socket adapter.

Facts (``PROTOCOLS.md``, "Virtual cards for tests: the vpcd protocol"): the
virtual card is a TCP *client* of pcscd's vpcd driver (port 35963 by default;
Debian's driver also opens port+1 for a second slot). Each message is a
2-byte big-endian length then the data. One-byte messages are control codes:
``00`` power off, ``01`` power on, ``02`` reset (no answer), ``04`` get ATR
(answer: the ATR). Longer messages are command APDUs, answered with a response
APDU. Connecting is an insertion for pcscd; closing the socket is a removal.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import time
from dataclasses import dataclass

from .cards import CardSpec

logger = logging.getLogger(__name__)

DEFAULT_PORT = 35963
CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_GET_ATR = 0x04


class Kind(enum.Enum):
    """What vpcd asks."""

    POWER_OFF = "power_off"
    POWER_ON = "power_on"
    RESET = "reset"
    GET_ATR = "get_atr"
    APDU = "apdu"


_CONTROL = {CTRL_POWER_OFF: Kind.POWER_OFF, CTRL_POWER_ON: Kind.POWER_ON, CTRL_RESET: Kind.RESET}


@dataclass(frozen=True)
class VpcdMessage:
    """One message from vpcd."""

    kind: Kind
    """The request."""
    apdu: bytes = b""
    """The command APDU when ``kind`` is APDU."""


def frame(payload: bytes) -> bytes:
    """One vpcd message: 2-byte big-endian length, then ``payload``."""
    return len(payload).to_bytes(2, "big") + payload


class VpcdFramer:
    """Splits vpcd's byte stream into messages (h11 shape, never raises)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the socket."""
        self._buf += data

    def next_event(self) -> VpcdMessage | None:
        """The next complete message, or None when more bytes are needed."""
        while len(self._buf) >= 2:
            n = int.from_bytes(self._buf[:2], "big")
            if len(self._buf) < 2 + n:
                return None
            payload = bytes(self._buf[2 : 2 + n])
            del self._buf[: 2 + n]
            if n == 0:
                continue  # an empty message carries nothing: skip it
            if n == 1 and payload[0] in _CONTROL:
                return VpcdMessage(_CONTROL[payload[0]])
            if n == 1 and payload[0] == CTRL_GET_ATR:
                return VpcdMessage(Kind.GET_ATR)
            return VpcdMessage(Kind.APDU, payload)
        return None


class VirtualCardRunner:
    """Plugs a :class:`CardSpec` into vpcd over TCP.

    :meth:`insert` connects (an insertion for pcscd) and serves requests in a
    task; :meth:`remove` closes the socket (a removal). ``inserted_at`` and
    ``removed_at`` are ``time.monotonic()`` stamps for benchmarks.
    """

    def __init__(self, spec: CardSpec, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.spec = spec
        self.host = host
        self.port = port
        self.inserted_at: float | None = None
        """Monotonic time the connection to vpcd was made."""
        self.removed_at: float | None = None
        """Monotonic time the connection was closed."""
        self.pulled = asyncio.Event()
        """Set when the pull_after fault closed the connection."""
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def inserted(self) -> bool:
        """True while connected to vpcd."""
        return self._writer is not None and not self._writer.is_closing()

    async def insert(self, timeout: float = 5.0) -> None:
        """Connect to vpcd, retrying until it listens or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # One small frame per exchange: without NODELAY, Nagle plus delayed
            # ACKs add tens of milliseconds to every APDU.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._writer = writer
        self.inserted_at = time.monotonic()
        self.removed_at = None
        self.spec.card.reset()
        logger.debug("virtual card connected to vpcd %s:%d", self.host, self.port)
        self._task = asyncio.create_task(self._serve(reader, writer))

    async def remove(self) -> None:
        """Close the connection (card pulled out)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()

    async def wait_removed(self) -> None:
        """Until the connection ends (vpcd closed it, or a fault did)."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self.removed_at = time.monotonic()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        logger.debug("virtual card disconnected from vpcd")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = VpcdFramer()
        card = self.spec.card
        sock = writer.get_extra_info("socket")
        quickack = getattr(socket, "TCP_QUICKACK", 0) if sock is not None else 0
        apdus = 0
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                if quickack:
                    # vpcd writes the length and the APDU in two send() calls;
                    # with Nagle on its side, our delayed ACK would stall the
                    # second one ~40 ms per APDU. Linux resets QUICKACK, so renew it.
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
                if self.spec.mute == "all":
                    continue  # connected, never answering anything
                framer.receive_data(data)
                while (msg := framer.next_event()) is not None:
                    if self.spec.mute == "apdu" and msg.kind is Kind.APDU:
                        continue  # gave its ATR, then never answers a command
                    if msg.kind is Kind.POWER_ON:
                        card.power_on()
                    elif msg.kind is Kind.POWER_OFF:
                        card.power_off()
                    elif msg.kind is Kind.RESET:
                        card.reset()
                    elif msg.kind is Kind.GET_ATR:
                        writer.write(frame(card.atr))
                    else:
                        apdus += 1
                        if self.spec.pull_after is not None and apdus > self.spec.pull_after:
                            self.pulled.set()
                            return
                        writer.write(frame(card.process_apdu(msg.apdu)))
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            await self._close()
