"""The booth listener: one WebSocket per booth over mutual TLS; the booth id is its certificate's CN.

The TLS handshake already refused clients without a fleet certificate
(:func:`hub.tls.booth_server_context`); here the certificate must also be a
booth's (:func:`hub.pki.booth_identity`), or the upgrade gets 403.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from aiohttp import web
from cryptography import x509

from hub import pki
from hub.messages import MAX_MESSAGE_BYTES, Direction
from hub.waiting_room import BoothLink, WaitingRoom, relay_frames
from hub.wsendpoint import WsEndpoint

logger = logging.getLogger(__name__)

FRAME_LIMIT: Final = 2 * MAX_MESSAGE_BYTES
"""Frames up to twice the message limit are read and answered with an ``error`` (too_large); bigger
ones make aiohttp close the connection (1009) without buffering them."""

ROOM: Final = web.AppKey("room", WaitingRoom)
FLEET_CA: Final = web.AppKey("fleet_ca", x509.Certificate)
HEARTBEAT: Final = web.AppKey("heartbeat", float)


async def booth_socket(request: web.Request) -> web.StreamResponse:
    """``GET /ws`` (and ``/``): the booth's signalling WebSocket."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise web.HTTPForbidden(text="a booth certificate is required")
    try:
        identity = pki.booth_identity(der, request.app[FLEET_CA])
    except pki.PkiError as exc:
        request.app[ROOM].audit("booth_refused", {"reason": "certificate"})
        raise web.HTTPForbidden(text=str(exc)) from exc
    ws = web.WebSocketResponse(max_msg_size=FRAME_LIMIT, heartbeat=request.app[HEARTBEAT], compress=False)
    await ws.prepare(request)
    room = request.app[ROOM]
    endpoint = WsEndpoint(ws)
    link = BoothLink(endpoint, booth=identity.booth_id, certificate=identity.certificate_pem)
    room.booth_joined(link, time.monotonic())
    try:
        await relay_frames(ws, room, link, Direction.BOOTH_TO_HUB, room.from_booth)
    finally:
        room.booth_left(link, time.monotonic())
        await endpoint.finish()
    return ws


def booth_app(room: WaitingRoom, fleet_ca: x509.Certificate, *, heartbeat: float) -> web.Application:
    """The aiohttp application served on the booth listener."""
    app = web.Application(client_max_size=4096)
    app[ROOM] = room
    app[FLEET_CA] = fleet_ca
    app[HEARTBEAT] = heartbeat
    app.router.add_get("/ws", booth_socket)
    app.router.add_get("/", booth_socket)
    return app
