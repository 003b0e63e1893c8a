"""The patient app's records service: what the controller hands over is sealed and spooled, in order, off the loop.

Sealing a 3 MB still and two fsyncs take tens of milliseconds: enough to stall
the screens and the call if done on the event loop. :class:`SealedRecords`
hands each record to one worker thread (one, so records reach the spool in the
order they happened) and keeps the plaintext only until it is sealed;
:meth:`flush` waits for all of them (the controller calls it at the wipe, so a
session's records are on disk, sealed, before the next patient).

A storage failure is logged (record id and kind only) and never reaches the
patient's session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from kiosk.records.seal import RecordError, load_public_key
from kiosk.records.spool import AuditHook, RecordsWriter, Spool

logger = logging.getLogger(__name__)


class SealedRecords:
    """:class:`kiosk.ui.services.RecordsService` on a :class:`RecordsWriter`."""

    def __init__(self, writer: RecordsWriter) -> None:
        self.writer = writer
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="records")
        self._pending: set[concurrent.futures.Future[str | None]] = set()
        self.failures = 0

    def record(self, kind: str, payload: bytes, meta: Mapping[str, str]) -> None:
        future = self._executor.submit(self._write, kind, payload, dict(meta))
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _write(self, kind: str, payload: bytes, meta: dict[str, str]) -> str | None:
        try:
            return self.writer.write(kind, payload, meta)
        except (RecordError, OSError) as exc:
            self.failures += 1
            logger.error("a %s record could not be sealed or stored (%s)", kind, type(exc).__name__)
            return None

    async def flush(self) -> None:
        pending = list(self._pending)
        if pending:
            await asyncio.gather(*(asyncio.wrap_future(future) for future in pending))

    def close(self) -> None:
        """Write what is queued, then stop the worker."""
        self._executor.shutdown(wait=True)


def open_records(state: Path, public_key_file: Path, booth_id: str, *, audit: AuditHook | None = None) -> SealedRecords:
    """The booth's records service: spool ``<state>/records/``, sealed to the key in ``public_key_file``."""
    recipient: X25519PublicKey = load_public_key(public_key_file.read_bytes())
    return SealedRecords(RecordsWriter(Spool(state / "records"), recipient, booth_id, audit=audit))


def json_payload(document: Mapping[str, object]) -> bytes:
    """A record's JSON body (the controller's records are small JSON documents)."""
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode()
