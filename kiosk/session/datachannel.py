"""The ``consult`` data-channel protocol between the booth and the doctor's console (sans-IO).

One JSON object per data-channel message, UTF-8, at most :data:`MAX_MESSAGE_BYTES`:
``{"v": 1, "type": ..., "id": n, ...}``. ``id`` numbers each sender's messages
(0 .. 2**53-1, so a browser holds it exactly); replies point back with ``ref``.

Rules this module keeps, at both ends (the browser console mirrors them):

* Validation is strict: unknown or missing keys, a boolean where a number is
  expected, NaN/Infinity, duplicate keys, oversized text, control characters
  and lone surrogates are refused with :class:`DataChannelError`, never
  another exception, and never a change of state: the next valid message
  works as if the bad one had not come.
* Roles (:data:`SENDERS`): only the doctor sends ``command``; only the booth
  sends ``ack``, ``progress``, ``result``, ``status``, ``reading`` and
  ``stop``; chat and files go both ways.
* Commands: the booth answers every command with one ``ack``, in order.
  A refused command (``ok`` false) ends there; so does an accepted command
  without a result (:data:`COMMANDS`). ``bp.start`` may send ``progress``
  (cuff pressure); commands with a result end with exactly one ``result``
  holding ``readings``, a ``still`` (the image itself follows as a file
  transfer) or an ``error`` (aborted, device failure).
* ``stop`` is the booth's STOP button and always wins: it ends every accepted
  command still running on both ends. Commands the booth has not acked yet
  stay open (they crossed the stop on the wire): the booth still acks them,
  and its session layer decides whether to refuse them.
* Files: ``file-offer`` (name, MIME type, size, SHA-256), then ``file-chunk``
  messages with consecutive indexes from 0 (at most :data:`MAX_CHUNK_BYTES`
  each, base64), then ``file-done``; the receiver checks the size and the
  digest and answers ``file-ack``. A transfer that breaks a rule is discarded
  (its bytes overwritten) and reported as an error carrying its ``transfer``
  id, so the caller can answer ``file-ack`` with ``ok`` false. An early
  ``file-ack`` with ``ok`` false cancels a transfer on the sending side.

Error messages name fields, never their values: chat text, file names and
readings are patient data.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 256 * 1024
MAX_ID: Final = 2**53 - 1
"""Largest message id: the largest integer a JavaScript number holds exactly."""
MAX_CHAT_CHARS: Final = 2000
MAX_FILE_NAME_CHARS: Final = 128
MAX_FILE_BYTES: Final = 20 * 1024 * 1024
MAX_CHUNK_BYTES: Final = 64 * 1024
"""Largest decoded chunk; well under the 256 KiB message limit once base64 (4/3) and JSON are added."""
MAX_REASON_CHARS: Final = 200
MAX_INCOMING_TRANSFERS: Final = 2
"""Incoming files held in memory at once (2 x 20 MiB at most)."""
MAX_PENDING_COMMANDS: Final = 32
MAX_READINGS: Final = 16
MAX_PLETH_SAMPLES: Final = 256
MAX_CUFF_PRESSURE: Final = 400
"""mmHg; the NIBP modules of PROTOCOLS.md stop inflating near 300, the margin is deliberate."""

Role = Literal["booth", "doctor"]
ROLES: Final = ("booth", "doctor")
CAMERAS: Final = ("booth", "otoscope", "dermatoscope")

COMMANDS: Final[Mapping[str, Literal["readings", "still"] | None]] = {
    # command name -> what its result holds (None: the ack ends it)
    "oximeter.start": None,
    "oximeter.stop": None,
    "bp.start": "readings",
    "bp.abort": None,
    "thermometer.read": "readings",
    "camera.select": None,
    "camera.still": "still",
    "stethoscope.start": None,
    "stethoscope.stop": None,
}
PROGRESS_COMMANDS: Final = frozenset({"bp.start"})
"""Commands that report progress (the cuff pressure while a BP cycle runs)."""

_BOTH: Final = frozenset(ROLES)
_BOOTH: Final = frozenset({"booth"})
SENDERS: Final[Mapping[str, frozenset[str]]] = {
    "chat": _BOTH,
    "file-offer": _BOTH,
    "file-chunk": _BOTH,
    "file-done": _BOTH,
    "file-ack": _BOTH,
    "command": frozenset({"doctor"}),
    "ack": _BOOTH,
    "progress": _BOOTH,
    "result": _BOOTH,
    "status": _BOOTH,
    "reading": _BOOTH,
    "stop": _BOOTH,
}
"""Which role may send each message type."""

_TRANSFER = re.compile(r"[A-Za-z0-9-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
# Line breaks and tabs are fine in chat; other C0/C1 controls and lone
# surrogates (decodable from JSON escapes, not encodable again) never are.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_MAX_CHUNK_BASE64: Final = 4 * ((MAX_CHUNK_BYTES + 2) // 3)


class Reason(enum.Enum):
    """Why a data-channel message was refused."""

    TOO_LARGE = "too_large"
    """Over :data:`MAX_MESSAGE_BYTES`."""
    NOT_JSON = "not_json"
    """Not UTF-8 JSON (or NaN, Infinity, duplicate keys, absurd nesting)."""
    NOT_OBJECT = "not_object"
    """JSON, but not an object."""
    VERSION = "version"
    """Missing or unsupported ``v``."""
    UNKNOWN_TYPE = "unknown_type"
    """A ``type`` this version does not define."""
    FIELD = "field"
    """A missing, unknown, ill-typed or out-of-range field."""
    ROLE = "role"
    """A message this side's peer may not send (a command from the booth...)."""
    REFERENCE = "reference"
    """A ``ref`` or ``transfer`` that names nothing open, or an id already in use."""
    TRANSFER = "transfer"
    """A file transfer broke its rules (order, size, digest); its data was discarded."""
    BUSY = "busy"
    """Too many commands or incoming transfers open at once."""


class DataChannelError(Exception):
    """A data-channel message that breaks the protocol; the protocol state is unchanged by it."""

    def __init__(
        self, reason: Reason, message: str, *, message_id: int | None = None, transfer: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message_id = message_id
        """The offending message's ``id`` when it could be read (to answer a bad command with an ack)."""
        self.transfer = transfer
        """The file transfer concerned, if any (to answer with ``file-ack`` ``ok`` false)."""


# -- messages (the wire, validated) -------------------------------------------------
@dataclass(frozen=True)
class Chat:
    """A chat line."""

    id: int
    """The sender's message number."""
    text: str
    """1..2000 characters; line breaks allowed."""


@dataclass(frozen=True)
class FileOffer:
    """The start of a file transfer."""

    id: int
    """The sender's message number."""
    transfer: str
    """The transfer id chosen by the sender (1..64 of ``A-Z a-z 0-9 -``, e.g. a UUID)."""
    name: str
    """A bare file name (no path separator, no control character), 1..128 characters."""
    mime: str
    """The MIME type, ``type/subtype``, lower case."""
    size: int
    """The exact number of bytes that follow, at most :data:`MAX_FILE_BYTES`."""
    sha256: str
    """The SHA-256 of the whole file, 64 lower-case hex digits."""


@dataclass(frozen=True)
class FileChunk:
    """One piece of a file."""

    id: int
    """The sender's message number."""
    transfer: str
    """The transfer this chunk belongs to."""
    index: int
    """0 for the first chunk, then consecutive."""
    data: bytes = field(repr=False)
    """The decoded bytes, 1..:data:`MAX_CHUNK_BYTES` (base64 on the wire)."""


@dataclass(frozen=True)
class FileDone:
    """The sender has sent every chunk."""

    id: int
    """The sender's message number."""
    transfer: str
    """The transfer that is complete."""


@dataclass(frozen=True)
class FileAck:
    """The receiver's verdict on a transfer (``ok`` false may come early, to cancel it)."""

    id: int
    """The sender's message number."""
    transfer: str
    """The transfer concerned."""
    ok: bool
    """True once the file arrived whole with the announced digest."""
    reason: str | None = None
    """Why not, in plain words (at most 200 characters)."""


@dataclass(frozen=True)
class Command:
    """A peripheral command from the doctor."""

    id: int
    """The doctor's message number; ack, progress and result refer to it."""
    command: str
    """One of :data:`COMMANDS`."""
    camera: str | None = None
    """For ``camera.select`` only: one of :data:`CAMERAS`."""


@dataclass(frozen=True)
class Ack:
    """The booth's answer to a command: accepted or refused."""

    id: int
    """The booth's message number."""
    ref: int
    """The command's id."""
    ok: bool
    """Whether the booth runs the command."""
    reason: str | None = None
    """Why not, in plain words (at most 200 characters)."""


@dataclass(frozen=True)
class Progress:
    """Progress of a running blood-pressure cycle."""

    id: int
    """The booth's message number."""
    ref: int
    """The ``bp.start`` command's id."""
    cuff_pressure: float
    """The cuff pressure now, mmHg (0..400)."""


@dataclass(frozen=True)
class Measurement:
    """One value of a result, e.g. ``systolic`` 121 ``mmHg``."""

    kind: str
    """What was measured (``[a-z0-9_.-]``, starting with a letter or digit, at most 32)."""
    value: float | None
    """The value; None when the device marks it unavailable."""
    unit: str
    """Its unit as shown to the doctor (at most 16 characters)."""


@dataclass(frozen=True)
class Still:
    """A captured still image; the image itself comes as a file transfer."""

    transfer: str
    """The transfer that carries the image."""
    camera: str
    """Which camera took it: one of :data:`CAMERAS`."""


@dataclass(frozen=True)
class Result:
    """How a command with a result ended: exactly one of its three fields is set."""

    id: int
    """The booth's message number."""
    ref: int
    """The command's id."""
    readings: tuple[Measurement, ...] | None = None
    """The measured values (``bp.start``, ``thermometer.read``), 1..16 of them."""
    still: Still | None = None
    """The captured image (``camera.still``)."""
    error: str | None = None
    """Why the command produced nothing (aborted, stopped, device failure), at most 200 characters."""


@dataclass(frozen=True)
class Status:
    """A peripheral's state changed."""

    id: int
    """The booth's message number."""
    device: str
    """The peripheral (``oximeter``, ``nibp``...), ``[a-z0-9_.-]``, at most 32."""
    state: str
    """Its state (``connected``, ``measuring``, ``disconnected``...), same alphabet."""


@dataclass(frozen=True)
class OximeterReading:
    """One slice of the streamed pulse-oximeter signal (``type`` ``reading`` on the wire)."""

    id: int
    """The booth's message number."""
    spo2: int | None
    """Oxygen saturation, % (0..100); None while unavailable."""
    pulse: int | None
    """Pulse rate, beats per minute (0..300); None while unavailable."""
    pleth: tuple[int, ...]
    """Plethysmogram samples since the last reading (0..255 each, at most 256)."""


@dataclass(frozen=True)
class Stop:
    """The booth's STOP: every running command ends now."""

    id: int
    """The booth's message number."""
    by: Literal["booth"] = "booth"
    """Who stopped; only the booth can."""


Message = (
    Chat
    | FileOffer
    | FileChunk
    | FileDone
    | FileAck
    | Command
    | Ack
    | Progress
    | Result
    | Status
    | OximeterReading
    | Stop
)


# -- events the protocol adds to the messages ------------------------------------------
@dataclass(frozen=True)
class FileProgress:
    """A chunk of an incoming file arrived and was accepted."""

    transfer: str
    """The incoming transfer."""
    received: int
    """Bytes received so far."""
    size: int
    """Bytes announced."""


@dataclass(frozen=True)
class FileReceived:
    """An incoming file arrived whole, with the announced size and SHA-256."""

    transfer: str
    """The transfer id."""
    name: str
    """The sender's file name (a bare name, already checked)."""
    mime: str
    """The announced MIME type (not checked against the content)."""
    data: bytes = field(repr=False)
    """The file."""
    sha256: str
    """Its SHA-256, verified."""


Event = (
    Chat
    | FileOffer
    | FileProgress
    | FileReceived
    | FileAck
    | Command
    | Ack
    | Progress
    | Result
    | Status
    | OximeterReading
    | Stop
)


# -- parsing and encoding --------------------------------------------------------------
def parse_message(raw: str | bytes) -> Message:
    """Decode and validate one message (shape only: no role, no state)."""
    # A character is at least one byte: the cheap bound first, so a huge text is not encoded to be measured.
    size = (
        len(raw)
        if len(raw) > MAX_MESSAGE_BYTES or isinstance(raw, bytes)
        else len(raw.encode("utf-8", "surrogatepass"))
    )
    if size > MAX_MESSAGE_BYTES:
        raise DataChannelError(Reason.TOO_LARGE, f"message of {size} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        document = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise DataChannelError(Reason.NOT_JSON, "message is not UTF-8 JSON") from exc
    if not isinstance(document, dict):
        raise DataChannelError(Reason.NOT_OBJECT, "message is not a JSON object")
    version = document.get("v")
    if type(version) is not int or version != VERSION:
        raise DataChannelError(Reason.VERSION, f"unsupported version; this side speaks v{VERSION}")
    type_ = document.get("type")
    if not isinstance(type_, str) or (parser := _PARSERS.get(type_)) is None:
        raise DataChannelError(Reason.UNKNOWN_TYPE, "unknown message type")
    message_id = _int(document, "id", 0, MAX_ID, "id")
    body = _Body(document, type_)
    try:
        message = parser(body, message_id)
        body.check_all_read()
    except DataChannelError as exc:
        exc.message_id = message_id
        transfer = document.get("transfer")
        if exc.transfer is None and isinstance(transfer, str) and _TRANSFER.fullmatch(transfer):
            exc.transfer = transfer
        raise
    return message


def encode(message: Message) -> str:
    """The wire form of ``message``; ``parse_message(encode(m)) == m``."""
    document: dict[str, Any] = {"v": VERSION, "type": _TYPES[type(message)], "id": message.id}
    if isinstance(message, Chat):
        document["text"] = message.text
    elif isinstance(message, FileOffer):
        document |= {
            "transfer": message.transfer,
            "name": message.name,
            "mime": message.mime,
            "size": message.size,
            "sha256": message.sha256,
        }
    elif isinstance(message, FileChunk):
        document |= {
            "transfer": message.transfer,
            "index": message.index,
            "data": base64.b64encode(message.data).decode("ascii"),
        }
    elif isinstance(message, FileDone):
        document["transfer"] = message.transfer
    elif isinstance(message, FileAck):
        document |= {"transfer": message.transfer, "ok": message.ok}
        if message.reason is not None:
            document["reason"] = message.reason
    elif isinstance(message, Ack):
        document |= {"ref": message.ref, "ok": message.ok}
        if message.reason is not None:
            document["reason"] = message.reason
    elif isinstance(message, Command):
        document["command"] = message.command
        if message.camera is not None:
            document["camera"] = message.camera
    elif isinstance(message, Progress):
        document |= {"ref": message.ref, "cuff_pressure": message.cuff_pressure}
    elif isinstance(message, Result):
        document["ref"] = message.ref
        if message.readings is not None:
            document["readings"] = {m.kind: {"value": m.value, "unit": m.unit} for m in message.readings}
        if message.still is not None:
            document["still"] = {"transfer": message.still.transfer, "camera": message.still.camera}
        if message.error is not None:
            document["error"] = message.error
    elif isinstance(message, Status):
        document |= {"device": message.device, "state": message.state}
    elif isinstance(message, OximeterReading):
        document |= {"spo2": message.spo2, "pulse": message.pulse, "pleth": list(message.pleth)}
    else:
        document["by"] = message.by
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError) as exc:
        raise DataChannelError(Reason.FIELD, "message cannot be encoded as JSON") from exc


class _Body:
    """A decoded object whose keys are checked off as the parser reads them."""

    def __init__(self, document: dict[str, Any], where: str) -> None:
        self.document = document
        self.where = where
        self.read = {"v", "type", "id"}

    def get(self, key: str, *, optional: bool = False) -> Any:
        self.read.add(key)
        if key not in self.document:
            if optional:
                return None
            raise DataChannelError(Reason.FIELD, f"{self.where} lacks {key!r}")
        value = self.document[key]
        if optional and value is None:
            # An optional field is absent, never null: one wire form per message.
            raise DataChannelError(Reason.FIELD, f"{self.where}.{key} must be left out rather than null")
        return value

    def check_all_read(self) -> None:
        unknown = set(self.document) - self.read
        if unknown:
            raise DataChannelError(Reason.FIELD, f"{self.where} has unknown field(s) {', '.join(sorted(unknown))[:80]}")


def _text(
    value: object, where: str, max_chars: int, *, multiline: bool = False, pattern: re.Pattern[str] | None = None
) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        raise DataChannelError(Reason.FIELD, f"{where} must be text of 1..{max_chars} characters")
    if (_CONTROL if multiline else _CONTROL_OR_NEWLINE).search(value):
        raise DataChannelError(Reason.FIELD, f"{where} holds control characters or lone surrogates")
    if pattern is not None and not pattern.fullmatch(value):
        raise DataChannelError(Reason.FIELD, f"{where} is not in the expected form")
    return value


def _int(document: Mapping[str, Any], key: str, low: int, high: int, where: str) -> int:
    value = document.get(key)
    if type(value) is not int or not low <= value <= high:
        raise DataChannelError(Reason.FIELD, f"{where} must be an integer in {low}..{high}")
    return value


def _integer(value: object, where: str, low: int, high: int) -> int:
    return _int({"x": value}, "x", low, high, where)


def _number(value: object, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataChannelError(Reason.FIELD, f"{where} must be a number in {low}..{high}")
    if not low <= value <= high:
        raise DataChannelError(Reason.FIELD, f"{where} must be a number in {low}..{high}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise DataChannelError(Reason.FIELD, f"{where} must be true or false")
    return value


def _transfer(body: _Body) -> str:
    return _text(body.get("transfer"), f"{body.where}.transfer", 64, pattern=_TRANSFER)


def _reason(body: _Body, key: str = "reason") -> str | None:
    value = body.get(key, optional=True)
    return None if value is None else _text(value, f"{body.where}.{key}", MAX_REASON_CHARS)


def _object(value: object, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataChannelError(Reason.FIELD, f"{where} must be an object")
    if set(value) != keys:
        raise DataChannelError(Reason.FIELD, f"{where} must hold exactly {', '.join(sorted(keys))}")
    return value


def _parse_chat(body: _Body, id_: int) -> Chat:
    return Chat(id_, _text(body.get("text"), "chat.text", MAX_CHAT_CHARS, multiline=True))


def _parse_file_offer(body: _Body, id_: int) -> FileOffer:
    transfer = _transfer(body)
    name = _text(body.get("name"), "file-offer.name", MAX_FILE_NAME_CHARS)
    # A bare name, so no receiver can be tricked into writing outside its folder.
    if "/" in name or "\\" in name or name in (".", ".."):
        raise DataChannelError(Reason.FIELD, "file-offer.name must be a bare file name", transfer=transfer)
    mime = _text(body.get("mime"), "file-offer.mime", 129, pattern=_MIME)
    size = _integer(body.get("size"), "file-offer.size", 0, MAX_FILE_BYTES)
    sha256 = _text(body.get("sha256"), "file-offer.sha256", 64, pattern=_SHA256)
    return FileOffer(id_, transfer, name, mime, size, sha256)


def _parse_file_chunk(body: _Body, id_: int) -> FileChunk:
    transfer = _transfer(body)
    index = _integer(body.get("index"), "file-chunk.index", 0, MAX_FILE_BYTES)
    encoded = body.get("data")
    if not isinstance(encoded, str) or not 4 <= len(encoded) <= _MAX_CHUNK_BASE64:
        raise DataChannelError(Reason.FIELD, f"file-chunk.data must be base64 of 1..{MAX_CHUNK_BYTES} bytes")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataChannelError(Reason.FIELD, "file-chunk.data is not base64") from exc
    # One encoding per chunk (padding bits zero), so what is checked is what is relayed.
    if not data or base64.b64encode(data).decode("ascii") != encoded:
        raise DataChannelError(Reason.FIELD, "file-chunk.data is not canonical base64")
    return FileChunk(id_, transfer, index, data)


def _parse_file_done(body: _Body, id_: int) -> FileDone:
    return FileDone(id_, _transfer(body))


def _parse_file_ack(body: _Body, id_: int) -> FileAck:
    return FileAck(id_, _transfer(body), _bool(body.get("ok"), "file-ack.ok"), _reason(body))


def _parse_command(body: _Body, id_: int) -> Command:
    command = body.get("command")
    if not isinstance(command, str) or command not in COMMANDS:
        raise DataChannelError(Reason.FIELD, f"command.command must be one of {', '.join(COMMANDS)}")
    if command != "camera.select":
        return Command(id_, command)
    camera = body.get("camera")
    if not isinstance(camera, str) or camera not in CAMERAS:
        raise DataChannelError(Reason.FIELD, f"command.camera must be one of {', '.join(CAMERAS)}")
    return Command(id_, command, camera)


def _parse_ack(body: _Body, id_: int) -> Ack:
    ref = _integer(body.get("ref"), "ack.ref", 0, MAX_ID)
    return Ack(id_, ref, _bool(body.get("ok"), "ack.ok"), _reason(body))


def _parse_progress(body: _Body, id_: int) -> Progress:
    ref = _integer(body.get("ref"), "progress.ref", 0, MAX_ID)
    return Progress(id_, ref, _number(body.get("cuff_pressure"), "progress.cuff_pressure", 0, MAX_CUFF_PRESSURE))


def _parse_result(body: _Body, id_: int) -> Result:
    ref = _integer(body.get("ref"), "result.ref", 0, MAX_ID)
    raw_readings = body.get("readings", optional=True)
    raw_still = body.get("still", optional=True)
    error = _reason(body, "error")
    if sum(x is not None for x in (raw_readings, raw_still, error)) != 1:
        raise DataChannelError(Reason.FIELD, "result must hold exactly one of readings, still, error")
    readings = None
    if raw_readings is not None:
        if not isinstance(raw_readings, dict) or not 1 <= len(raw_readings) <= MAX_READINGS:
            raise DataChannelError(Reason.FIELD, f"result.readings must be an object of 1..{MAX_READINGS} values")
        measurements = []
        for kind, raw in raw_readings.items():
            where = "result.readings entry"
            _text(kind, f"{where} name", 32, pattern=_NAME)
            entry = _object(raw, where, {"value", "unit"})
            value = None if entry["value"] is None else _number(entry["value"], f"{where} value", -1e9, 1e9)
            measurements.append(Measurement(kind, value, _text(entry["unit"], f"{where} unit", 16)))
        readings = tuple(measurements)
    still = None
    if raw_still is not None:
        entry = _object(raw_still, "result.still", {"transfer", "camera"})
        camera = entry["camera"]
        if not isinstance(camera, str) or camera not in CAMERAS:
            raise DataChannelError(Reason.FIELD, f"result.still.camera must be one of {', '.join(CAMERAS)}")
        still = Still(_text(entry["transfer"], "result.still.transfer", 64, pattern=_TRANSFER), camera)
    return Result(id_, ref, readings, still, error)


def _parse_status(body: _Body, id_: int) -> Status:
    device = _text(body.get("device"), "status.device", 32, pattern=_NAME)
    return Status(id_, device, _text(body.get("state"), "status.state", 32, pattern=_NAME))


def _parse_reading(body: _Body, id_: int) -> OximeterReading:
    spo2, pulse, pleth = body.get("spo2"), body.get("pulse"), body.get("pleth")
    spo2 = None if spo2 is None else _integer(spo2, "reading.spo2", 0, 100)
    pulse = None if pulse is None else _integer(pulse, "reading.pulse", 0, 300)
    if not isinstance(pleth, list) or len(pleth) > MAX_PLETH_SAMPLES:
        raise DataChannelError(Reason.FIELD, f"reading.pleth must be a list of at most {MAX_PLETH_SAMPLES} samples")
    return OximeterReading(id_, spo2, pulse, tuple(_integer(s, "reading.pleth sample", 0, 255) for s in pleth))


def _parse_stop(body: _Body, id_: int) -> Stop:
    if body.get("by") != "booth":
        raise DataChannelError(Reason.FIELD, "stop.by must be booth")
    return Stop(id_)


_PARSERS: Final[Mapping[str, Callable[[_Body, int], Message]]] = {
    "chat": _parse_chat,
    "file-offer": _parse_file_offer,
    "file-chunk": _parse_file_chunk,
    "file-done": _parse_file_done,
    "file-ack": _parse_file_ack,
    "command": _parse_command,
    "ack": _parse_ack,
    "progress": _parse_progress,
    "result": _parse_result,
    "status": _parse_status,
    "reading": _parse_reading,
    "stop": _parse_stop,
}
_TYPES: Final[Mapping[type, str]] = {
    Chat: "chat",
    FileOffer: "file-offer",
    FileChunk: "file-chunk",
    FileDone: "file-done",
    FileAck: "file-ack",
    Command: "command",
    Ack: "ack",
    Progress: "progress",
    Result: "result",
    Status: "status",
    OximeterReading: "reading",
    Stop: "stop",
}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


# -- files ------------------------------------------------------------------------------
class FileReceiver:
    """Reassembles one incoming file: chunks in order, the declared size, the SHA-256 at the end.

    Any broken rule raises :class:`DataChannelError` (``TRANSFER``) and wipes
    what was received: a file that fails its checks is never handed out.
    """

    def __init__(self, offer: FileOffer) -> None:
        self.offer = offer
        self._buffer = bytearray()
        self._next_index = 0
        self.closed = False
        """True once the file was handed out or discarded."""

    @property
    def received(self) -> int:
        """Bytes accepted so far."""
        return len(self._buffer)

    def add(self, chunk: FileChunk) -> int:
        """Append ``chunk``; returns the bytes received so far."""
        if self.closed:
            raise self._error("the transfer is closed")
        if chunk.index != self._next_index:
            self.discard()
            raise self._error("a file chunk came out of order or twice")
        if not 1 <= len(chunk.data) <= MAX_CHUNK_BYTES or self.received + len(chunk.data) > self.offer.size:
            self.discard()
            raise self._error("the file is larger than announced")
        self._buffer += chunk.data
        self._next_index += 1
        return self.received

    def finish(self) -> bytes:
        """The whole file, once its size and SHA-256 match the offer."""
        if self.closed:
            raise self._error("the transfer is closed")
        if self.received != self.offer.size:
            self.discard()
            raise self._error("the file is shorter than announced")
        if hashlib.sha256(self._buffer).hexdigest() != self.offer.sha256:
            self.discard()
            raise self._error("the file does not match its SHA-256; it was discarded")
        data = bytes(self._buffer)
        self.discard()
        return data

    def discard(self) -> None:
        """Overwrite and drop what was received (it may be patient data)."""
        self._buffer[:] = bytes(len(self._buffer))
        self._buffer.clear()
        self.closed = True

    def _error(self, message: str) -> DataChannelError:
        return DataChannelError(Reason.TRANSFER, message, transfer=self.offer.transfer)


class FileSender:
    """Cuts a file into chunks; :meth:`DataChannelProtocol.send_file` turns them into messages."""

    def __init__(self, data: bytes, *, name: str, mime: str, transfer: str, chunk_size: int = MAX_CHUNK_BYTES) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_BYTES:
            raise DataChannelError(Reason.FIELD, f"chunk size must be 1..{MAX_CHUNK_BYTES}")
        if len(data) > MAX_FILE_BYTES:
            raise DataChannelError(Reason.FIELD, f"files are limited to {MAX_FILE_BYTES} bytes", transfer=transfer)
        self.data = data
        self.name = name
        self.mime = mime
        self.transfer = transfer
        self.chunk_size = chunk_size
        self.sha256 = hashlib.sha256(data).hexdigest()

    def chunks(self) -> Iterator[tuple[int, bytes]]:
        """``(index, bytes)`` pairs, in order."""
        for index, start in enumerate(range(0, len(self.data), self.chunk_size)):
            yield index, self.data[start : start + self.chunk_size]


# -- the protocol -----------------------------------------------------------------------
@dataclass
class _Open:
    command: str
    acked: bool = False


class DataChannelProtocol:
    """One end of the ``consult`` channel: validates what comes in, builds what goes out.

    ``receive_message`` returns the events a message yields or raises
    :class:`DataChannelError`; either way the next message is handled
    normally. The ``send_*`` builders return the text to send, after checking
    it against the same rules the peer will apply.
    """

    def __init__(self, role: Role) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        self.role: Role = role
        self.peer: Role = "doctor" if role == "booth" else "booth"
        self._next_id = 0
        self._commands: dict[int, _Open] = {}
        """Commands in flight, by id: sent by the doctor / received by the booth."""
        self._incoming: dict[str, FileReceiver] = {}
        self._outgoing: set[str] = set()
        """Transfers we offered and the peer has not acked yet."""

    @property
    def open_commands(self) -> Mapping[int, str]:
        """Commands not finished yet: id -> command name."""
        return {ref: entry.command for ref, entry in self._commands.items()}

    @property
    def incoming_transfers(self) -> tuple[str, ...]:
        """Incoming transfers in progress."""
        return tuple(self._incoming)

    # -- receiving ---------------------------------------------------------------------------
    def receive_message(self, raw: str | bytes) -> list[Event]:
        """Validate one message from the peer and apply it."""
        message = parse_message(raw)
        kind = _TYPES[type(message)]
        if self.peer not in SENDERS[kind]:
            raise DataChannelError(
                Reason.ROLE, f"the {self.peer} may not send {kind!r} messages", message_id=message.id
            )
        if isinstance(message, FileOffer | FileChunk | FileDone):
            return self._receive_file(message)
        if isinstance(message, FileAck):
            if message.transfer not in self._outgoing:
                raise DataChannelError(
                    Reason.REFERENCE, "file-ack for no file we are sending", transfer=message.transfer
                )
            self._outgoing.discard(message.transfer)
            return [message]
        if isinstance(message, Command):
            return self._receive_command(message)
        if isinstance(message, Ack | Progress | Result):
            self._follow_command(message)
            return [message]
        if isinstance(message, Stop):
            self._stop()
        return [message]

    def _receive_file(self, message: FileOffer | FileChunk | FileDone) -> list[Event]:
        if isinstance(message, FileOffer):
            if message.transfer in self._incoming:
                raise DataChannelError(Reason.REFERENCE, "a file transfer with this id is already open")
            if len(self._incoming) >= MAX_INCOMING_TRANSFERS:
                raise DataChannelError(Reason.BUSY, "too many incoming files at once", transfer=message.transfer)
            self._incoming[message.transfer] = FileReceiver(message)
            return [message]
        receiver = self._incoming.get(message.transfer)
        if receiver is None:
            raise DataChannelError(Reason.REFERENCE, "no such incoming file transfer", transfer=message.transfer)
        try:
            if isinstance(message, FileChunk):
                received = receiver.add(message)
                return [FileProgress(message.transfer, received, receiver.offer.size)]
            data = receiver.finish()
        except DataChannelError:
            del self._incoming[message.transfer]
            raise
        del self._incoming[message.transfer]
        offer = receiver.offer
        return [FileReceived(offer.transfer, offer.name, offer.mime, data, offer.sha256)]

    def _receive_command(self, message: Command) -> list[Event]:
        if message.id in self._commands:
            raise DataChannelError(Reason.REFERENCE, "a command with this id is still open", message_id=message.id)
        if len(self._commands) >= MAX_PENDING_COMMANDS:
            raise DataChannelError(Reason.BUSY, "too many commands open at once", message_id=message.id)
        self._commands[message.id] = _Open(message.command)
        return [message]

    def _follow_command(self, message: Ack | Progress | Result) -> None:
        """Check that ``message`` (from the booth, or built by it) fits the command it refers to, and apply it."""
        entry = self._commands.get(message.ref)
        if entry is None:
            raise DataChannelError(Reason.REFERENCE, "no open command has this id", message_id=message.id)
        result_kind = COMMANDS[entry.command]
        if isinstance(message, Ack):
            if entry.acked:
                raise DataChannelError(Reason.REFERENCE, "the command was already acknowledged", message_id=message.id)
            if not message.ok or result_kind is None:
                del self._commands[message.ref]
            else:
                entry.acked = True
            return
        if not entry.acked:
            raise DataChannelError(Reason.REFERENCE, "the command was not acknowledged yet", message_id=message.id)
        if isinstance(message, Progress):
            if entry.command not in PROGRESS_COMMANDS:
                raise DataChannelError(Reason.REFERENCE, f"{entry.command} reports no progress", message_id=message.id)
            return
        produced = "readings" if message.readings is not None else "still" if message.still is not None else None
        if message.error is None and produced != result_kind:
            raise DataChannelError(
                Reason.REFERENCE, f"{entry.command} does not produce this kind of result", message_id=message.id
            )
        del self._commands[message.ref]

    def _stop(self) -> None:
        # Commands the booth already acked end now; unacked ones crossed the
        # stop on the wire and still get their ack.
        for ref in [ref for ref, entry in self._commands.items() if entry.acked]:
            del self._commands[ref]

    # -- sending -----------------------------------------------------------------------------
    def send_chat(self, text: str) -> str:
        """A chat line."""
        return self._send(Chat(self._next_id, text))

    def send_command(self, command: str, *, camera: str | None = None) -> str:
        """A peripheral command (doctor only); its id is the ``ref`` of the answers."""
        message = Command(self._next_id, command, camera)
        if len(self._commands) >= MAX_PENDING_COMMANDS:
            raise DataChannelError(Reason.BUSY, "too many commands open at once")
        text = self._send(message, apply=False)
        self._commands[message.id] = _Open(command)
        return text

    def send_ack(self, ref: int, ok: bool, reason: str | None = None) -> str:
        """Accept or refuse the command ``ref`` (booth only)."""
        return self._send(Ack(self._next_id, ref, ok, reason))

    def send_progress(self, ref: int, cuff_pressure: float) -> str:
        """The cuff pressure during the BP cycle ``ref`` (booth only)."""
        return self._send(Progress(self._next_id, ref, cuff_pressure))

    def send_result(
        self,
        ref: int,
        *,
        readings: tuple[Measurement, ...] | None = None,
        still: Still | None = None,
        error: str | None = None,
    ) -> str:
        """How command ``ref`` ended: exactly one of ``readings``, ``still``, ``error`` (booth only)."""
        return self._send(Result(self._next_id, ref, readings, still, error))

    def send_status(self, device: str, state: str) -> str:
        """A peripheral's new state (booth only)."""
        return self._send(Status(self._next_id, device, state))

    def send_reading(self, spo2: int | None, pulse: int | None, pleth: tuple[int, ...] = ()) -> str:
        """A slice of the oximeter stream (booth only)."""
        return self._send(OximeterReading(self._next_id, spo2, pulse, tuple(pleth)))

    def send_stop(self) -> str:
        """The booth's STOP: running commands end on both sides (booth only)."""
        return self._send(Stop(self._next_id))

    def send_file(self, sender: FileSender) -> Iterator[str]:
        """The offer, the chunks and ``file-done`` of ``sender``, one message at a time.

        Stops early if the peer cancels with ``file-ack`` ``ok`` false while
        it runs (interleave it with :meth:`receive_message`).
        """
        if sender.transfer in self._outgoing:
            raise DataChannelError(Reason.REFERENCE, "a file transfer with this id is already open")
        offer = FileOffer(self._next_id, sender.transfer, sender.name, sender.mime, len(sender.data), sender.sha256)
        first = self._send(offer)  # validated now, so a bad name fails here rather than mid-iteration
        self._outgoing.add(sender.transfer)
        return self._file_messages(first, sender)

    def _file_messages(self, first: str, sender: FileSender) -> Iterator[str]:
        yield first
        for index, data in sender.chunks():
            if sender.transfer not in self._outgoing:
                return
            yield self._send(FileChunk(self._next_id, sender.transfer, index, data))
        if sender.transfer in self._outgoing:
            yield self._send(FileDone(self._next_id, sender.transfer))

    def send_file_ack(self, transfer: str, ok: bool, reason: str | None = None) -> str:
        """Our verdict on an incoming transfer; ``ok`` false on an open one cancels and discards it."""
        receiver = self._incoming.get(transfer)
        if receiver is not None and ok:
            raise DataChannelError(Reason.REFERENCE, "a transfer still open cannot be acked as received")
        text = self._send(FileAck(self._next_id, transfer, ok, reason))
        if receiver is not None:
            receiver.discard()
            del self._incoming[transfer]
        return text

    def _send(self, message: Message, *, apply: bool = True) -> str:
        kind = _TYPES[type(message)]
        if self.role not in SENDERS[kind]:
            raise DataChannelError(Reason.ROLE, f"the {self.role} may not send {kind!r} messages")
        text = encode(message)
        if parse_message(text) != message:
            # Only a value the wire cannot carry (a lone surrogate...) gets here.
            raise DataChannelError(Reason.FIELD, f"{kind} does not survive encoding")
        if apply and isinstance(message, Ack | Progress | Result):
            self._follow_command(message)
        elif apply and isinstance(message, Stop):
            self._stop()
        self._next_id += 1
        return text
