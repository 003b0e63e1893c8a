"""The append-only audit log on disk: one chain per state directory, fsynced, locked, resumed, anchored.

Layout of ``<state>/audit/`` (0700; files 0600)::

    audit.log   the chain, one canonical JSON entry per line (:mod:`kiosk.audit.chain`)
    head.json   the last entry's {seq, hash}, replaced atomically after each append
    audit.lock  flock(2) target: one appender at a time, across processes

Each :meth:`AuditLog.record` takes the lock, notices whether another process
appended since (the file grew) and resumes from the file's tail if so, writes
the entry with one ``write`` on an ``O_APPEND`` descriptor, fsyncs it, then
replaces the head sidecar. The entry is durable before ``record`` returns.

The sidecar exists for what the chain cannot show by itself: whole entries cut
from the end. At start the tail is compared with it; a disagreement is itself
recorded (``audit_head_mismatch``, priority crit) rather than silently
resumed over. An attacker who rewrites both file and sidecar is caught by the
anchors the hub keeps (:mod:`hub.audit`).

Every entry also goes to journald (MESSAGE_ID per event type, AUDIT_* fields).
journald is a copy for operators; the chain is the record: a journal that
cannot be reached is counted, never fatal.
"""

from __future__ import annotations

import datetime
import fcntl
import importlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final, Protocol

from kiosk.audit.chain import (
    MAX_LINE_BYTES,
    Break,
    BreakReason,
    ChainError,
    Entry,
    FieldError,
    Head,
    LineError,
    Verdict,
    check_fields,
    make_entry,
    parse_anchors,
    parse_line,
    verify,
)
from kiosk.audit.events import CATALOG, FORBIDDEN_FIELDS

logger = logging.getLogger(__name__)

LOG_FILE: Final = "audit.log"
HEAD_FILE: Final = "head.json"
LOCK_FILE: Final = "audit.lock"


class AuditError(ChainError):
    """The audit log cannot be opened or written."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class JournalSender(Protocol):
    def __call__(self, message: str, **fields: str) -> None: ...


def journal_send(message: str, **fields: str) -> None:
    """Send to journald through systemd-python (a no-op where no journald listens)."""
    # Imported here: tools that never log (``kiosk audit verify``) do not need systemd-python.
    journal = importlib.import_module("systemd.journal")
    journal.send(message, **fields)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class AuditLog:
    """A hash-chained audit log in ``directory``; ``source`` (``booth``/``hub``) labels its journald copies."""

    def __init__(
        self,
        directory: Path,
        *,
        source: str,
        journal: JournalSender | None = journal_send,
        clock: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self.directory = directory
        self.source = source
        self._journal = journal
        self._clock = clock
        self._lock = threading.Lock()
        self.journal_failures = 0
        """Entries journald did not take (the chain has them all)."""
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(directory / LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log ({exc.strerror})", path=directory) from exc
        try:
            self._lock_fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            os.close(self._fd)
            raise AuditError(f"cannot open the audit lock ({exc.strerror})", path=directory) from exc
        self._head: Head | None = None
        self._size = -1
        try:
            with self._locked():
                self._resume()
                sidecar = read_head(directory)
                mismatch = sidecar is not None and (
                    self._head is None
                    or sidecar.seq > self._head.seq
                    or (sidecar.seq == self._head.seq and sidecar.hash != self._head.hash)
                )
                started: list[Entry] = []
                if self._head is None and not mismatch:
                    started = self._append([("audit_log_started", {"chain": secrets.token_hex(16), "source": source})])
                if mismatch and sidecar is not None:
                    found = self._head.seq if self._head else 0
                    fields = {"expected_seq": sidecar.seq, "expected_hash": sidecar.hash, "found_seq": found}
                    started = self._append([("audit_head_mismatch", fields)])
                _fsync_directory(directory)
            for entry in started:
                self._send_journal(entry)
        except BaseException:
            self.close()
            raise

    @property
    def head(self) -> Head | None:
        """The last entry this process knows of (another process may have appended since)."""
        return self._head

    def record(self, event: str, **fields: object) -> None:
        """Append one event (durable on return) and copy it to journald.

        ``fields`` are JSON scalars: ids, tokens, digests, counts, outcomes; never patient identity.
        :class:`~kiosk.audit.chain.FieldError` for an event outside the catalog or a bad field.
        """
        self.record_many([(event, fields)])

    def record_many(self, events: Sequence[tuple[str, Mapping[str, object]]]) -> None:
        """Append several events in order with one write and one fsync (group commit); all or none is checked."""
        if not events:
            return
        for event, fields in events:
            self.check(event, fields)
        with self._locked():
            self._resume()
            entries = self._append(events)
        for entry in entries:
            self._send_journal(entry)

    @staticmethod
    def check(event: str, fields: Mapping[str, object]) -> None:
        """:class:`~kiosk.audit.chain.FieldError` unless ``event`` may be recorded with ``fields``."""
        if event not in CATALOG:
            raise FieldError(f"{event[:40]!r} is not in the audit event catalog")
        forbidden = FORBIDDEN_FIELDS.intersection(fields)
        if forbidden:
            raise FieldError(f"{event}: field(s) {', '.join(sorted(forbidden))} would carry patient identity")
        check_fields(event, fields)

    def close(self) -> None:
        """Release the files; the log can be opened again."""
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------
    def _locked(self) -> _Locked:
        return _Locked(self._lock, self._lock_fd)

    def _resume(self) -> None:
        """Catch up with the file's tail when it is not the size this process left it at."""
        size = os.fstat(self._fd).st_size
        if size == self._size:
            return
        self._head = read_tail(self.directory / LOG_FILE)
        self._size = size

    def _append(self, events: Sequence[tuple[str, Mapping[str, object]]]) -> list[Entry]:
        entries: list[Entry] = []
        lines: list[bytes] = []
        head = self._head
        now = self._clock()
        for event, fields in events:  # every entry is built before anything is written
            entry, line = make_entry(head, event, fields, now)
            head = entry.head
            entries.append(entry)
            lines.append(line)
        view = memoryview(b"".join(lines))
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError as exc:
            # The tail may now hold part of a line: the next open will refuse it, loudly.
            self._size = -1
            raise AuditError(f"cannot append to the audit log ({exc.strerror})", path=self.directory) from exc
        self._head = head
        self._size += sum(len(line) for line in lines)
        if head is not None:
            write_head(self.directory, head)
        return entries

    def _send_journal(self, entry: Entry) -> None:
        if self._journal is None:
            return
        seq, digest, event = entry.seq, entry.hash, entry.event
        kind = CATALOG[event]
        extra = {f"AUDIT_F_{key.upper()}": str(value) for key, value in entry.fields.items()}
        try:
            self._journal(
                f"audit {self.source} #{seq} {event}",
                MESSAGE_ID=kind.message_id,
                PRIORITY=str(kind.priority),
                SYSLOG_IDENTIFIER=f"kiosk-audit-{self.source}",
                AUDIT_SOURCE=self.source,
                AUDIT_EVENT=event,
                AUDIT_SEQ=str(seq),
                AUDIT_HASH=digest,
                **extra,
            )
        except Exception:  # journald is a copy: its failure must never lose or block the chain
            self.journal_failures += 1
            logger.warning("audit: journald did not take entry %d", seq)


class _Locked:
    """The thread lock, then flock on the lock file: one appender across threads and processes."""

    def __init__(self, lock: threading.Lock, fd: int) -> None:
        self._lock = lock
        self._fd = fd

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


def read_tail(path: Path) -> Head | None:
    """The last entry's head, reading only the end of the file; :class:`AuditError` if the tail is not an entry."""
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return None
        start = max(0, size - 2 * MAX_LINE_BYTES - 2)
        file.seek(start)
        data = file.read()
    if not data.endswith(b"\n"):
        raise AuditError("the audit log's last entry is cut short; run `kiosk audit verify`", path=path)
    lines = data[:-1].split(b"\n")
    if start > 0 and len(lines) < 2:
        raise AuditError("the audit log's last line is too long to be an entry", path=path)
    try:
        return parse_line(lines[-1]).head
    except LineError as exc:
        raise AuditError(
            f"the audit log's last entry does not parse ({exc}); run `kiosk audit verify`", path=path
        ) from exc


def read_head(directory: Path) -> Head | None:
    """The head sidecar, or None when there is none (an unreadable one is an :class:`AuditError`)."""
    try:
        document = json.loads((directory / HEAD_FILE).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuditError("the audit head sidecar is unreadable", path=directory / HEAD_FILE) from exc
    try:
        (head,) = parse_anchors(document)
    except (ChainError, ValueError) as exc:
        raise AuditError("the audit head sidecar is not a head", path=directory / HEAD_FILE) from exc
    return head


def write_head(directory: Path, head: Head) -> None:
    """Replace the head sidecar atomically (a crash leaves the old or the new one, never half of one)."""
    temporary = directory / f".{HEAD_FILE}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(head.to_json(), sort_keys=True).encode() + b"\n")
        os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, directory / HEAD_FILE)


def verify_directory(directory: Path, anchors: Iterable[Head] = ()) -> Verdict:
    """Verify ``<directory>/audit.log`` against its head sidecar and ``anchors`` (e.g. the hub's)."""
    path = directory / LOG_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
        if not (directory / HEAD_FILE).exists():
            raise AuditError("no audit log here", path=directory) from None
    all_anchors = list(anchors)
    try:
        sidecar = read_head(directory)
    except AuditError as exc:
        verdict = verify(data, all_anchors)
        return verdict if not verdict.ok else Verdict(verdict.entries, verdict.head, _head_missing(str(exc)))
    if sidecar is None:
        verdict = verify(data, all_anchors)
        if verdict.ok:
            return Verdict(verdict.entries, verdict.head, _head_missing("the head sidecar is missing"))
        return verdict
    return verify(data, [*all_anchors, sidecar])


def _head_missing(detail: str) -> Break:
    return Break(BreakReason.HEAD_MISSING, 0, None, detail)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
