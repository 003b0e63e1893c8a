"""Waiting room and signalling relay through a real hub: booths over mutual TLS, doctors over HTTPS.

Messages sent by the tests are written by hand from the wire contract (not
built with hub.messages); what the hub sends is checked against
hub.messages' schemas.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from hub.app import RunningHub
from hub.messages import MAX_MESSAGE_BYTES, Direction, parse
from tests.integration import test_hub as support
from tests.integration.test_hub import OTHER, OTHER_PASSWORD, TIMEOUT, DoctorClient, MakeHub, State

# The hub fixtures live with the other hub tests; pytest finds fixtures by module attribute.
template_state = support.template_state
state = support.state
make_hub = support.make_hub
doctors = support.doctors

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
PATIENT = {"first_name": "Lou", "age": 7, "reason": "fièvre depuis hier"}


def frame(type_: str, **body: Any) -> str:
    return json.dumps({"v": 1, "type": type_, **body})


async def receive(ws: aiohttp.ClientWebSocketResponse, direction: Direction) -> dict[str, Any]:
    """The next message; a waiting booth's ``position`` updates are skipped (test_waiting_position.py)."""
    while True:
        text = await ws.receive_str(timeout=TIMEOUT)
        parse(text, direction)  # what the hub sends follows the schema
        message: dict[str, Any] = json.loads(text)
        if direction is not Direction.HUB_TO_BOOTH or message["type"] != "position":
            return message


async def closing(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The next frame that is not a booth's ``position`` update."""
    while True:
        frame_ = await ws.receive(timeout=TIMEOUT)
        if frame_.type is not aiohttp.WSMsgType.TEXT or json.loads(frame_.data)["type"] != "position":
            return frame_


async def expect(ws: aiohttp.ClientWebSocketResponse, type_: str, direction: Direction) -> dict[str, Any]:
    """The next message of ``type_``; queue updates and taken notices on the way are skipped."""
    while True:
        message = await receive(ws, direction)
        if message["type"] == type_:
            return message
        assert message["type"] in ("queue", "taken"), message


async def silent(ws: aiohttp.ClientWebSocketResponse, direction: Direction, seconds: float = 0.3) -> None:
    """Nothing but queue refreshes (doctors) or position updates (booths) arrives for a while."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            text = await ws.receive_str(timeout=left)
        except TimeoutError:
            return
        assert json.loads(text)["type"] == ("queue" if direction is Direction.HUB_TO_DOCTOR else "position"), text


Booths = Callable[..., Any]


@pytest.fixture
async def booths(state: State) -> AsyncIterator[Callable[[RunningHub, str], Any]]:
    sessions: list[aiohttp.ClientSession] = []

    async def connect(hub: RunningHub, booth: str = "booth-0001") -> aiohttp.ClientWebSocketResponse:
        http = aiohttp.ClientSession()
        sessions.append(http)
        return await http.ws_connect(f"wss://127.0.0.1:{hub.booth_port}/ws", ssl=state.booth_context(booth))

    yield connect
    for http in sessions:
        await http.close()


async def two_doctors(hub: RunningHub, state: State, doctors: Callable[[RunningHub], DoctorClient]) -> tuple[Any, ...]:
    a, b = doctors(hub), doctors(hub)
    await a.login(state.username, state.password, state.secret)
    await b.login(OTHER, OTHER_PASSWORD, state.other_secret)
    _, chain_a = await a.certify()
    await b.certify()
    ws_a, ws_b = await a.ws(), await b.ws()
    for ws in (ws_a, ws_b):
        assert (await receive(ws, Direction.HUB_TO_DOCTOR))["entries"] == []
    return ws_a, ws_b, chain_a


async def announce(booth: aiohttp.ClientWebSocketResponse, *doctor_sockets: aiohttp.ClientWebSocketResponse) -> str:
    await booth.send_str(frame("announce", patient=PATIENT))
    entries = []
    for ws in doctor_sockets:
        queue = await expect(ws, "queue", Direction.HUB_TO_DOCTOR)
        while not queue["entries"]:  # older updates still in flight
            queue = await expect(ws, "queue", Direction.HUB_TO_DOCTOR)
        entries.append(queue["entries"])
    (entry,) = entries[0]
    assert all(seen == entries[0] for seen in entries)
    return str(entry["entry"])


async def test_waiting_room_accept_and_relay(
    make_hub: MakeHub,
    state: State,
    doctors: Callable[[RunningHub], DoctorClient],
    booths: Booths,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = await make_hub()
    ws_a, ws_b, chain_a = await two_doctors(hub, state, doctors)
    booth = await booths(hub)
    await booth.send_str(frame("announce", patient=PATIENT))
    for ws in (ws_a, ws_b):
        (entry,) = (await expect(ws, "queue", Direction.HUB_TO_DOCTOR))["entries"]
        assert {k: entry[k] for k in ("first_name", "age", "reason", "booth")} == {**PATIENT, "booth": "booth-0001"}
        assert 0 <= entry["waiting_seconds"] <= 2
    entry_id = entry["entry"]

    await ws_a.send_str(frame("accept", entry=entry_id))
    session = await expect(ws_a, "session", Direction.HUB_TO_DOCTOR)
    assert session["entry"] == entry_id and session["booth"] == "booth-0001"
    assert session["booth_certificate"] == state.paths.booth_cert("booth-0001").read_text()
    assert (await expect(ws_a, "taken", Direction.HUB_TO_DOCTOR)) == {
        "v": 1,
        "type": "taken",
        "entry": entry_id,
        "by_me": True,
    }
    assert (await expect(ws_b, "taken", Direction.HUB_TO_DOCTOR))["by_me"] is False
    assert (await expect(ws_b, "queue", Direction.HUB_TO_DOCTOR))["entries"] == []
    accepted = await receive(booth, Direction.HUB_TO_BOOTH)
    assert accepted["type"] == "accepted" and accepted["session"] == session["session"]
    assert accepted["doctor"] == {"display_name": "Dr Demo", "certificate": chain_a}
    leaf = x509.load_pem_x509_certificates(accepted["doctor"]["certificate"].encode())[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "doctor"
    sid = session["session"]

    # offer / answer / ice, both ways, relayed untouched.
    offer = {"kind": "offer", "sdp": SDP}
    await booth.send_str(frame("signal", session=sid, payload=offer))
    assert (await expect(ws_a, "signal", Direction.HUB_TO_DOCTOR))["payload"] == offer
    answer = {"kind": "answer", "sdp": SDP.replace("o=- 1", "o=- 9")}
    await ws_a.send_str(frame("signal", session=sid, payload=answer))
    assert (await receive(booth, Direction.HUB_TO_BOOTH))["payload"] == answer
    ice = {
        "kind": "ice",
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    await ws_a.send_str(frame("signal", session=sid, payload=ice))
    assert (await receive(booth, Direction.HUB_TO_BOOTH))["payload"] == ice
    ice_back = {**ice, "sdpMid": None, "sdpMLineIndex": None}
    await booth.send_str(frame("signal", session=sid, payload=ice_back))
    assert (await expect(ws_a, "signal", Direction.HUB_TO_DOCTOR))["payload"] == ice_back

    # Doctor B can neither signal nor end A's session; nothing reaches the booth.
    await ws_b.send_str(frame("signal", session=sid, payload={"kind": "bye"}))
    assert (await expect(ws_b, "error", Direction.HUB_TO_DOCTOR))["code"] == "not_your_session"
    await ws_b.send_str(frame("end", session=sid))
    assert (await expect(ws_b, "error", Direction.HUB_TO_DOCTOR))["code"] == "not_your_session"
    await silent(booth, Direction.HUB_TO_BOOTH)
    await silent(ws_a, Direction.HUB_TO_DOCTOR)

    # A ends: both sides hear it; the booth can announce again.
    await ws_a.send_str(frame("end", session=sid))
    assert (await receive(booth, Direction.HUB_TO_BOOTH)) == {
        "v": 1,
        "type": "ended",
        "session": sid,
        "reason": "doctor-ended",
    }
    assert (await expect(ws_a, "ended", Direction.HUB_TO_DOCTOR))["session"] == sid
    await booth.send_str(frame("signal", session=sid, payload=offer))
    assert (await receive(booth, Direction.HUB_TO_BOOTH))["code"] == "not_your_session"
    assert await announce(booth, ws_a, ws_b)
    # What the hub logged names booths, sessions and accounts, never the patient or a secret.
    for secret in ("Lou", "fièvre", state.password, state.secret):
        assert secret not in caplog.text


async def test_two_doctors_accepting_at_once_one_wins(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient], booths: Booths
) -> None:
    hub = await make_hub()
    ws_a, ws_b, _ = await two_doctors(hub, state, doctors)
    booth = await booths(hub)
    entry = await announce(booth, ws_a, ws_b)
    await asyncio.gather(ws_a.send_str(frame("accept", entry=entry)), ws_b.send_str(frame("accept", entry=entry)))
    outcomes = []
    for ws in (ws_a, ws_b):
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["type"] != "taken":
            seen.append(await receive(ws, Direction.HUB_TO_DOCTOR))
        types = [message["type"] for message in seen if message["type"] != "queue"]
        # The winner gets its session then taken(by_me); the loser only taken(by_me=false).
        outcomes.append((types, seen[-1]["by_me"]))
    assert sorted(outcomes) == [(["session", "taken"], True), (["taken"], False)]
    assert (await receive(booth, Direction.HUB_TO_BOOTH))["type"] == "accepted"
    await silent(booth, Direction.HUB_TO_BOOTH)
    assert len(hub.room.sessions) == 1


async def test_a_booth_cannot_act_as_another_booth(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient], booths: Booths
) -> None:
    hub = await make_hub()
    ws_a, ws_b, _ = await two_doctors(hub, state, doctors)
    booth1 = await booths(hub, "booth-0001")
    booth2 = await booths(hub, "booth-0002")
    entry = await announce(booth1, ws_a, ws_b)
    await ws_a.send_str(frame("accept", entry=entry))
    sid = (await expect(ws_a, "session", Direction.HUB_TO_DOCTOR))["session"]
    assert (await receive(booth1, Direction.HUB_TO_BOOTH))["type"] == "accepted"
    assert (await expect(ws_b, "taken", Direction.HUB_TO_DOCTOR))["by_me"] is False
    assert (await expect(ws_b, "queue", Direction.HUB_TO_DOCTOR))["entries"] == []
    await booth2.send_str(frame("signal", session=sid, payload={"kind": "offer", "sdp": SDP}))
    assert (await receive(booth2, Direction.HUB_TO_BOOTH))["code"] == "not_your_session"
    # booth-0002 announcing shows up under its own id, never booth-0001's.
    await booth2.send_str(frame("announce", patient=PATIENT))
    (entry2,) = (await expect(ws_b, "queue", Direction.HUB_TO_DOCTOR))["entries"]
    assert entry2["booth"] == "booth-0002"
    await ws_a.send_str(frame("accept", entry=entry2["entry"]))  # A is busy with booth-0001
    assert (await expect(ws_a, "error", Direction.HUB_TO_DOCTOR))["code"] == "busy"
    await silent(ws_a, Direction.HUB_TO_DOCTOR)  # no signal leaked from booth-0002


async def test_disconnects_end_the_consultation(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient], booths: Booths
) -> None:
    hub = await make_hub()
    ws_a, ws_b, _ = await two_doctors(hub, state, doctors)
    booth = await booths(hub)
    entry = await announce(booth, ws_a, ws_b)
    await ws_a.send_str(frame("accept", entry=entry))
    sid = (await expect(ws_a, "session", Direction.HUB_TO_DOCTOR))["session"]
    await receive(booth, Direction.HUB_TO_BOOTH)
    await booth.close()
    assert (await expect(ws_a, "ended", Direction.HUB_TO_DOCTOR))["reason"] == "booth-disconnected"
    # And the other way round.
    booth = await booths(hub)
    entry = await announce(booth, ws_a, ws_b)
    await ws_b.send_str(frame("accept", entry=entry))
    sid = (await expect(ws_b, "session", Direction.HUB_TO_DOCTOR))["session"]
    await receive(booth, Direction.HUB_TO_BOOTH)
    await ws_b.close()
    assert (await receive(booth, Direction.HUB_TO_BOOTH)) == {
        "v": 1,
        "type": "ended",
        "session": sid,
        "reason": "doctor-disconnected",
    }
    assert hub.room.sessions == {}


async def test_withdraw_and_doctor_without_identity_key(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient], booths: Booths
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    ws = await doctor.ws()
    await receive(ws, Direction.HUB_TO_DOCTOR)
    booth = await booths(hub)
    entry = await announce(booth, ws)
    await ws.send_str(frame("accept", entry=entry))
    assert (await expect(ws, "error", Direction.HUB_TO_DOCTOR))["code"] == "no_identity"
    await booth.send_str(frame("withdraw"))
    assert (await expect(ws, "queue", Direction.HUB_TO_DOCTOR))["entries"] == []
    await doctor.certify()
    await ws.send_str(frame("accept", entry=entry))
    assert (await expect(ws, "taken", Direction.HUB_TO_DOCTOR)) == {
        "v": 1,
        "type": "taken",
        "entry": entry,
        "by_me": False,
    }


async def test_a_second_booth_connection_replaces_the_first(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient], booths: Booths
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    ws = await doctor.ws()
    await receive(ws, Direction.HUB_TO_DOCTOR)
    first = await booths(hub)
    await announce(first, ws)
    second = await booths(hub)
    closed = await closing(first)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert first.close_code == 4000
    assert (await expect(ws, "queue", Direction.HUB_TO_DOCTOR))["entries"] == []
    await announce(second, ws)


async def test_malformed_and_oversize_messages_get_errors(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient], booths: Booths
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    ws = await doctor.ws()
    await receive(ws, Direction.HUB_TO_DOCTOR)
    booth = await booths(hub)
    bad_booth = [
        "not json",
        "[1, 2]",
        '{"v": 2, "type": "heartbeat"}',
        '{"v": 1, "type": "accept", "entry": "' + "a" * 32 + '"}',  # a doctor's message from a booth
        frame("announce", patient={**PATIENT, "nir": "1 84 12 75 123 456 78"}),  # nothing else about the patient
        frame("announce", patient={**PATIENT, "age": 131}),
        frame("signal", session="x", payload={"kind": "bye"}),
        frame("signal", session="a" * 32, payload={"kind": "offer", "sdp": "v" * 40000}),
        frame("heartbeat", extra=1),
        '{"v": 1, "type": "heartbeat", "type": "withdraw"}',
        frame("announce", patient={**PATIENT, "first_name": "\ud800"}),  # a lone surrogate, as a JSON escape
        "x" * (MAX_MESSAGE_BYTES + 1),
    ]
    for text in bad_booth:
        await booth.send_str(text)
        error = await receive(booth, Direction.HUB_TO_BOOTH)
        assert error["type"] == "error", text[:80]
    await booth.send_bytes(b'{"v": 1, "type": "heartbeat"}')
    assert (await receive(booth, Direction.HUB_TO_BOOTH))["type"] == "error"
    for text in ("{}", frame("announce", patient=PATIENT), frame("accept", entry="A" * 32), "x" * 70_000):
        await ws.send_str(text)
        assert (await expect(ws, "error", Direction.HUB_TO_DOCTOR))["type"] == "error"
    # Both connections still work.
    await announce(booth, ws)
    # Beyond twice the limit the frame is not even buffered: aiohttp drops the connection (1009 or, as the
    # transport is cut, 1006 on our side); the hub lives on.
    await booth.send_str("x" * (2 * MAX_MESSAGE_BYTES + 1))
    closed = await closing(booth)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert booth.close_code in (1006, 1009)
    assert (await expect(ws, "queue", Direction.HUB_TO_DOCTOR))["entries"] == []
    assert await announce(await booths(hub), ws)


async def test_abusive_connection_is_closed(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient], booths: Booths
) -> None:
    hub = await make_hub(max_invalid_per_minute=3)
    booth = await booths(hub)
    for _ in range(4):
        await booth.send_str("nope")
    for _ in range(4):
        assert (await receive(booth, Direction.HUB_TO_BOOTH))["type"] == "error"
    closed = await closing(booth)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert booth.close_code == 4008
    again = await booths(hub)
    await again.send_str(frame("heartbeat"))
    await silent(again, Direction.HUB_TO_BOOTH, 0.1)
