"""Audit: appends per second to the booth's hash-chained log, each entry fsynced before ``record`` returns.

A fresh :class:`kiosk.audit.AuditLog` in a temporary directory on the disk the
state would live on (not tmpfs: ``--dir`` picks it, default the system
temporary directory, whose filesystem type is reported). Each append is one
``write`` on an O_APPEND descriptor plus ``fsync``, then the head sidecar
replaced (write, ``fdatasync``, rename): two syncs per entry. The same entries
are also built without I/O (chain only: canonical JSON and SHA-256) and the
resulting file verified, so the figures show where the time goes.

    python -m bench.audit [--appends N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import summary_ms
from kiosk.audit import AuditLog, verify_directory
from kiosk.audit.chain import Head, make_entry

APPENDS = 1000
FIELDS: dict[str, object] = {
    "patient": "5f0c3a9e1b2d4c6f8a7e9d0b1c2a3f4e",
    "consultation": "0123456789abcdef0123456789abcdef",
    "command": "bp.start",
    "phase": "done",
    "detail": "",
}


def _filesystem(path: Path) -> str:
    try:
        out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def run(appends: int = APPENDS, directory: Path | None = None) -> dict[str, Any]:
    """Time ``appends`` fsynced appends, the same entries in memory, and verifying the file."""
    parent = directory or Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=parent) as work:
        log_dir = Path(work) / "audit"
        durations: list[float] = []
        with AuditLog(log_dir, source="booth", journal=None) as log:
            started = time.perf_counter()
            for _ in range(appends):
                before = time.perf_counter()
                log.record("peripheral_command", **FIELDS)
                durations.append(time.perf_counter() - before)
            elapsed = time.perf_counter() - started
        size = (log_dir / "audit.log").stat().st_size
        began = time.perf_counter()
        verdict = verify_directory(log_dir)
        verify_seconds = time.perf_counter() - began
        assert verdict.ok and verdict.entries == appends + 1

        head: Head | None = None
        now = datetime.datetime.now(datetime.UTC)
        began = time.perf_counter()
        for _ in range(appends):
            entry, _line = make_entry(head, "peripheral_command", FIELDS, now)
            head = entry.head
        chain_seconds = time.perf_counter() - began
        fs = _filesystem(Path(work))
    return {
        "appends": appends,
        "filesystem": fs,
        "appends_per_second": round(appends / elapsed, 1),
        "append_latency": summary_ms(durations),
        "bytes_per_entry": round(size / (appends + 1), 1),
        "chain_only_entries_per_second": round(appends / chain_seconds, 1),
        "verify_entries_per_second": round((appends + 1) / verify_seconds, 1),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=APPENDS)
    parser.add_argument("--dir", type=Path, help="where the temporary log goes (default: the system temp dir)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.appends, args.dir), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
