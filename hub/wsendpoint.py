"""A WebSocket as a waiting-room :class:`~hub.waiting_room.Endpoint`: queued sends, one writer task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Final

from aiohttp import web

logger = logging.getLogger(__name__)

MAX_PENDING: Final = 256
"""Frames queued for a peer that does not read; past this it is closed (a slow reader cannot grow the hub)."""
CLOSE_SLOW: Final = 4009


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class WsEndpoint:
    """Sends never block the waiting room: they queue, and one task writes them in order."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._queue: asyncio.Queue[str | _Close] = asyncio.Queue()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._write())

    def send(self, text: str) -> None:
        """Queue one text frame."""
        if self._closing:
            return
        if self._queue.qsize() >= MAX_PENDING:
            self.close(CLOSE_SLOW, "peer does not read its messages")
            return
        self._queue.put_nowait(text)

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued."""
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(_Close(code, reason))

    async def finish(self) -> None:
        """Stop the writer (the connection is over)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, _Close):
                    await self.ws.close(code=item.code, message=item.reason.encode())
                    return
                await self.ws.send_str(item)
            except (ConnectionError, RuntimeError, UnicodeEncodeError) as exc:
                # The connection is unusable from here on: close it rather than leave a silent half.
                logger.warning("websocket write failed (%s); closing", type(exc).__name__)
                self._closing = True
                with contextlib.suppress(Exception):
                    await self.ws.close(code=1011, message=b"internal error")
                return
