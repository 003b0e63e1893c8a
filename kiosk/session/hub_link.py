"""The booth's signalling connection to the hub: one WebSocket over mutual TLS, kept up.

The booth proves who it is with its fleet certificate in the TLS handshake
(the hub reads the booth id from it) and checks the hub's certificate against
the fleet CA, TLS 1.3 only. Messages both ways follow :mod:`hub.messages`
(the schemas are shared with the hub): what the hub sends is validated before
the session sees it, and a malformed frame is dropped with a warning, never
an exception in the session.

:class:`HubLink` reconnects by itself with capped, jittered backoff; the
session learns of each (re)connection through ``on_connected`` and re-announces
its waiting patient then. The hub ends a consultation whose booth connection
dropped, so a session in a call sees ``ended`` or a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from hub.messages import MAX_MESSAGE_BYTES, Direction, Message, MessageError, encode, parse
from hub.tls import client_context

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS: Final = 20.0
"""A ``heartbeat`` message this often keeps NATs and the hub's idle checks satisfied."""
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0
CONNECT_TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class HubEndpoint:
    """Where the hub's booth listener is and how the booth authenticates to it."""

    url: str
    """``wss://host:port/ws``."""
    fleet_ca: Path
    """PEM of the fleet root CA: the hub's certificate must chain to it."""
    certificate: Path
    """This booth's certificate (PEM)."""
    key: Path
    """This booth's private key (PEM, mode 0600)."""

    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.3 client context presenting the booth certificate and trusting only the fleet CA."""
        return client_context(self.fleet_ca, self.certificate, self.key)


MessageHandler = Callable[[Message], Awaitable[None]]


class HubLink:
    """A self-healing signalling connection; :meth:`send` while connected, handlers for the rest."""

    def __init__(
        self,
        endpoint: HubEndpoint,
        *,
        on_message: MessageHandler,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        on_disconnected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.connections = 0
        """Successful connections since :meth:`start` (1 + reconnections)."""
        self.dropped = 0
        """Frames from the hub that failed validation and were dropped."""

    @property
    def connected(self) -> bool:
        """Whether a WebSocket to the hub is open now."""
        return self._ws is not None and not self._ws.closed

    async def wait_connected(self, timeout: float) -> None:
        """Wait for the link to be up; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    def start(self) -> None:
        """Connect, and keep reconnecting until :meth:`close`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hub-link")

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def send(self, type_: str, **body: Any) -> bool:
        """Send one message (validated first); False when the link is down (the caller decides)."""
        text = encode(Message(type_, body), Direction.BOOTH_TO_HUB)
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_str(text)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            return False
        return True

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    await self._connect_once(http)
                    delay = BACKOFF_FIRST
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    logger.warning("hub link: cannot connect (%s)", exc.__class__.__name__)
                # Jitter spreads a fleet's reconnections after a hub restart.
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BACKOFF_MAX)

    async def _connect_once(self, http: aiohttp.ClientSession) -> None:
        ws = await http.ws_connect(
            self.endpoint.url,
            ssl=self.endpoint.ssl_context(),
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            max_msg_size=2 * MAX_MESSAGE_BYTES,
            heartbeat=HEARTBEAT_SECONDS * 1.5,
            autoping=True,
        )
        self._ws = ws
        self.connections += 1
        self._connected.set()
        logger.info("hub link: connected (%d)", self.connections)
        heartbeat = asyncio.create_task(self._heartbeat(), name="hub-heartbeat")
        try:
            if self._on_connected is not None:
                await self._on_connected()
            async for frame in ws:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    try:
                        message = parse(frame.data, Direction.HUB_TO_BOOTH)
                    except MessageError as exc:
                        self.dropped += 1
                        logger.warning("hub link: dropped a malformed message (%s)", exc.reason.value)
                        continue
                    await self._on_message(message)
                elif frame.type is aiohttp.WSMsgType.ERROR:
                    break
        finally:
            heartbeat.cancel()
            self._ws = None
            self._connected.clear()
            with contextlib.suppress(Exception):
                await ws.close()
            logger.info("hub link: disconnected (close code %s)", ws.close_code)
            if self._on_disconnected is not None:
                await self._on_disconnected()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await self.send("heartbeat")
