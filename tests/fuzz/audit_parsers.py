"""Coverage-guided fuzzing (atheris) of the audit chain's parser and verifier.

    python -m tests.fuzz.audit_parsers TARGET [libFuzzer options, e.g. -max_total_time=5] [CORPUS_DIR]

TARGET: line (one entry line), chain (a whole log file, with anchors). Only the
parser's own error (LineError) may escape ``parse_line``; ``verify`` must never
raise, and whatever it accepts must re-verify to the same head. An empty
corpus directory is first seeded with a real chain.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from kiosk.audit.chain import Head, LineError, make_entry, parse_line, verify

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)


def _chain(count: int) -> bytes:
    head: Head | None = None
    out = b""
    for index in range(count):
        entry, line = make_entry(head, "peripheral_command", {"command": "bp.start", "ref": index, "ok": True}, NOW)
        head = entry.head
        out += line
    return out


def line_target(data: bytes) -> None:
    try:
        entry = parse_line(data)
    except LineError:
        return
    # Accepted: the line is the canonical form of an entry whose hash is right.
    _, again = make_entry(None if entry.seq == 1 else Head(entry.seq - 1, entry.prev), entry.event, entry.fields, NOW)
    assert parse_line(again.rstrip(b"\n")).event == entry.event


def chain_target(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    anchors = [
        Head(provider.ConsumeIntInRange(1, 40), provider.ConsumeBytes(32).hex().ljust(64, "0"))
        for _ in range(provider.ConsumeIntInRange(0, 3))
    ]
    body = provider.ConsumeBytes(provider.remaining_bytes())
    verdict = verify(body, anchors)
    if verdict.ok:
        assert verify(body).ok
        assert verdict.head is None or all(anchor.seq <= verdict.head.seq for anchor in anchors)


def seeds(name: str) -> list[bytes]:
    """Valid inputs for ``name``: where mutation starts."""
    chain = _chain(5)
    if name == "line":
        return chain.splitlines()
    return [b"\x00" + chain]


TARGETS: dict[str, Callable[[bytes], None]] = {"line": line_target, "chain": chain_target}


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in TARGETS:
        sys.exit(f"target must be one of: {', '.join(TARGETS)}")
    for argument in sys.argv[2:]:
        corpus = Path(argument)
        if not argument.startswith("-") and corpus.is_dir() and not any(corpus.iterdir()):
            for index, seed in enumerate(seeds(name)):
                (corpus / f"seed-{index}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
