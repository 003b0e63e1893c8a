"""Signalling messages between booths, the hub and doctors: schemas and strict validation.

JSON text over WebSocket, one object per message, at most
:data:`MAX_MESSAGE_BYTES`. Every message carries ``"v": 1`` and a ``type``;
which types are allowed depends on the direction (a booth cannot ``accept``,
a doctor cannot ``announce``). Validation is strict: unknown or missing
keys, a boolean where a number is expected, NaN, duplicate keys, oversized
strings and control characters are refused with a :class:`MessageError`,
never another exception. The end-to-end ``payload`` of ``signal`` messages is
validated for shape only: the hub relays it untouched.

The same schemas check what the hub sends (:func:`encode`), so a bug on our
side cannot put a malformed message on the wire either.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 64 * 1024
_ID = re.compile(r"^[0-9a-f]{32}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# Lone surrogates ("\ud800" escapes) are refused with the control characters:
# they decode from JSON but cannot be encoded again, so relaying one would
# break every later send on that connection.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class Direction(enum.Enum):
    """Who sends the message to whom."""

    BOOTH_TO_HUB = "booth-to-hub"
    HUB_TO_BOOTH = "hub-to-booth"
    DOCTOR_TO_HUB = "doctor-to-hub"
    HUB_TO_DOCTOR = "hub-to-doctor"


class MessageReason(enum.Enum):
    """Why a message was refused."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    VERSION = "version"
    UNKNOWN_TYPE = "unknown_type"
    FIELD = "field"


class MessageError(Exception):
    """A signalling message that does not follow its schema."""

    def __init__(self, reason: MessageReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Message:
    """A validated message: its type and its fields (without ``v`` and ``type``)."""

    type: str
    body: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.body[key]


# -- field specifications ------------------------------------------------------
@dataclass(frozen=True)
class Text:
    max_length: int
    multiline: bool = False
    """SDP and PEM carry line breaks; names and reasons never do."""


@dataclass(frozen=True)
class Integer:
    low: int
    high: int


@dataclass(frozen=True)
class Identifier:
    """A session or waiting-room entry id: 32 lower-case hex digits (uuid4().hex)."""


@dataclass(frozen=True)
class Digest:
    """A SHA-256 in 64 lower-case hex digits (an audit chain head)."""


@dataclass(frozen=True)
class Boolean:
    pass


@dataclass(frozen=True)
class Nullable:
    inner: Spec


@dataclass(frozen=True)
class Table:
    fields: Mapping[str, Spec]


@dataclass(frozen=True)
class ListOf:
    item: Spec
    max_items: int


@dataclass(frozen=True)
class Tagged:
    """A union chosen by a ``kind`` key."""

    kinds: Mapping[str, Mapping[str, Spec]]


Spec = Text | Integer | Identifier | Digest | Boolean | Nullable | Table | ListOf | Tagged

ID: Final = Identifier()
PEM: Final = Text(8192, multiline=True)
PAYLOAD: Final = Tagged(
    {
        "offer": {"sdp": Text(32768, multiline=True)},
        "answer": {"sdp": Text(32768, multiline=True)},
        "ice": {
            "candidate": Text(1024),
            "sdpMid": Nullable(Text(64)),
            "sdpMLineIndex": Nullable(Integer(0, 64)),
        },
        "identity": {"fingerprint": Text(200), "signature": Text(1024), "certificate": PEM},
        "bye": {},
    }
)
SIGNAL: Final[Mapping[str, Spec]] = {"session": ID, "payload": PAYLOAD}
ENDED: Final[Mapping[str, Spec]] = {"session": ID, "reason": Text(80)}
ERROR: Final[Mapping[str, Spec]] = {"code": Text(40), "message": Text(200)}
PATIENT: Final = Table({"first_name": Text(64), "age": Integer(0, 130), "reason": Text(120)})
"""All a booth ever tells the hub about a patient: what a doctor needs to choose."""
QUEUE_ENTRY: Final = Table(
    {
        "entry": ID,
        "first_name": Text(64),
        "age": Integer(0, 130),
        "reason": Text(120),
        "waiting_seconds": Integer(0, 7 * 24 * 3600),
        "booth": Text(64),
    }
)
MAX_POSITION: Final = 100_000
MAX_WAIT_SECONDS: Final = 7 * 24 * 3600
POSITION: Final[Mapping[str, Spec]] = {
    "position": Integer(1, MAX_POSITION),
    "estimate_seconds": Nullable(Integer(0, MAX_WAIT_SECONDS)),
}
"""A waiting booth's place (1 = next) and the hub's estimated wait, null when it has no honest one."""

SCHEMAS: Final[Mapping[Direction, Mapping[str, Mapping[str, Spec]]]] = {
    Direction.BOOTH_TO_HUB: {
        "announce": {"patient": PATIENT},
        "withdraw": {},
        "signal": SIGNAL,
        "heartbeat": {},
        # The booth's audit chain head (kiosk.audit), sent periodically: the hub keeps it as an anchor.
        "audit_head": {"seq": Integer(1, 2**53), "hash": Digest()},
    },
    Direction.HUB_TO_BOOTH: {
        "accepted": {"session": ID, "doctor": Table({"display_name": Text(80), "certificate": PEM})},
        "signal": SIGNAL,
        "ended": ENDED,
        "error": ERROR,
        "position": POSITION,
    },
    Direction.DOCTOR_TO_HUB: {
        "accept": {"entry": ID},
        "signal": SIGNAL,
        "end": {"session": ID},
    },
    Direction.HUB_TO_DOCTOR: {
        "queue": {"entries": ListOf(QUEUE_ENTRY, 500)},
        "taken": {"entry": ID, "by_me": Boolean()},
        "session": {"session": ID, "entry": ID, "booth": Text(64), "booth_certificate": PEM},
        "signal": SIGNAL,
        "ended": ENDED,
        "error": ERROR,
    },
}


# -- parsing -----------------------------------------------------------------------
def parse(raw: str | bytes, direction: Direction) -> Message:
    """Decode and validate one message travelling in ``direction``."""
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if size > MAX_MESSAGE_BYTES:
        raise MessageError(MessageReason.TOO_LARGE, f"message of {size} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        decoded = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise MessageError(MessageReason.NOT_JSON, "message is not UTF-8 JSON") from exc
    if not isinstance(decoded, dict):
        raise MessageError(MessageReason.NOT_OBJECT, "message is not a JSON object")
    return _validate(decoded, direction)


def encode(message: Message, direction: Direction) -> str:
    """The wire form of ``message``, checked against the same schema first."""
    document = {"v": VERSION, "type": message.type, **message.body}
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    parse(text, direction)
    return text


def make(type_: str, direction: Direction, **body: Any) -> Message:
    """Build a message, validated as if it had been received."""
    return parse(encode(Message(type_, body), direction), direction)


def _validate(document: dict[str, Any], direction: Direction) -> Message:
    version = document.get("v")
    if type(version) is not int or version != VERSION:
        raise MessageError(MessageReason.VERSION, f"unsupported version; this hub speaks v{VERSION}")
    type_ = document.get("type")
    if not isinstance(type_, str) or (schema := SCHEMAS[direction].get(type_)) is None:
        raise MessageError(MessageReason.UNKNOWN_TYPE, f"no message type {str(type_)[:40]!r} in {direction.value}")
    body = {key: value for key, value in document.items() if key not in ("v", "type")}
    _check_table(body, schema, type_)
    return Message(type_, body)


def _check_table(value: object, fields: Mapping[str, Spec], where: str) -> None:
    if not isinstance(value, dict):
        raise MessageError(MessageReason.FIELD, f"{where} must be an object")
    unknown = set(value) - set(fields)
    if unknown:
        raise MessageError(MessageReason.FIELD, f"{where} has unknown field(s) {', '.join(sorted(unknown))[:80]}")
    for name, spec in fields.items():
        if name not in value:
            raise MessageError(MessageReason.FIELD, f"{where} lacks {name!r}")
        _check(value[name], spec, f"{where}.{name}")


def _check(value: object, spec: Spec, where: str) -> None:
    if isinstance(spec, Nullable):
        if value is not None:
            _check(value, spec.inner, where)
    elif isinstance(spec, Text):
        if not isinstance(value, str) or len(value) > spec.max_length:
            raise MessageError(MessageReason.FIELD, f"{where} must be text of at most {spec.max_length} characters")
        if (_CONTROL if spec.multiline else _CONTROL_OR_NEWLINE).search(value):
            raise MessageError(MessageReason.FIELD, f"{where} holds control characters or lone surrogates")
    elif isinstance(spec, Integer):
        if type(value) is not int or not spec.low <= value <= spec.high:
            raise MessageError(MessageReason.FIELD, f"{where} must be an integer in {spec.low}..{spec.high}")
    elif isinstance(spec, Identifier):
        if not isinstance(value, str) or not _ID.match(value):
            raise MessageError(MessageReason.FIELD, f"{where} must be a 32-hex-digit identifier")
    elif isinstance(spec, Digest):
        if not isinstance(value, str) or not _DIGEST.fullmatch(value):
            raise MessageError(MessageReason.FIELD, f"{where} must be a 64-hex-digit SHA-256")
    elif isinstance(spec, Boolean):
        if not isinstance(value, bool):
            raise MessageError(MessageReason.FIELD, f"{where} must be true or false")
    elif isinstance(spec, Table):
        _check_table(value, spec.fields, where)
    elif isinstance(spec, ListOf):
        if not isinstance(value, list) or len(value) > spec.max_items:
            raise MessageError(MessageReason.FIELD, f"{where} must be a list of at most {spec.max_items} items")
        for index, item in enumerate(value):
            _check(item, spec.item, f"{where}[{index}]")
    else:
        kind = value.get("kind") if isinstance(value, dict) else None
        fields = spec.kinds.get(kind) if isinstance(kind, str) else None
        if fields is None:
            raise MessageError(MessageReason.FIELD, f"{where}.kind must be one of {', '.join(spec.kinds)}")
        assert isinstance(value, dict)
        _check_table({k: v for k, v in value.items() if k != "kind"}, fields, f"{where}({kind})")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")
