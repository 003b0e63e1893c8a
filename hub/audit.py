"""The hub's audit trail: its own hash chain under ``<hub state>/audit/``, and the booths' chain heads.

The chain is :class:`kiosk.audit.AuditLog` (same format, same verifier, same
journald copies, ``source=hub``). :func:`chain_hook` turns it into the
:data:`~hub.accounts.AuditHook` the accounts, the waiting room and the APIs
already call on every security event.

Booths send their own chain's head (``audit_head`` {seq, hash}) every minute
and at the end of each session. :class:`BoothHeads` keeps every head that
moved in the SQLite store, as anchors for ``kiosk audit verify --anchors``
(``kiosk-hub audit heads --booth ID`` prints them). The hub cannot check that
a higher head extends a lower one (it never sees the entries), but it can see
a booth going back on what it said: a lower ``seq``, or the same ``seq`` with
another hash. That is recorded (``audit_head_rewound``, priority crit) and
the head is kept, marked as a conflict.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from hub.accounts import AuditHook, log_security_event
from hub.config import HubConfig
from hub.store import AuditHeadRecord, Store
from kiosk.audit import CATALOG, AuditError, AuditLog, FieldError, JournalSender
from kiosk.audit.log import journal_send

logger = logging.getLogger(__name__)

AUDIT_DIR: Final = "audit"
CONFIG_DIGEST_FILE: Final = "config.sha256"
MIN_HEAD_INTERVAL: Final = 1.0
"""Seconds between two heads kept for one booth (a head that goes back is always kept)."""
_SAFE_KIND = re.compile(r"[^a-z0-9_]")


def audit_directory(state: Path) -> Path:
    """Where a hub state keeps its chain."""
    return state / AUDIT_DIR


def open_hub_audit(state: Path, *, journal: JournalSender | None = journal_send) -> AuditLog:
    """Open (or start) the hub's chain in ``state``."""
    return AuditLog(audit_directory(state), source="hub", journal=journal)


def _catalogued(kind: str, fields: Mapping[str, str]) -> tuple[str, Mapping[str, object]]:
    if kind in CATALOG:
        return kind, fields
    # A new event someone forgot to catalogue is still recorded, under a catch-all.
    return "unlisted_event", {"kind": _SAFE_KIND.sub("_", kind.lower())[:64]}


def chain_hook(log: AuditLog) -> AuditHook:
    """An :data:`AuditHook` writing to ``log`` synchronously (each event durable when the hook returns)."""

    def hook(kind: str, fields: Mapping[str, str]) -> None:
        log_security_event(kind, fields)
        try:
            log.record_many([_catalogued(kind, fields)])
        except (FieldError, AuditError):
            # Failing the login or the relay because the audit disk is full would turn an audit problem
            # into an outage; the failure is loud instead.
            logger.exception("audit: event %s could not be recorded", kind)

    return hook


class AuditWriter:
    """The hub's hook when it serves: events are queued in order on the event loop and appended by one thread.

    An fsync takes milliseconds; a hundred booths reconnecting after a hub restart would
    otherwise stall the loop for the time of a hundred. The thread takes every event queued
    since its last write and appends them with one write and one fsync (group commit), so the
    chain keeps the order in which the loop saw them. :meth:`close` writes what is left.
    """

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._queue: queue.SimpleQueue[tuple[str, Mapping[str, object]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hub-audit", daemon=True)
        self._thread.start()

    def hook(self, kind: str, fields: Mapping[str, str]) -> None:
        """The :data:`AuditHook`: never blocks."""
        log_security_event(kind, fields)
        event = _catalogued(kind, dict(fields))
        try:
            AuditLog.check(*event)
        except FieldError:
            logger.exception("audit: event %s cannot be recorded", kind)
            return
        self._queue.put(event)

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[str, Mapping[str, object]]] = []
            item = self._queue.get()
            while True:
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                self.log.record_many(batch)
            except AuditError:
                logger.exception("audit: %d event(s) could not be recorded", len(batch))


def record_start(audit: AuditHook, state: Path, config: HubConfig) -> None:
    """``service_started`` with the configuration's digest, and ``config_changed`` when it differs from last time."""
    document = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    digest = hashlib.sha256(document.encode()).hexdigest()
    path = audit_directory(state) / CONFIG_DIGEST_FILE
    try:
        previous = path.read_text().strip()
    except FileNotFoundError:
        previous = ""
    if previous != digest:
        audit("config_changed", {"previous": previous or "none", "digest": digest})
        path.write_text(digest + "\n")
    audit("service_started", {"service": "hub", "config": digest})


class BoothHeads:
    """The heads booths send, kept as anchors; a head that goes back is an audit event."""

    def __init__(self, store: Store, audit: AuditHook, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock

    def receive(self, booth: str, seq: int, digest: str) -> bool:
        """A booth's head; False when it does not extend the previous one."""
        latest = self.store.latest_audit_head(booth)
        if latest is not None and latest.seq == seq and latest.hash == digest:
            return True  # nothing new since the last report
        rewound = latest is not None and seq <= latest.seq
        now = self.clock()
        if not rewound and latest is not None and now - latest.received < MIN_HEAD_INTERVAL:
            return True  # a booth flooding heads does not grow the store; the next report anchors the same
        self.store.add_audit_head(AuditHeadRecord(booth, seq, digest, now, rewound))
        if rewound and latest is not None:
            self.audit(
                "audit_head_rewound",
                {"booth": booth, "previous_seq": str(latest.seq), "seq": str(seq), "hash": digest},
            )
            logger.error("booth %s: audit head went back from seq %d to %d", booth, latest.seq, seq)
            return False
        return True

    def anchors(self, booth: str) -> dict[str, object]:
        """What ``kiosk-hub audit heads`` prints: every kept head of ``booth``."""
        return {
            "booth": booth,
            "anchors": [
                {"seq": head.seq, "hash": head.hash, "received": head.received, "conflict": head.conflict}
                for head in self.store.audit_heads(booth)
            ],
        }
