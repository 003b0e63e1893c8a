"""``kiosk records ...``: the records spool seen from the booth (counts and sizes only; it cannot open them).

    kiosk records status --state DIR      {"pending": N, "pending_bytes": B, "oldest_age_s": S, "rejected": R}

Plugged into the ``kiosk`` command through :func:`add_commands` (see ``kiosk/cli.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kiosk.records.seal import RecordError, parse_header
from kiosk.records.spool import Spool


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``records status`` to the ``kiosk`` command."""
    records = subparsers.add_parser("records", help="the sealed records spool")
    commands = records.add_subparsers(dest="records_command", required=True)
    status = commands.add_parser("status", help="what waits for upload (JSON)")
    status.add_argument("--state", type=Path, required=True, help="the booth's state directory")
    status.set_defaults(func=status_command)


def spool_status(state: Path, *, now: float | None = None) -> dict[str, object]:
    """Counts, bytes and the oldest record's age, from the files and their clear headers."""
    spool = Spool(state / "records")
    pending = spool.pending()
    oldest_ms: int | None = None
    kinds: dict[str, int] = {}
    for record in pending:
        try:
            with record.path.open("rb") as handle:
                header, _ = parse_header(handle.read(512))
        except (OSError, RecordError):
            continue
        kinds[header.kind] = kinds.get(header.kind, 0) + 1
        oldest_ms = header.created_ms if oldest_ms is None else min(oldest_ms, header.created_ms)
    current = time.time() if now is None else now
    return {
        "pending": len(pending),
        "pending_bytes": sum(record.size for record in pending),
        "kinds": kinds,
        "oldest_age_s": None if oldest_ms is None else round(max(0.0, current - oldest_ms / 1000), 1),
        "rejected": len(spool.rejected()),
    }


def status_command(args: argparse.Namespace) -> int:
    try:
        print(json.dumps(spool_status(args.state)))
    except RecordError as exc:
        print(f"kiosk records: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m kiosk.records.cli status --state DIR`` until the ``kiosk`` command carries it."""
    parser = argparse.ArgumentParser(prog="kiosk")
    add_commands(parser.add_subparsers(dest="command", required=True))
    parser_args = parser.parse_args(["records", *(argv if argv is not None else sys.argv[1:])])
    return int(parser_args.func(parser_args))


if __name__ == "__main__":
    raise SystemExit(main())
