"""``kiosk audit``: check the booth's audit chain.

    kiosk audit verify --state DIR [--anchors FILE]   exit 0 intact, 1 broken (one line says where), 2 unusable
    kiosk audit head --state DIR                      the chain's last entry, as JSON

``--anchors`` takes what ``kiosk-hub audit heads --booth ID`` prints: the heads
this booth sent the hub. They catch what the booth's files alone cannot show
(whole entries cut from the end, or the whole log and its sidecar replaced).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kiosk.audit.chain import ChainError, Head, parse_anchors
from kiosk.audit.log import read_head, verify_directory


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``audit`` command group of ``kiosk``."""
    audit = subparsers.add_parser("audit", help="the booth's hash-chained audit trail")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = commands.add_parser("verify", help="check the chain; exit 0 when intact")
    verify.add_argument("--state", type=Path, required=True, help="the booth's state directory")
    verify.add_argument("--anchors", type=Path, help="JSON heads from `kiosk-hub audit heads`")
    verify.set_defaults(func=_verify)
    head = commands.add_parser("head", help="print the chain's head as JSON")
    head.add_argument("--state", type=Path, required=True)
    head.set_defaults(func=_head)


def run_verify(directory: Path, anchors_file: Path | None, *, prog: str) -> int:
    """Verify the chain in ``directory`` and print one line; the exit status (0, 1 broken, 2 unusable)."""
    anchors: list[Head] = []
    try:
        if anchors_file is not None:
            anchors = parse_anchors(json.loads(anchors_file.read_text()))
        verdict = verify_directory(directory, anchors)
    except (OSError, ValueError, ChainError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if verdict.problem is not None:
        print(f"{prog}: audit chain BROKEN: {verdict.problem.describe()}", file=sys.stderr)
        return 1
    head = verdict.head
    anchored = f", {len(anchors)} anchor(s) matched" if anchors else ""
    where = f"head seq {head.seq} hash {head.hash}" if head else "empty"
    print(f"audit chain intact: {verdict.entries} entries, {where}{anchored}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    return run_verify(args.state / "audit", args.anchors, prog="kiosk audit verify")


def _head(args: argparse.Namespace) -> int:
    try:
        head = read_head(args.state / "audit")
    except ChainError as exc:
        print(f"kiosk audit head: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(head.to_json() if head else None))
    return 0
