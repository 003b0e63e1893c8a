"""The sealed record format: what the booth writes, the hub stores, and only the operator's key opens.

A record is sealed to the hub's records public key (X25519) with a fresh
ephemeral key per record, so the booth can write records but never read one
back: it holds no private key that opens them (ARCHITECTURE.md, "At rest on the
booth"). The suite is X25519 + HKDF-SHA256 + AES-256-GCM. We do it by hand
rather than with ``cryptography``'s HPKE: its single-shot ``Suite.encrypt``
gives no context for several messages and returns the encapsulated key only
with the ciphertext, while we need the ephemeral key inside an authenticated
header and a large payload cut into authenticated chunks.

Layout (integers big-endian)::

    header   magic "KREC" | version u8 (1) | suite u8 (1) | record id 16 | created_ms u64
             | kind_len u8 | kind (ascii) | booth_len u8 | booth id (ascii) | key id 8 | ephemeral pk 32
             | chunk_size u32
    body     chunk 0 | chunk 1 | ... | final chunk

Every chunk but the last holds ``chunk_size`` plaintext bytes (+ a 16-byte
GCM tag); the last holds 0..chunk_size. The content key is
``HKDF-SHA256(ikm=X25519(eph, recipient), salt=eph_pk || recipient_pk,
info="kiosk-records/1" || key id)``; it is fresh per record, so the nonce can
be a counter: 11 bytes of chunk index and one "final" byte (the STREAM
construction of Hoang, Reyhanitabar, Rogaway and Vizár). Each chunk's AAD is
the whole header, so the header is authenticated; a reordered chunk fails its
index, a record cut at a chunk boundary fails the final flag, any flipped bit
fails a tag.

The plaintext is ``meta_len u32 | meta (JSON object of strings) | payload``:
the metadata (file names, MIME types, session token) is patient-related and is
sealed too. The header only says what kind of record it is, when and from which
booth, which the hub needs to file it without opening it.

Everything here is pure: bytes and keys in, bytes or typed errors out.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC: Final = b"KREC"
VERSION: Final = 1
SUITE_X25519_HKDF_SHA256_AES256GCM: Final = 1
TAG_BYTES: Final = 16
DEFAULT_CHUNK_SIZE: Final = 64 * 1024
MIN_CHUNK_SIZE: Final = 1024
MAX_CHUNK_SIZE: Final = 1024 * 1024
MAX_META_BYTES: Final = 16 * 1024
MAX_PAYLOAD_BYTES: Final = 20 * 1024 * 1024 + 64 * 1024
"""Files up to the data channel's 20 MiB (``kiosk.session.datachannel.MAX_FILE_BYTES``) and some room."""
MAX_RECORD_BYTES: Final = 22 * 1024 * 1024
"""Bigger than any record :func:`seal` makes (payload, metadata, tags, header); the hub refuses more."""
KIND: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
BOOTH: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
RECORD_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_FIXED: Final = struct.Struct(">4sBB16sQ")
_INFO: Final = b"kiosk-records/1"


class Reason(enum.Enum):
    TRUNCATED = "truncated"
    MAGIC = "magic"
    VERSION = "version"
    SUITE = "suite"
    FIELD = "field"
    TOO_LARGE = "too_large"
    KEY = "key"
    AUTHENTICATION = "authentication"
    CONTENT = "content"


class RecordError(Exception):
    """Root of the records errors (format, spool, upload)."""


class FormatError(RecordError):
    """Bytes that are not a well-formed sealed record, or a record that fails authentication."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Header:
    """The clear, authenticated part of a record."""

    record_id: str
    """32 lowercase hex digits."""
    kind: str
    """``consent``, ``identification``, ``reading``, ``still``, ``chat``, ``file``, ``summary``..."""
    created_ms: int
    """Unix time in milliseconds."""
    booth_id: str
    key_id: bytes
    """First 8 bytes of SHA-256 of the recipient's raw public key: which records key opens it."""
    ephemeral: bytes = field(repr=False)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    version: int = VERSION
    suite: int = SUITE_X25519_HKDF_SHA256_AES256GCM

    def encode(self) -> bytes:
        kind, booth = self.kind.encode("ascii"), self.booth_id.encode("ascii")
        return b"".join(
            (
                _FIXED.pack(MAGIC, self.version, self.suite, bytes.fromhex(self.record_id), self.created_ms),
                bytes([len(kind)]),
                kind,
                bytes([len(booth)]),
                booth,
                self.key_id,
                self.ephemeral,
                struct.pack(">I", self.chunk_size),
            )
        )


@dataclass(frozen=True)
class OpenedRecord:
    """A record opened with the records private key (the operator's export only)."""

    header: Header
    meta: dict[str, str]
    payload: bytes = field(repr=False)


def raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: X25519PublicKey) -> bytes:
    """Which records key a record is sealed to (shown by ``kiosk-hub records export`` on a mismatch)."""
    return hashlib.sha256(raw_public(key)).digest()[:8]


def _check_header_fields(record_id: str, kind: str, booth_id: str, created_ms: int, chunk_size: int) -> None:
    if not RECORD_ID.match(record_id):
        raise FormatError(Reason.FIELD, "a record id is 32 lowercase hex digits")
    if not KIND.match(kind):
        raise FormatError(Reason.FIELD, "a record kind is a short snake_case word")
    if not BOOTH.match(booth_id):
        raise FormatError(Reason.FIELD, "unusable booth id")
    if not 0 <= created_ms < 2**63:
        raise FormatError(Reason.FIELD, "creation time out of range")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise FormatError(Reason.FIELD, f"chunk size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")


def parse_header(data: bytes) -> tuple[Header, int]:
    """The header at the start of ``data`` and its length; :class:`FormatError` when it is not one.

    The hub calls this on every upload (it never holds the key that opens the body).
    """
    if len(data) < _FIXED.size:
        raise FormatError(Reason.TRUNCATED, "too short for a record header")
    magic, version, suite, raw_id, created_ms = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(Reason.MAGIC, "not a sealed record")
    if version != VERSION:
        raise FormatError(Reason.VERSION, f"record format version {version} is not supported")
    if suite != SUITE_X25519_HKDF_SHA256_AES256GCM:
        raise FormatError(Reason.SUITE, f"record suite {suite} is not supported")
    offset = _FIXED.size
    texts: list[str] = []
    for name in ("kind", "booth id"):
        if offset >= len(data):
            raise FormatError(Reason.TRUNCATED, f"header ends before the {name}")
        length = data[offset]
        end = offset + 1 + length
        if end > len(data):
            raise FormatError(Reason.TRUNCATED, f"header ends inside the {name}")
        try:
            texts.append(data[offset + 1 : end].decode("ascii"))
        except UnicodeDecodeError as exc:
            raise FormatError(Reason.FIELD, f"the {name} is not ASCII") from exc
        offset = end
    if offset + 8 + 32 + 4 > len(data):
        raise FormatError(Reason.TRUNCATED, "header ends before the keys")
    kid, ephemeral = data[offset : offset + 8], data[offset + 8 : offset + 40]
    (chunk_size,) = struct.unpack_from(">I", data, offset + 40)
    offset += 44
    record_id = raw_id.hex()
    _check_header_fields(record_id, texts[0], texts[1], created_ms, chunk_size)
    header = Header(record_id, texts[0], created_ms, texts[1], kid, ephemeral, chunk_size, version, suite)
    return header, offset


def _content_key(shared: bytes, ephemeral: bytes, recipient: bytes, kid: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO + kid).derive(shared)
    return AESGCM(key)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _ranges(length: int, chunk_size: int) -> Iterator[tuple[int, int, bool]]:
    """``(start, end, final)`` of each chunk; an empty text is one empty final chunk."""
    start = 0
    while True:
        end = min(start + chunk_size, length)
        final = end == length
        yield start, end, final
        if final:
            return
        start = end


def encode_meta(meta: Mapping[str, str]) -> bytes:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise FormatError(Reason.FIELD, "record metadata maps strings to strings")
    encoded = json.dumps(dict(meta), ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    if len(encoded) > MAX_META_BYTES:
        raise FormatError(Reason.TOO_LARGE, f"record metadata is limited to {MAX_META_BYTES} bytes")
    return encoded


def seal(
    payload: bytes,
    recipient: X25519PublicKey,
    *,
    record_id: str,
    kind: str,
    booth_id: str,
    created_ms: int,
    meta: Mapping[str, str] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    ephemeral: X25519PrivateKey | None = None,
) -> bytes:
    """A sealed record of ``payload`` and ``meta`` that only ``recipient``'s private key opens.

    ``ephemeral`` is for known-answer tests only; leave it out (a fresh key per record is what makes the
    counter nonces safe).
    """
    _check_header_fields(record_id, kind, booth_id, created_ms, chunk_size)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise FormatError(Reason.TOO_LARGE, f"record payloads are limited to {MAX_PAYLOAD_BYTES} bytes")
    encoded_meta = encode_meta(meta or {})
    eph = ephemeral or X25519PrivateKey.generate()
    eph_pk, recipient_pk, kid = raw_public(eph.public_key()), raw_public(recipient), key_id(recipient)
    header = Header(record_id, kind, created_ms, booth_id, kid, eph_pk, chunk_size).encode()
    aead = _content_key(eph.exchange(recipient), eph_pk, recipient_pk, kid)
    plaintext = memoryview(struct.pack(">I", len(encoded_meta)) + encoded_meta + payload)
    parts = [header]
    for index, (start, end, final) in enumerate(_ranges(len(plaintext), chunk_size)):
        parts.append(aead.encrypt(_nonce(index, final), plaintext[start:end], header))
    return b"".join(parts)


def open_record(data: bytes, private_key: X25519PrivateKey) -> OpenedRecord:
    """Check and decrypt a whole record; :class:`FormatError` if anything was changed, cut or reordered."""
    if len(data) > MAX_RECORD_BYTES:
        raise FormatError(Reason.TOO_LARGE, "larger than any sealed record")
    header, offset = parse_header(data)
    recipient = private_key.public_key()
    if header.key_id != key_id(recipient):
        raise FormatError(Reason.KEY, "the record is sealed to another records key")
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(header.ephemeral))
    except ValueError as exc:  # an all-zero shared secret: a low-order point in the header
        raise FormatError(Reason.AUTHENTICATION, "unusable ephemeral key") from exc
    aead = _content_key(shared, header.ephemeral, raw_public(recipient), header.key_id)
    header_bytes = bytes(data[:offset])
    sealed_chunk = header.chunk_size + TAG_BYTES
    body = memoryview(data)[offset:]
    if len(body) < TAG_BYTES:
        raise FormatError(Reason.TRUNCATED, "the record has no body")
    plain: list[bytes] = []
    for index, start in enumerate(range(0, len(body), sealed_chunk)):
        end = min(start + sealed_chunk, len(body))
        final = end == len(body)
        if end - start < TAG_BYTES:
            raise FormatError(Reason.TRUNCATED, "the last chunk is cut")
        try:
            plain.append(aead.decrypt(_nonce(index, final), body[start:end], header_bytes))
        except InvalidTag as exc:
            raise FormatError(Reason.AUTHENTICATION, f"chunk {index} fails authentication") from exc
    text = b"".join(plain)
    if len(text) < 4:
        raise FormatError(Reason.CONTENT, "no metadata length")
    (meta_len,) = struct.unpack_from(">I", text)
    if meta_len > MAX_META_BYTES or 4 + meta_len > len(text):
        raise FormatError(Reason.CONTENT, "metadata length out of range")
    try:
        meta = json.loads(text[4 : 4 + meta_len].decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(Reason.CONTENT, "metadata is not JSON") from exc
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise FormatError(Reason.CONTENT, "metadata is not an object of strings")
    return OpenedRecord(header, meta, text[4 + meta_len :])


def load_public_key(pem: bytes) -> X25519PublicKey:
    """A records public key (``records-pub.pem``)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise FormatError(Reason.KEY, "not a PEM public key") from exc
    if not isinstance(key, X25519PublicKey):
        raise FormatError(Reason.KEY, "the records key must be X25519")
    return key


def load_private_key(pem: bytes) -> X25519PrivateKey:
    """The records private key (``records-key.pem``; the operator's, never on a booth or serving hub)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise FormatError(Reason.KEY, "not a PEM private key") from exc
    if not isinstance(key, X25519PrivateKey):
        raise FormatError(Reason.KEY, "the records key must be X25519")
    return key
