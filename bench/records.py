"""Sealed records: sealing throughput for stills, spool writes with fsync, upload to a real hub over mutual TLS.

    python -m bench.records        (or python -m bench.run records)

- ``seal``: :func:`kiosk.records.seal.seal` of 1, 2 and 3 MB stills (random
  bytes: a JPEG does not compress either), in memory; MB/s of plaintext.
- ``spool_write``: :meth:`RecordsWriter.write` (seal, temporary file, fsync,
  rename, fsync of the directory) of 2 MB stills and of 300-byte readings.
- ``upload``: a development hub (``kiosk-hub serve`` subprocess) on loopback;
  the uploader sends a spool of 2 MB stills, then one of small records, each
  verified by the hub (header, size, SHA-256, atomic store) and acknowledged
  before the booth deletes it. MB/s and records/s, wall clock.
- ``open``: the operator's :func:`open_record` of the 2 MB stills.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.stats import summary_ms
from hub.records import records_key_paths
from kiosk.demo.hub import DevHub
from kiosk.records.seal import load_private_key, load_public_key, open_record, seal
from kiosk.records.spool import RecordsWriter, Spool
from kiosk.records.uploader import Uploader, UploaderConfig

MB = 1_000_000
STILL_SIZES = (1 * MB, 2 * MB, 3 * MB)
SEALS_PER_SIZE = 15
SPOOLED_STILLS = 20
SMALL_RECORDS = 200
BOOTH = "booth-0001"


def _seal_figures() -> dict[str, Any]:
    key = X25519PrivateKey.generate()
    figures: dict[str, Any] = {}
    for size in STILL_SIZES:
        payload = os.urandom(size)
        times = []
        for _ in range(SEALS_PER_SIZE):
            began = time.perf_counter()
            sealed = seal(payload, key.public_key(), record_id="ab" * 16, kind="still", booth_id=BOOTH, created_ms=1)
            times.append(time.perf_counter() - began)
        figures[f"{size // MB}MB"] = {
            "MB_per_s": round(size * len(times) / sum(times) / MB, 1),
            "overhead_bytes": len(sealed) - size,
            **summary_ms(times),
        }
    return figures


def _timed_writes(writer: RecordsWriter, kind: str, payloads: list[bytes]) -> dict[str, Any]:
    times = []
    for payload in payloads:
        began = time.perf_counter()
        writer.write(kind, payload, {"mime": "application/octet-stream"})
        times.append(time.perf_counter() - began)
    total = sum(times)
    return {
        "records_per_s": round(len(payloads) / total, 1),
        "MB_per_s": round(sum(map(len, payloads)) / total / MB, 2),
        **summary_ms(times),
    }


async def _upload(uploader: Uploader) -> tuple[float, int]:
    began = time.perf_counter()
    left = await uploader.once()
    if left:
        raise RuntimeError(f"{left} records were not uploaded")
    return time.perf_counter() - began, left


def run() -> dict[str, Any]:
    results: dict[str, Any] = {"seal": _seal_figures()}
    with tempfile.TemporaryDirectory(prefix="bench-records-") as tmp, DevHub(Path(tmp) / "hub") as hub:
        state = Path(tmp) / "booth"
        public = load_public_key(records_key_paths(hub.state)[1].read_bytes())
        writer = RecordsWriter(Spool(state / "records"), public, BOOTH)
        paths = hub.paths
        uploader = Uploader(
            UploaderConfig(state, hub.booth_url, paths.fleet_ca, paths.booth_cert(BOOTH), paths.booth_key(BOOTH))
        )
        stills = [os.urandom(2 * MB) for _ in range(SPOOLED_STILLS)]
        results["spool_write"] = {"still_2MB": _timed_writes(writer, "still", stills)}
        sealed_bytes = sum(record.size for record in writer.spool.pending())
        seconds, _ = asyncio.run(_upload(uploader))
        upload: dict[str, Any] = {
            "stills_2MB": {
                "records": SPOOLED_STILLS,
                "seconds": round(seconds, 3),
                "MB_per_s": round(sealed_bytes / seconds / MB, 1),
                "records_per_s": round(SPOOLED_STILLS / seconds, 1),
            }
        }
        small = [os.urandom(300) for _ in range(SMALL_RECORDS)]
        results["spool_write"]["reading_300B"] = _timed_writes(writer, "reading", small)
        seconds, _ = asyncio.run(_upload(uploader))
        upload["small_300B"] = {
            "records": SMALL_RECORDS,
            "seconds": round(seconds, 3),
            "records_per_s": round(SMALL_RECORDS / seconds, 1),
        }
        results["upload"] = upload
        key = load_private_key(records_key_paths(hub.state)[0].read_bytes())
        stored = sorted((hub.state / "records" / BOOTH).glob("*.rec"), key=lambda p: p.stat().st_size)[-5:]
        times = []
        for path in stored:
            data = path.read_bytes()
            began = time.perf_counter()
            open_record(data, key)
            times.append(time.perf_counter() - began)
        results["open_2MB"] = {"MB_per_s": round(2 * MB * len(times) / sum(times) / MB, 1), **summary_ms(times)}
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
