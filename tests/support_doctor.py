"""A scripted doctor in Python: logs in to a real hub, accepts, answers with aiortc, drives the data channel.

It follows the same contract as the browser console (hub/static/): it checks
the booth's identity binding before answering, signs its own fingerprint with
a per-login key the hub certified, and speaks data-channel protocol v1
through :class:`~kiosk.session.datachannel.DataChannelProtocol`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hub.accounts import totp_now
from kiosk.session import datachannel as dc
from kiosk.session.binding import (
    FleetTrust,
    Sas,
    fingerprint_of_sdp,
    short_authentication_string,
    sign_fingerprint,
    verify_binding,
)
from kiosk.session.peer import only_sha256_fingerprints

TIMEOUT = 20.0


@dataclass
class CommandLog:
    """Everything the booth sent about one command."""

    ack: dc.Ack | None = None
    progress: list[float] = field(default_factory=list)
    result: dc.Result | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    acked: asyncio.Event = field(default_factory=asyncio.Event)


class ScriptedDoctor:
    """One doctor login, one WebSocket, one call at a time."""

    def __init__(self, origin: str, ssl_context: ssl.SSLContext, trust: FleetTrust) -> None:
        self.origin = origin
        self.trust = trust
        self.http = aiohttp.ClientSession(
            origin, connector=aiohttp.TCPConnector(ssl=ssl_context), cookie_jar=aiohttp.CookieJar(unsafe=True)
        )
        self.csrf = ""
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.chain = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.queue: list[dict[str, Any]] = []
        self.queue_changed = asyncio.Event()
        self.session = ""
        self.booth = ""
        self.pc: RTCPeerConnection | None = None
        self.certificate: Any = None
        self.channel: RTCDataChannel | None = None
        self.channel_open = asyncio.Event()
        self.protocol = dc.DataChannelProtocol("doctor")
        self.commands: dict[int, CommandLog] = {}
        self._command_names: dict[int, str] = {}
        self._booth_fingerprint = ""
        self.readings: list[dc.OximeterReading] = []
        self.statuses: dict[str, str] = {}
        self.chats: list[str] = []
        self.files: dict[str, dc.FileReceived] = {}
        self.file_acks: dict[str, dc.FileAck] = {}
        self.stops = 0
        self.sas: Sas | None = None
        self.booth_binding_error: str | None = None
        self.ended: asyncio.Event = asyncio.Event()
        self.connected = asyncio.Event()
        self.first_frame_at: float | None = None
        self.on_channel_event: Callable[[object], None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- hub ----------------------------------------------------------------------------------
    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        headers = {"Origin": self.origin, "X-CSRF-Token": self.csrf}
        async with self.http.post(path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def login(self, username: str, password: str, totp_secret: str) -> None:
        status, body = await self.post("/api/login", {"username": username, "password": password})
        assert status == 200, body
        self.csrf = body["csrf"]
        status, body = await self.post("/api/login/totp", {"code": totp_now(totp_secret, time.time())})
        assert status == 200, body
        self.csrf = body["csrf"]
        spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        status, body = await self.post("/api/identity-key", {"spki": base64.b64encode(spki).decode()})
        assert status == 200, body
        self.chain = body["chain"]
        self.ws = await self.http.ws_connect("/api/ws", origin=self.origin)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            if message["type"] == "queue":
                self.queue = message["entries"]
                self.queue_changed.set()
            elif message["type"] == "signal":
                self._spawn(self._on_signal(message["payload"]))
            elif message["type"] == "ended":
                self.ended.set()
            else:
                self.inbox.put_nowait(message)

    async def send(self, type_: str, **body: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"v": 1, "type": type_, **body}))

    async def wait_entry(self, booth: str) -> str:
        async with asyncio.timeout(TIMEOUT):
            while True:
                for entry in self.queue:
                    if entry["booth"] == booth:
                        return str(entry["entry"])
                self.queue_changed.clear()
                await self.queue_changed.wait()

    async def accept(self, entry: str) -> None:
        self.ended.clear()
        self.connected.clear()
        await self.send("accept", entry=entry)
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.inbox.get()
                if message["type"] == "session":
                    self.session = message["session"]
                    self.booth = message["booth"]
                    return

    # -- signalling and media ------------------------------------------------------------------------
    async def _on_signal(self, payload: dict[str, Any]) -> None:
        kind = payload["kind"]
        if kind == "identity":
            try:
                peer = verify_binding(
                    payload["fingerprint"],
                    payload["signature"],
                    payload["certificate"],
                    role="booth",
                    session=self.session,
                    trust=self.trust,
                    now=datetime.datetime.now(datetime.UTC),
                )
                assert peer.name == self.booth, "binding of another booth"
                self._booth_fingerprint = peer.fingerprint
            except Exception as exc:
                self.booth_binding_error = str(exc)
        elif kind == "offer":
            await self._answer(payload["sdp"])
        elif kind == "bye":
            self.ended.set()

    async def _answer(self, offer: str) -> None:
        if self.booth_binding_error is not None or fingerprint_of_sdp(offer) != self._booth_fingerprint:
            self.booth_binding_error = self.booth_binding_error or "offer fingerprint differs from the signed one"
            await self.send("signal", session=self.session, payload={"kind": "bye"})
            return
        if self.pc is not None:
            await self.pc.close()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        if self.certificate is not None:
            pc._RTCPeerConnection__certificates = [self.certificate]  # type: ignore[attr-defined]
        else:
            self.certificate = pc._RTCPeerConnection__certificates[0]  # type: ignore[attr-defined]
        self.pc = pc
        self.channel_open.clear()

        @pc.on("datachannel")
        def _on_datachannel(channel: RTCDataChannel) -> None:
            self.channel = channel
            self.channel_open.set()
            channel.on("message", self._on_channel_message)

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc.connectionState == "connected":
                self.connected.set()

        @pc.on("track")
        def _on_track(track: Any) -> None:
            if track.kind == "video":
                self._spawn(self._first_frame(track))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = only_sha256_fingerprints(pc.localDescription.sdp)
        fingerprint = fingerprint_of_sdp(answer)
        if self.sas is None:
            signature = sign_fingerprint(fingerprint, self.key, role="doctor", session=self.session)
            identity = {"kind": "identity", "fingerprint": fingerprint, "signature": signature}
            identity["certificate"] = self.chain
            await self.send("signal", session=self.session, payload=identity)
            self.sas = short_authentication_string(self._booth_fingerprint, fingerprint, self.session)
        await self.send("signal", session=self.session, payload={"kind": "answer", "sdp": answer})

    async def _first_frame(self, track: Any) -> None:
        with contextlib.suppress(Exception):
            await track.recv()
            if self.first_frame_at is None:
                self.first_frame_at = time.monotonic()

    def _on_channel_message(self, raw: str | bytes) -> None:
        try:
            events = self.protocol.receive_message(raw)
        except dc.DataChannelError as exc:
            raise AssertionError(f"the booth sent an invalid message: {exc}") from exc
        for event in events:
            if self.on_channel_event is not None:
                self.on_channel_event(event)
            if isinstance(event, dc.Ack):
                log = self.commands[event.ref]
                log.ack = event
                log.acked.set()
                if not event.ok or dc.COMMANDS[self._command_names[event.ref]] is None:
                    log.done.set()
            elif isinstance(event, dc.Progress):
                self.commands[event.ref].progress.append(event.cuff_pressure)
            elif isinstance(event, dc.Result):
                self.commands[event.ref].result = event
                self.commands[event.ref].done.set()
            elif isinstance(event, dc.OximeterReading):
                self.readings.append(event)
            elif isinstance(event, dc.Status):
                self.statuses[event.device] = event.state
            elif isinstance(event, dc.Chat):
                self.chats.append(event.text)
            elif isinstance(event, dc.FileReceived):
                self.files[event.transfer] = event
                self._send_channel(self.protocol.send_file_ack(event.transfer, True))
            elif isinstance(event, dc.FileAck):
                self.file_acks[event.transfer] = event
            elif isinstance(event, dc.Stop):
                self.stops += 1
                for log in self.commands.values():
                    if log.ack is not None and log.ack.ok:
                        log.done.set()

    def _send_channel(self, text: str) -> None:
        assert self.channel is not None
        self.channel.send(text)

    def command(self, name: str, *, camera: str | None = None) -> int:
        text = self.protocol.send_command(name, camera=camera)
        ref = json.loads(text)["id"]
        self._command_names[ref] = name
        self.commands[ref] = CommandLog()
        self._send_channel(text)
        return int(ref)

    async def run_command(self, name: str, *, camera: str | None = None, timeout: float = TIMEOUT) -> CommandLog:
        ref = self.command(name, camera=camera)
        async with asyncio.timeout(timeout):
            await self.commands[ref].done.wait()
        return self.commands[ref]

    def chat(self, text: str) -> None:
        self._send_channel(self.protocol.send_chat(text))

    def send_file(self, data: bytes, name: str, mime: str, transfer: str) -> None:
        for text in self.protocol.send_file(dc.FileSender(data, name=name, mime=mime, transfer=transfer)):
            self._send_channel(text)

    async def wait_connected(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            await self.connected.wait()
            await self.channel_open.wait()

    async def hang_up(self) -> None:
        await self.send("signal", session=self.session, payload={"kind": "bye"})
        await self.send("end", session=self.session)
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        self.sas = None
        self.certificate = None

    def transport_profile(self) -> str | None:
        from kiosk.session.peer import selected_srtp_profile

        assert self.pc is not None
        assert self.pc.sctp is not None
        return selected_srtp_profile(self.pc.sctp.transport)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()
