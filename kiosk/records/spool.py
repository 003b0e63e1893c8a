"""The booth's records spool: sealed records on disk, written atomically, uploaded oldest first.

``<state>/records/`` holds one file per record, ``<created_ns>-<record id>.rec``
(so the names sort oldest first), and nothing else but the temporary files of
writes in progress (``.<record id>.tmp``). A write is: temporary file, fsync,
rename, fsync of the directory; a power cut or ``kill -9`` leaves either the
whole record or a temporary file, which :class:`Spool` removes when it opens.
Only sealed bytes reach the disk: :class:`RecordsWriter` seals in memory first.

Records the hub refused as malformed or conflicting go to ``rejected/``
(kept sealed, for a technician) instead of being retried forever or deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from kiosk.records.seal import DEFAULT_CHUNK_SIZE, RecordError, seal

logger = logging.getLogger(__name__)

SUFFIX: Final = ".rec"
TEMP_SUFFIX: Final = ".tmp"
_NAME: Final = re.compile(r"^(?P<created>[0-9]{20})-(?P<id>[0-9a-f]{32})\.rec$")

AuditHook = Callable[[str, dict[str, object]], None]


class SpoolError(RecordError):
    """The spool directory cannot be used."""


@dataclass(frozen=True)
class SpooledRecord:
    """A complete record waiting for upload."""

    record_id: str
    path: Path

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(directory: Path, name: str, data: bytes, *, temp_name: str) -> Path:
    """``data`` as ``directory/name``: temporary file, fsync, rename, fsync of the directory."""
    temp = directory / temp_name
    final = directory / name
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, final)
    fsync_directory(directory)
    return final


class Spool:
    """The records directory: complete records, oldest first; leftovers of interrupted writes removed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SpoolError(f"cannot create the records spool: {exc.strerror}") from exc
        self.rejected_dir = root / "rejected"
        self.remove_leftovers()

    def remove_leftovers(self) -> int:
        """Delete temporary files an interrupted write left; how many."""
        removed = 0
        for path in self.root.iterdir():
            if path.name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        if removed:
            fsync_directory(self.root)
            logger.info("records spool: removed %d interrupted write(s)", removed)
        return removed

    def put(self, record_id: str, sealed: bytes) -> Path:
        name = f"{time.time_ns():020d}-{record_id}{SUFFIX}"
        return write_atomically(self.root, name, sealed, temp_name=f".{record_id}{TEMP_SUFFIX}")

    def pending(self) -> list[SpooledRecord]:
        """Complete records, oldest first."""
        records = []
        for path in self.root.iterdir():
            match = _NAME.match(path.name)
            if match is not None and path.is_file():
                records.append((path.name, SpooledRecord(match["id"], path)))
        return [record for _, record in sorted(records)]

    def remove(self, record: SpooledRecord) -> None:
        """Delete an uploaded record (the hub acknowledged a verified copy)."""
        with contextlib.suppress(FileNotFoundError):
            record.path.unlink()
        fsync_directory(self.root)

    def reject(self, record: SpooledRecord) -> Path:
        """Set aside a record the hub will never take (still sealed)."""
        self.rejected_dir.mkdir(exist_ok=True, mode=0o700)
        target = self.rejected_dir / record.path.name
        os.rename(record.path, target)
        fsync_directory(self.root)
        fsync_directory(self.rejected_dir)
        return target

    def rejected(self) -> list[Path]:
        if not self.rejected_dir.is_dir():
            return []
        return sorted(path for path in self.rejected_dir.iterdir() if path.name.endswith(SUFFIX))


def new_record_id() -> str:
    return secrets.token_hex(16)


class RecordsWriter:
    """Seals and spools records: ``write(kind, payload, meta)`` returns the record id once it is on disk."""

    def __init__(
        self,
        spool: Spool,
        recipient: X25519PublicKey,
        booth_id: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        clock: Callable[[], float] = time.time,
        audit: AuditHook | None = None,
    ) -> None:
        self.spool = spool
        self.recipient = recipient
        self.booth_id = booth_id
        self.chunk_size = chunk_size
        self.clock = clock
        self.audit = audit

    def write(self, kind: str, payload: bytes, meta: Mapping[str, str]) -> str:
        """Seal ``payload`` and ``meta`` and store them atomically; the record id."""
        record_id = new_record_id()
        sealed = seal(
            payload,
            self.recipient,
            record_id=record_id,
            kind=kind,
            booth_id=self.booth_id,
            created_ms=int(self.clock() * 1000),
            meta=meta,
            chunk_size=self.chunk_size,
        )
        try:
            self.spool.put(record_id, sealed)
        except OSError as exc:
            raise SpoolError(f"cannot write a record: {exc.strerror}") from exc
        logger.debug("record %s sealed (%s, %d bytes)", record_id, kind, len(sealed))
        if self.audit is not None:
            self.audit("record_sealed", {"record": record_id, "kind": kind, "size": len(sealed)})
        return record_id
