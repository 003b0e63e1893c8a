"""The hub's records inbox: sealed records from booths, stored as they came, opened only by an export.

``<hub state>/records/<booth id>/<record id>.rec``. The serving hub checks what
it can without the records private key (the header parses, it names the
uploading booth and the URL's record id, the size and SHA-256 match) and stores
the bytes atomically; it never holds the key that opens them. An upload of a
record already stored is acknowledged again when the bytes are identical and
refused (409) otherwise, so a booth that retries after a lost
acknowledgement never creates a duplicate.

``kiosk-hub records export`` (:func:`export`) runs apart from the serving hub,
with the operator's records private key, and writes one file per record plus
``index.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hub import pki
from hub.accounts import AuditHook
from hub.booth_api import FLEET_CA
from kiosk.records.seal import MAX_RECORD_BYTES, RECORD_ID, FormatError, load_private_key, open_record, parse_header
from kiosk.records.spool import fsync_directory

logger = logging.getLogger(__name__)

SHA256_HEADER: Final = "X-Record-SHA256"
_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")


class Refusal(enum.Enum):
    TOO_LARGE = "too_large"
    BAD_HASH = "bad_hash"
    BAD_HEADER = "bad_header"
    WRONG_BOOTH = "wrong_booth"
    WRONG_ID = "wrong_id"
    CONFLICT = "conflict"


class InboxError(Exception):
    """Root of the hub's records errors."""


class RecordRefused(InboxError):
    """An upload the inbox does not store; ``reason`` says why (and picks the HTTP status)."""

    STATUS: Final = {Refusal.TOO_LARGE: 413, Refusal.CONFLICT: 409}

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def status(self) -> int:
        return self.STATUS.get(self.reason, 400)


@dataclass(frozen=True)
class Stored:
    path: Path
    sha256: str
    created: bool
    """False: the same record was already stored (a retried upload)."""


def records_key_paths(state: Path) -> tuple[Path, Path]:
    """``records-key.pem`` (private, the operator's) and ``records-pub.pem`` (what booths seal to)."""
    return state / "records-key.pem", state / "records-pub.pem"


def ensure_records_key(state: Path) -> Path:
    """Create the development records key pair in ``state`` unless there is one; the public key's path."""
    private_path, public_path = records_key_paths(state)
    if not private_path.exists():
        key = X25519PrivateKey.generate()
        pki.write_private(
            private_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        public_path.unlink(missing_ok=True)
    if not public_path.exists():
        key = load_private_key(private_path.read_bytes())
        public_path.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return public_path


class RecordsInbox:
    """Where booths' sealed records land."""

    def __init__(self, root: Path, *, max_bytes: int = MAX_RECORD_BYTES, audit: AuditHook | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.audit = audit
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.remove_leftovers()

    def path(self, booth_id: str, record_id: str) -> Path:
        return self.root / booth_id / f"{record_id}.rec"

    def check(self, booth_id: str, record_id: str, data: bytes, sha256: str) -> None:
        """Everything the hub can verify without the records key; :class:`RecordRefused` otherwise."""
        if len(data) > self.max_bytes:
            raise RecordRefused(Refusal.TOO_LARGE, f"records are limited to {self.max_bytes} bytes")
        if not RECORD_ID.match(record_id):
            raise RecordRefused(Refusal.WRONG_ID, "a record id is 32 lowercase hex digits")
        if not _SHA256.match(sha256) or hashlib.sha256(data).hexdigest() != sha256:
            raise RecordRefused(Refusal.BAD_HASH, "the body does not match its SHA-256")
        try:
            header, _ = parse_header(data)
        except FormatError as exc:
            raise RecordRefused(Refusal.BAD_HEADER, f"not a sealed record ({exc.reason.value})") from exc
        if header.record_id != record_id:
            raise RecordRefused(Refusal.WRONG_ID, "the record's header names another id")
        if header.booth_id != booth_id:
            raise RecordRefused(Refusal.WRONG_BOOTH, "the record was sealed by another booth")

    def store(self, booth_id: str, record_id: str, data: bytes, sha256: str) -> Stored:
        """Check and store atomically (temporary file, fsync, link, fsync of the directory); idempotent."""
        self.check(booth_id, record_id, data, sha256)
        directory = self.root / booth_id
        directory.mkdir(exist_ok=True, mode=0o700)
        final = self.path(booth_id, record_id)
        if final.exists():
            return self._again(final, sha256)
        temp = directory / f".{record_id}.{secrets.token_hex(6)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                # link, not rename: it fails if a concurrent upload of the same id got there first.
                os.link(temp, final)
            except FileExistsError:
                return self._again(final, sha256)
            fsync_directory(directory)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        if self.audit is not None:
            self.audit("record_received", {"booth": booth_id, "record": record_id, "size": str(len(data))})
        return Stored(final, sha256, created=True)

    def _again(self, final: Path, sha256: str) -> Stored:
        existing = hashlib.sha256(final.read_bytes()).hexdigest()
        if existing != sha256:
            raise RecordRefused(Refusal.CONFLICT, "a different record with this id is already stored")
        return Stored(final, sha256, created=False)

    def remove_leftovers(self) -> None:
        for temp in self.root.glob("*/.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


# -- the booth listener's route ------------------------------------------------------------------
INBOX: Final = web.AppKey("records_inbox", RecordsInbox)


async def put_record(request: web.Request) -> web.Response:
    """``PUT /records/{id}`` with the sealed bytes and ``X-Record-SHA256``; answers ``{"id", "sha256"}``."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise web.HTTPForbidden(text="a booth certificate is required")
    try:
        identity = pki.booth_identity(der, request.app[FLEET_CA])
    except pki.PkiError as exc:
        raise web.HTTPForbidden(text=str(exc)) from exc
    inbox = request.app[INBOX]
    record_id = request.match_info["id"]
    length = request.content_length
    if length is None:
        raise web.HTTPLengthRequired(text="Content-Length is required")
    if length > inbox.max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=inbox.max_bytes, actual_size=length)
    data = await request.content.readexactly(length)
    try:
        stored = await asyncio.to_thread(
            inbox.store, identity.booth_id, record_id, data, request.headers.get(SHA256_HEADER, "")
        )
    except RecordRefused as exc:
        logger.warning("record from %s refused: %s", identity.booth_id, exc.reason.value)
        return web.json_response({"error": exc.reason.value, "message": str(exc)}, status=exc.status)
    return web.json_response({"id": record_id, "sha256": stored.sha256}, status=201 if stored.created else 200)


def add_routes(app: web.Application, inbox: RecordsInbox) -> None:
    app[INBOX] = inbox
    app.router.add_put("/records/{id}", put_record)


# -- the operator's export --------------------------------------------------------------------------
_EXTENSIONS: Final = {"image/jpeg": ".jpg", "image/png": ".png", "application/pdf": ".pdf", "application/json": ".json"}


@dataclass(frozen=True)
class ExportResult:
    exported: int
    failed: list[dict[str, str]]


def export(state: Path, out: Path, key_file: Path | None = None) -> ExportResult:
    """Open every record in ``state``'s inbox with the records private key into ``out`` (+ ``index.json``)."""
    key_path = key_file or records_key_paths(state)[0]
    try:
        key = load_private_key(key_path.read_bytes())
    except OSError as exc:
        raise InboxError(f"cannot read the records key {key_path}: {exc.strerror}") from exc
    except FormatError as exc:
        raise InboxError(f"{key_path} is not a records key: {exc}") from exc
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    index: list[dict[str, object]] = []
    failed: list[dict[str, str]] = []
    for path in sorted((state / "records").glob("*/*.rec")):
        data = path.read_bytes()
        try:
            record = open_record(data, key)
        except FormatError as exc:
            failed.append({"file": str(path), "reason": exc.reason.value})
            continue
        header = record.header
        extension = _EXTENSIONS.get(record.meta.get("mime", ""), ".bin")
        name = f"{header.booth_id}-{header.record_id}-{header.kind}{extension}"
        pki.write_private(out / name, record.payload)
        created = datetime.datetime.fromtimestamp(header.created_ms / 1000, datetime.UTC)
        index.append(
            {
                "id": header.record_id,
                "kind": header.kind,
                "booth": header.booth_id,
                "created": created.isoformat(timespec="milliseconds"),
                "created_ms": header.created_ms,
                "sha256": hashlib.sha256(data).hexdigest(),
                "meta": record.meta,
                "file": name,
                "size": len(record.payload),
            }
        )
    index.sort(key=lambda entry: (str(entry["booth"]), int(str(entry["created_ms"]))))
    pki.write_private(out / "index.json", (json.dumps({"records": index, "failed": failed}, indent=2) + "\n").encode())
    return ExportResult(len(index), failed)
