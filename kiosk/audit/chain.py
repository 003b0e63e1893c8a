"""The audit chain's entry format and its verifier, without I/O.

One entry per line, each line the canonical JSON (sorted keys, no spaces,
ASCII only) of::

    {"event": "consent_given", "fields": {...}, "hash": "<64 hex>", "prev": "<64 hex>",
     "seq": 7, "time": "2026-12-06T11:55:00.123456Z"}

``hash`` is the SHA-256 of the canonical JSON of the same object without
``hash`` (so ``prev``, the previous entry's hash, is covered: changing any
entry changes every later hash). The first entry has ``seq`` 1 and a
``prev`` of 64 zeros. Only the canonical form is accepted: a line that
re-serialises differently (spaces, key order, escapes) is refused, so a
line has exactly one byte form and the hash pins it.

What the file alone cannot show is the loss of whole trailing entries (or a
whole file replaced by a fresh, self-consistent chain): every prefix of a
chain is a valid chain. :func:`verify` therefore takes *anchors*, heads
(``seq``, ``hash``) seen elsewhere: the log's own head sidecar, and the heads
the booth sent the hub. The chain must reach each anchor's ``seq`` with that
very hash.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

GENESIS: Final = "0" * 64
"""The ``prev`` of the first entry."""
MAX_FIELDS: Final = 32
MAX_TEXT: Final = 256
MAX_LINE_BYTES: Final = 16 * 1024
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KEYS: Final = frozenset({"seq", "time", "event", "fields", "prev", "hash"})

FieldValue = str | int | float | bool | None


class ChainError(Exception):
    """Root of the audit package's errors."""


class FieldError(ChainError):
    """An entry that cannot be written: a bad event name or field (the caller's bug, never input)."""


class BreakReason(enum.Enum):
    """Why a chain does not verify."""

    BAD_LINE = "bad_line"
    """Not an entry: not JSON, wrong keys or types, or not in canonical form."""
    MODIFIED = "modified"
    """The entry's content does not match its own hash."""
    BROKEN_LINK = "broken_link"
    """The entry's ``prev`` is not the previous entry's hash: that one was rewritten, or this one is foreign."""
    REMOVED = "removed"
    """Sequence numbers skip: entries are missing."""
    REORDERED = "reordered"
    """A sequence number comes back or out of order: entries were moved or duplicated."""
    TRUNCATED = "truncated"
    """The last line is cut short, or the chain ends before an anchor's entry."""
    REPLACED = "replaced"
    """An anchor's entry has another hash: this is not the chain the anchor was taken from."""
    HEAD_MISSING = "head_missing"
    """The log's head sidecar is missing or unreadable, so truncation could go unseen."""


@dataclass(frozen=True)
class Head:
    """A chain's last entry, as an anchor: its sequence number and hash."""

    seq: int
    hash: str

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "hash": self.hash}


@dataclass(frozen=True)
class Entry:
    """One verified-format audit entry."""

    seq: int
    time: str
    event: str
    fields: Mapping[str, FieldValue]
    prev: str
    hash: str

    @property
    def head(self) -> Head:
        return Head(self.seq, self.hash)


@dataclass(frozen=True)
class Break:
    """Where and why a chain stops verifying."""

    reason: BreakReason
    line: int
    """1-based line of the file (0: the break is after the last line, e.g. a missing anchored entry)."""
    seq: int | None
    """The sequence number concerned, when known."""
    detail: str

    def describe(self) -> str:
        where = f"line {self.line}" if self.line else "end of file"
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"{self.reason.value} at {where}{seq}: {self.detail}"


@dataclass(frozen=True)
class Verdict:
    """The result of :func:`verify`."""

    entries: int
    """Entries that verified, in order, before any break."""
    head: Head | None
    """The last verified entry."""
    problem: Break | None

    @property
    def ok(self) -> bool:
        return self.problem is None


# -- writing --------------------------------------------------------------------------------------
def canonical(document: Mapping[str, object]) -> bytes:
    """The one byte form of a JSON object that is hashed and written."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def format_time(now: datetime.datetime) -> str:
    """UTC, microseconds, ``Z``: fixed width, so the canonical form has no choice left."""
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_fields(event: str, fields: Mapping[str, object]) -> dict[str, FieldValue]:
    """The fields as they will be written; :class:`FieldError` for anything but short JSON scalars."""
    if not _NAME.fullmatch(event):
        raise FieldError(f"event name {event[:40]!r} is not snake_case")
    if len(fields) > MAX_FIELDS:
        raise FieldError(f"{event}: {len(fields)} fields, at most {MAX_FIELDS}")
    checked: dict[str, FieldValue] = {}
    for key, value in fields.items():
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise FieldError(f"{event}: field name {str(key)[:40]!r} is not snake_case")
        if isinstance(value, str):
            if len(value) > MAX_TEXT or _CONTROL.search(value):
                raise FieldError(f"{event}.{key}: text longer than {MAX_TEXT} or with control characters")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise FieldError(f"{event}.{key}: not a finite number")
        elif isinstance(value, int):
            if not -(2**63) <= value < 2**63:
                raise FieldError(f"{event}.{key}: integer out of range")
        elif value is not None:
            raise FieldError(f"{event}.{key}: {type(value).__name__} is not a JSON scalar")
        checked[key] = value
    return checked


def make_entry(
    previous: Head | None, event: str, fields: Mapping[str, object], now: datetime.datetime
) -> tuple[Entry, bytes]:
    """The entry after ``previous`` (None: the first) and its line, newline included."""
    body: dict[str, object] = {
        "seq": previous.seq + 1 if previous else 1,
        "time": format_time(now),
        "event": event,
        "fields": check_fields(event, fields),
        "prev": previous.hash if previous else GENESIS,
    }
    digest = hashlib.sha256(canonical(body)).hexdigest()
    line = canonical({**body, "hash": digest}) + b"\n"
    if len(line) > MAX_LINE_BYTES:
        raise FieldError(f"{event}: entry of {len(line)} bytes, limit {MAX_LINE_BYTES}")
    entry = Entry(body["seq"], body["time"], event, body["fields"], body["prev"], digest)  # type: ignore[arg-type]
    return entry, line


# -- reading ----------------------------------------------------------------------------------------
class LineError(ChainError):
    """A line that is not an entry."""

    def __init__(self, reason: BreakReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_line(line: bytes) -> Entry:
    """One line (without its newline) as an :class:`Entry`; :class:`LineError` (BAD_LINE or MODIFIED) if not."""
    if len(line) > MAX_LINE_BYTES:
        raise LineError(BreakReason.BAD_LINE, "line too long")
    try:
        document = json.loads(line.decode("ascii"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeError, ValueError, RecursionError):
        raise LineError(BreakReason.BAD_LINE, "not an ASCII JSON line") from None
    if not isinstance(document, dict) or set(document) != _KEYS:
        raise LineError(BreakReason.BAD_LINE, "not an audit entry (keys)")
    seq, time, event, fields = document["seq"], document["time"], document["event"], document["fields"]
    prev, digest = document["prev"], document["hash"]
    if type(seq) is not int or seq < 1:
        raise LineError(BreakReason.BAD_LINE, "seq is not a positive integer")
    if not isinstance(time, str) or not _TIME.fullmatch(time):
        raise LineError(BreakReason.BAD_LINE, "time is not a UTC timestamp")
    if (
        not isinstance(prev, str)
        or not _DIGEST.fullmatch(prev)
        or not isinstance(digest, str)
        or not _DIGEST.fullmatch(digest)
    ):
        raise LineError(BreakReason.BAD_LINE, "prev or hash is not a SHA-256 hex digest")
    if not isinstance(event, str) or not isinstance(fields, dict):
        raise LineError(BreakReason.BAD_LINE, "event or fields of the wrong type")
    try:
        checked = check_fields(event, fields)
    except FieldError:
        raise LineError(BreakReason.BAD_LINE, "event name or fields out of format") from None
    if canonical(document) != line:
        raise LineError(BreakReason.BAD_LINE, "not in canonical form")
    body = {key: value for key, value in document.items() if key != "hash"}
    if hashlib.sha256(canonical(body)).hexdigest() != digest:
        raise LineError(BreakReason.MODIFIED, "content does not match its hash")
    return Entry(seq, time, event, checked, prev, digest)


def split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """The lines of a log file, and whether the last one is complete (ends with a newline)."""
    if not data:
        return [], True
    lines = data.split(b"\n")
    complete = lines[-1] == b""
    if complete:
        lines.pop()
    return lines, complete


def verify(data: bytes, anchors: Iterable[Head] = ()) -> Verdict:
    """Check a whole log file's bytes against itself and ``anchors``; the first break found is reported."""
    lines, complete = split_lines(data)
    entries: list[Entry | LineError] = []
    for line in lines:
        try:
            entries.append(parse_line(line))
        except LineError as exc:
            entries.append(exc)
    last_position = {item.seq: index for index, item in enumerate(entries) if isinstance(item, Entry)}
    previous: Entry | None = None
    good = 0
    for index, item in enumerate(entries):
        number = index + 1
        if isinstance(item, LineError):
            if index == len(entries) - 1 and not complete:
                reason = BreakReason.TRUNCATED
                detail = "the last entry is cut short"
            else:
                reason, detail = item.reason, str(item)
            return _broken(good, previous, Break(reason, number, None, detail))
        expected = previous.seq + 1 if previous else 1
        if item.seq < expected:
            detail = f"seq {item.seq} after seq {expected - 1}"
            return _broken(good, previous, Break(BreakReason.REORDERED, number, item.seq, detail))
        if item.seq > expected:
            if last_position.get(expected, -1) > index:
                detail = f"seq {item.seq} where seq {expected} was expected; seq {expected} comes later"
                return _broken(good, previous, Break(BreakReason.REORDERED, number, item.seq, detail))
            missing = f"seq {expected}" if item.seq == expected + 1 else f"seqs {expected}..{item.seq - 1}"
            return _broken(good, previous, Break(BreakReason.REMOVED, number, item.seq, f"{missing} missing"))
        link = previous.hash if previous else GENESIS
        if item.prev != link:
            detail = "prev does not match the previous entry's hash (that entry was rewritten, or this one is foreign)"
            return _broken(good, previous, Break(BreakReason.BROKEN_LINK, number, item.seq, detail))
        if not complete and index == len(entries) - 1:
            # A whole entry without its newline: a write cut between the entry and its end of line.
            return _broken(good, previous, Break(BreakReason.TRUNCATED, number, item.seq, "no end of line"))
        previous = item
        good += 1
    by_seq = {item.seq: (index, item) for index, item in enumerate(entries) if isinstance(item, Entry)}
    for anchor in sorted(set(anchors), key=lambda head: head.seq):
        index, found = by_seq.get(anchor.seq, (-1, None))
        if found is None:
            last = previous.seq if previous else 0
            detail = f"an anchor says seq {anchor.seq} exists; the chain ends at seq {last}"
            return _broken(good, previous, Break(BreakReason.TRUNCATED, 0, anchor.seq, detail))
        if found.hash != anchor.hash:
            detail = "the entry's hash is not the anchored one: the chain was replaced or rewritten"
            return _broken(good, previous, Break(BreakReason.REPLACED, index + 1, anchor.seq, detail))
    return Verdict(good, previous.head if previous else None, None)


def parse_anchors(document: object) -> list[Head]:
    """Anchors from JSON: a list of ``{seq, hash}``, a single one, or an object with an ``anchors`` list."""
    if isinstance(document, dict) and "anchors" in document:
        document = document["anchors"]
    items: Sequence[object] = document if isinstance(document, list) else [document]
    heads = []
    for item in items:
        if not isinstance(item, dict):
            raise ChainError("an anchor is not an object")
        seq, digest = item.get("seq"), item.get("hash")
        if type(seq) is not int or seq < 1 or not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ChainError("an anchor needs a positive integer seq and a 64-hex-digit hash")
        heads.append(Head(seq, digest))
    return heads


def _broken(good: int, previous: Entry | None, problem: Break) -> Verdict:
    return Verdict(good, previous.head if previous else None, problem)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")
