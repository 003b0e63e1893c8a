"""``kiosk-uploader``: sends the spool's sealed records to the hub, deletes each once the hub has a verified copy.

    kiosk-uploader --state DIR --hub wss://host:port/ws --fleet-ca F --cert F --key F [--once]
    kiosk-uploader --state DIR --hub-state HUBDIR [--hub URL] [--once]     # development

Each record goes as ``PUT /records/{id}`` to the hub's booth listener (mutual
TLS with the booth's fleet certificate, TLS 1.3), with ``X-Record-SHA256``. The
hub answers with the hash of what it stored; the record is deleted only when
that hash is the record's own. Uploads are idempotent on the hub (same id and
bytes: acknowledged again), so a crash between the hub's answer and the
deletion costs one more upload, never a duplicate. Records the hub refuses for
good (malformed, conflicting, too large) go to ``records/rejected/``, sealed.

Connection failures and 5xx answers are retried with capped exponential
backoff and jitter, forever (``--once``: one pass, exit 1 if anything is left).
Under systemd (``NOTIFY_SOCKET`` set: kiosk-uploader.service) it sends
READY=1 once started and WATCHDOG=1 from its loop.

Progress goes to stdout as JSON lines (``{"event": "uploaded", "record": ID,
"size": N}``...), record ids and sizes only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import hashlib
import io
import json
import logging
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from hub.tls import client_context
from kiosk import sdnotify
from kiosk.records.seal import RecordError
from kiosk.records.spool import Spool, SpooledRecord

logger = logging.getLogger(__name__)

BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 60.0
POLL_SECONDS: Final = 2.0
REQUEST_TIMEOUT: Final = 120.0
SHA256_HEADER: Final = "X-Record-SHA256"
"""Same header as :data:`hub.records.SHA256_HEADER`."""

AuditHook = Callable[[str, dict[str, object]], None]


class UploadError(RecordError):
    """The hub could not be reached or did not take a record this time (retried)."""


class Outcome(enum.Enum):
    UPLOADED = "uploaded"
    REJECTED = "rejected"
    """The hub will never take it: set aside."""


def records_url(hub: str) -> str:
    """The booth listener's base URL from ``wss://host:port/ws`` or ``https://host:port``."""
    parts = urlsplit(hub)
    if parts.scheme not in ("wss", "https") or not parts.netloc:
        raise ValueError("the hub is wss://host:port/ws or https://host:port")
    return f"https://{parts.netloc}"


def backoff_delay(failures: int, *, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX) -> float:
    """Exponential, capped, with "equal jitter": half fixed, half random, so booths back off apart."""
    base = min(cap, first * 2.0 ** min(30, max(0, failures - 1)))
    return base / 2 + random.uniform(0, base / 2)


class Notifier:
    """sd_notify when running under systemd (:mod:`kiosk.sdnotify`, no systemd-python needed); nothing otherwise."""

    def __init__(self) -> None:
        self._systemd = sdnotify.Notifier()

    def __call__(self, state: str) -> None:
        self._systemd.send(state)


@dataclass(frozen=True)
class UploaderConfig:
    state: Path
    hub: str
    fleet_ca: Path
    cert: Path
    key: Path


class Uploader:
    """One booth's uploader: :meth:`upload_pending` for one pass, :meth:`run` forever."""

    def __init__(
        self,
        config: UploaderConfig,
        *,
        audit: AuditHook | None = None,
        report: Callable[[str, dict[str, object]], None] | None = None,
        poll_seconds: float = POLL_SECONDS,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.config = config
        self.spool = Spool(config.state / "records")
        self.base_url = records_url(config.hub)
        self.audit = audit
        self.report = report or (lambda event, fields: None)
        self.poll_seconds = poll_seconds
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.notify = Notifier()

    def _client(self) -> aiohttp.ClientSession:
        context = client_context(self.config.fleet_ca, self.config.cert, self.config.key)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=1),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, connect=10),
        )

    async def upload(self, client: aiohttp.ClientSession, record: SpooledRecord) -> Outcome:
        """Send one record; delete or set it aside on a final answer, :class:`UploadError` to retry."""
        try:
            data = await asyncio.to_thread(record.path.read_bytes)
        except FileNotFoundError as exc:
            raise UploadError("the record disappeared from the spool") from exc
        digest = hashlib.sha256(data).hexdigest()
        try:
            async with client.put(
                f"{self.base_url}/records/{record.record_id}",
                data=io.BytesIO(data),  # streamed: a raw 20 MB bytes body would hold the loop
                headers={SHA256_HEADER: digest, "Content-Type": "application/octet-stream"},
            ) as response:
                status = response.status
                answer: Any = None
                with contextlib.suppress(ValueError, aiohttp.ContentTypeError):
                    answer = await response.json()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise UploadError(f"hub unreachable: {type(exc).__name__}") from exc
        if status in (200, 201):
            acked = answer.get("sha256") if isinstance(answer, dict) else None
            if acked != digest:
                raise UploadError("the hub acknowledged another hash")
            await asyncio.to_thread(self.spool.remove, record)
            self.report("uploaded", {"record": record.record_id, "size": len(data), "again": status == 200})
            if self.audit is not None:
                self.audit("record_uploaded", {"record": record.record_id, "size": len(data), "sha256": digest})
            return Outcome.UPLOADED
        if status in (400, 409, 413):
            reason = answer.get("error", str(status)) if isinstance(answer, dict) else str(status)
            logger.error("record %s refused by the hub (%s); set aside", record.record_id, reason)
            await asyncio.to_thread(self.spool.reject, record)
            self.report("rejected", {"record": record.record_id, "reason": str(reason)})
            if self.audit is not None:
                self.audit("record_rejected", {"record": record.record_id, "reason": str(reason)})
            return Outcome.REJECTED
        raise UploadError(f"hub answered {status}")

    async def upload_pending(self, client: aiohttp.ClientSession) -> int:
        """Upload everything in the spool, oldest first; how many were sent. Stops at the first failure."""
        sent = 0
        for record in self.spool.pending():
            await self.upload(client, record)
            sent += 1
            self.notify("WATCHDOG=1")
        return sent

    async def once(self) -> int:
        """One pass; the number of records left in the spool."""
        async with self._client() as client:
            try:
                await self.upload_pending(client)
            except UploadError as exc:
                logger.warning("upload pass stopped: %s", exc)
        return len(self.spool.pending())

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Upload until ``stop`` is set (or cancelled), waiting out hub outages."""
        stop = stop or asyncio.Event()
        self.notify("READY=1")
        failures = 0
        async with self._client() as client:
            while not stop.is_set():
                self.notify("WATCHDOG=1")
                try:
                    await self.upload_pending(client)
                    failures = 0
                    delay = self.poll_seconds
                except UploadError as exc:
                    failures += 1
                    delay = backoff_delay(failures, first=self.backoff_first, cap=self.backoff_max)
                    logger.warning("upload failed (%s); retrying in %.1f s", exc, delay)
                    self.report("retry", {"failures": failures, "delay": round(delay, 3)})
                await _sleep_or_stop(stop, delay, slice_seconds=self.poll_seconds, tick=self.notify)


async def _sleep_or_stop(stop: asyncio.Event, delay: float, *, slice_seconds: float, tick: Notifier) -> None:
    # In slices, so the watchdog keeps hearing from us during a long backoff.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while not stop.is_set() and (remaining := deadline - loop.time()) > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(remaining, max(0.05, slice_seconds))):
                await stop.wait()
        tick("WATCHDOG=1")


# -- the command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk-uploader", description="Upload the booth's sealed records.")
    parser.add_argument("--state", type=Path, required=True, help="the booth's state directory")
    parser.add_argument("--hub", help="the hub's booth listener, wss://host:port/ws or https://host:port")
    parser.add_argument("--hub-state", type=Path, help="development: take CA, certificate and key from a hub state")
    parser.add_argument("--booth-id", default="booth-0001")
    parser.add_argument("--fleet-ca", type=Path)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--once", action="store_true", help="one pass; exit 1 if records are left")
    parser.add_argument("--poll", type=float, default=POLL_SECONDS, help="seconds between looks at an empty spool")
    parser.add_argument("--backoff-max", type=float, default=BACKOFF_MAX)
    parser.add_argument("--verbose", action="store_true")
    return parser


def config_from_args(args: argparse.Namespace) -> UploaderConfig:
    fleet_ca, cert, key = args.fleet_ca, args.cert, args.key
    if args.hub_state is not None:
        root: Path = args.hub_state
        fleet_ca = fleet_ca or root / "fleet-ca.pem"
        cert = cert or root / "booths" / f"{args.booth_id}.pem"
        key = key or root / "booths" / f"{args.booth_id}.key"
    if args.hub is None or fleet_ca is None or cert is None or key is None:
        raise SystemExit("kiosk-uploader: give --hub and either --hub-state or --fleet-ca, --cert and --key")
    return UploaderConfig(args.state, args.hub, Path(fleet_ca), Path(cert), Path(key))


def emit(event: str, fields: dict[str, object]) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> int:
    try:
        uploader = Uploader(config_from_args(args), report=emit, poll_seconds=args.poll, backoff_max=args.backoff_max)
    except (RecordError, ValueError) as exc:
        print(f"kiosk-uploader: {exc}", file=sys.stderr)
        return 2
    if args.once:
        left = await uploader.once()
        emit("done", {"left": left})
        return 1 if left else 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    emit("ready", {"pending": len(uploader.spool.pending())})
    await uploader.run(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kiosk-uploader``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
