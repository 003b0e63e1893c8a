"""Signalling message schemas (hub/messages.py)."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.messages import MAX_MESSAGE_BYTES, Direction, Message, MessageError, MessageReason, encode, make, parse

SESSION = uuid.UUID(int=1).hex
ENTRY = uuid.UUID(int=0xABCDEF).hex
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"

VALID: list[tuple[Direction, str, dict[str, object]]] = [
    (Direction.BOOTH_TO_HUB, "announce", {"patient": {"first_name": "Lou", "age": 7, "reason": "fever"}}),
    (Direction.BOOTH_TO_HUB, "withdraw", {}),
    (Direction.BOOTH_TO_HUB, "heartbeat", {}),
    (Direction.BOOTH_TO_HUB, "signal", {"session": SESSION, "payload": {"kind": "offer", "sdp": SDP}}),
    (Direction.DOCTOR_TO_HUB, "signal", {"session": SESSION, "payload": {"kind": "answer", "sdp": SDP}}),
    (
        Direction.DOCTOR_TO_HUB,
        "signal",
        {
            "session": SESSION,
            "payload": {
                "kind": "ice",
                "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
            },
        },
    ),
    (
        Direction.DOCTOR_TO_HUB,
        "signal",
        {"session": SESSION, "payload": {"kind": "ice", "candidate": "", "sdpMid": None, "sdpMLineIndex": None}},
    ),
    (
        Direction.HUB_TO_BOOTH,
        "signal",
        {
            "session": SESSION,
            "payload": {"kind": "identity", "fingerprint": "sha-256 AB", "signature": "c2ln", "certificate": PEM},
        },
    ),
    (Direction.HUB_TO_DOCTOR, "signal", {"session": SESSION, "payload": {"kind": "bye"}}),
    (Direction.DOCTOR_TO_HUB, "accept", {"entry": ENTRY}),
    (Direction.DOCTOR_TO_HUB, "end", {"session": SESSION}),
    (
        Direction.HUB_TO_BOOTH,
        "accepted",
        {"session": SESSION, "doctor": {"display_name": "Dr Demo", "certificate": PEM}},
    ),
    (Direction.HUB_TO_BOOTH, "ended", {"session": SESSION, "reason": "doctor left"}),
    (Direction.HUB_TO_BOOTH, "error", {"code": "invalid", "message": "message refused"}),
    (Direction.HUB_TO_BOOTH, "position", {"position": 1, "estimate_seconds": None}),
    (Direction.HUB_TO_BOOTH, "position", {"position": 12, "estimate_seconds": 840}),
    (
        Direction.HUB_TO_DOCTOR,
        "queue",
        {
            "entries": [
                {
                    "entry": ENTRY,
                    "first_name": "Lou",
                    "age": 7,
                    "reason": "fever",
                    "waiting_seconds": 42,
                    "booth": "booth-0001",
                }
            ]
        },
    ),
    (Direction.HUB_TO_DOCTOR, "taken", {"entry": ENTRY, "by_me": False}),
    (
        Direction.HUB_TO_DOCTOR,
        "session",
        {"session": SESSION, "entry": ENTRY, "booth": "booth-0001", "booth_certificate": PEM},
    ),
    (Direction.HUB_TO_DOCTOR, "ended", {"session": SESSION, "reason": "booth left"}),
]


@pytest.mark.parametrize(("direction", "type_", "body"), VALID)
def test_every_message_round_trips(direction: Direction, type_: str, body: dict[str, object]) -> None:
    message = make(type_, direction, **body)
    assert message == Message(type_, body)
    assert parse(encode(message, direction), direction) == message
    assert parse(encode(message, direction).encode(), direction) == message


def raw(**document: object) -> str:
    return json.dumps({"v": 1, **document})


@pytest.mark.parametrize(
    ("text", "direction", "reason"),
    [
        ("x" * (MAX_MESSAGE_BYTES + 1), Direction.BOOTH_TO_HUB, MessageReason.TOO_LARGE),
        (b"\xff\xfe{}", Direction.BOOTH_TO_HUB, MessageReason.NOT_JSON),
        ("{", Direction.BOOTH_TO_HUB, MessageReason.NOT_JSON),
        ('{"v": 1, "type": "withdraw", "v": 1}', Direction.BOOTH_TO_HUB, MessageReason.NOT_JSON),
        ('{"v": NaN, "type": "withdraw"}', Direction.BOOTH_TO_HUB, MessageReason.NOT_JSON),
        ("[" * 40000 + "]" * 20000, Direction.BOOTH_TO_HUB, MessageReason.NOT_JSON),
        ("[1]", Direction.BOOTH_TO_HUB, MessageReason.NOT_OBJECT),
        ('{"v": 2, "type": "withdraw"}', Direction.BOOTH_TO_HUB, MessageReason.VERSION),
        ('{"v": true, "type": "withdraw"}', Direction.BOOTH_TO_HUB, MessageReason.VERSION),
        ('{"v": 1, "type": "accept", "entry": "' + ENTRY + '"}', Direction.BOOTH_TO_HUB, MessageReason.UNKNOWN_TYPE),
        ('{"v": 1, "type": "announce"}', Direction.DOCTOR_TO_HUB, MessageReason.UNKNOWN_TYPE),
        (raw(type="withdraw", extra=1), Direction.BOOTH_TO_HUB, MessageReason.FIELD),
        (raw(type="accept"), Direction.DOCTOR_TO_HUB, MessageReason.FIELD),
        (raw(type="accept", entry="../../etc"), Direction.DOCTOR_TO_HUB, MessageReason.FIELD),
        (raw(type="accept", entry=ENTRY.upper()), Direction.DOCTOR_TO_HUB, MessageReason.FIELD),
        (
            raw(type="announce", patient={"first_name": "Lou", "age": True, "reason": "x"}),
            Direction.BOOTH_TO_HUB,
            MessageReason.FIELD,
        ),
        (
            raw(type="announce", patient={"first_name": "Lou", "age": 7.0, "reason": "x"}),
            Direction.BOOTH_TO_HUB,
            MessageReason.FIELD,
        ),
        (
            raw(type="announce", patient={"first_name": "Lou", "age": 7, "reason": "x", "nir": "1"}),
            Direction.BOOTH_TO_HUB,
            MessageReason.FIELD,
        ),
        (
            raw(type="announce", patient={"first_name": "Lou\nX", "age": 7, "reason": "x"}),
            Direction.BOOTH_TO_HUB,
            MessageReason.FIELD,
        ),
        (raw(type="signal", session=SESSION, payload={"kind": "telnet"}), Direction.BOOTH_TO_HUB, MessageReason.FIELD),
        (
            raw(type="signal", session=SESSION, payload={"kind": "offer", "sdp": "x" * 40000}),
            Direction.BOOTH_TO_HUB,
            MessageReason.FIELD,
        ),
        (
            '{"v": 1, "type": "announce", "patient": {"first_name": "\\ud800", "age": 7, "reason": "x"}}',
            Direction.BOOTH_TO_HUB,
            MessageReason.FIELD,
        ),
        (
            raw(type="signal", session=SESSION, payload={"kind": "offer", "sdp": "v=0\x00"}),
            Direction.BOOTH_TO_HUB,
            MessageReason.FIELD,
        ),
        (raw(type="position", position=0, estimate_seconds=None), Direction.HUB_TO_BOOTH, MessageReason.FIELD),
        (raw(type="position", position=True, estimate_seconds=None), Direction.HUB_TO_BOOTH, MessageReason.FIELD),
        (raw(type="position", position=1, estimate_seconds=-1), Direction.HUB_TO_BOOTH, MessageReason.FIELD),
        (raw(type="position", position=1, estimate_seconds=60.5), Direction.HUB_TO_BOOTH, MessageReason.FIELD),
        (raw(type="position", position=1), Direction.HUB_TO_BOOTH, MessageReason.FIELD),
        (raw(type="position", position=1, estimate_seconds=None, of=3), Direction.HUB_TO_BOOTH, MessageReason.FIELD),
        (raw(type="position", position=1, estimate_seconds=None), Direction.HUB_TO_DOCTOR, MessageReason.UNKNOWN_TYPE),
        (raw(type="position", position=1, estimate_seconds=None), Direction.BOOTH_TO_HUB, MessageReason.UNKNOWN_TYPE),
    ],
)
def test_invalid_messages_are_typed_errors(text: str | bytes, direction: Direction, reason: MessageReason) -> None:
    with pytest.raises(MessageError) as caught:
        parse(text, direction)
    assert caught.value.reason is reason


def test_the_hub_cannot_send_an_invalid_message() -> None:
    with pytest.raises(MessageError):
        encode(Message("taken", {"entry": ENTRY, "by_me": "yes"}), Direction.HUB_TO_DOCTOR)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@given(
    st.sampled_from(list(Direction)),
    st.dictionaries(st.sampled_from(["v", "type", "session", "payload", "entry", "patient", "kind"]), json_values),
)
def test_random_documents_raise_only_message_errors(direction: Direction, document: dict[str, object]) -> None:
    try:
        message = parse(json.dumps(document), direction)
    except MessageError:
        return
    assert parse(encode(message, direction), direction) == message


@given(st.sampled_from(list(Direction)), st.binary(max_size=300))
def test_random_bytes_raise_only_message_errors(direction: Direction, data: bytes) -> None:
    with contextlib.suppress(MessageError):
        parse(data, direction)
