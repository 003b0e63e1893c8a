"""``kiosk-provision``: apply a booth configuration to this system or to a root filesystem.

    kiosk-provision --config FILE [--root DIR] [--dry-run | --check] [--only a,b] [--json]

Without ``--dry-run`` or ``--check`` the pending changes are applied. With
``--dry-run`` they are listed and nothing changes. With ``--check`` they are
listed as drift and the exit status is 1 when there is any.

Exit status: 0 done (or no drift), 1 drift (``--check``), 2 bad configuration
or arguments, 3 a change failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from provisioning import core, steps
from provisioning.config import load_config
from provisioning.errors import ApplyError, ConfigError, TargetError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk-provision", description="Turn this Debian 12 system (or a root filesystem) into a hardened booth."
    )
    parser.add_argument("--config", type=Path, required=True, help="booth configuration (TOML)")
    parser.add_argument("--root", type=Path, default=Path("/"), help="root filesystem to provision (default /)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="list the changes, change nothing")
    mode.add_argument("--check", action="store_true", help="exit 1 when anything has drifted, listing it")
    parser.add_argument("--only", help="comma-separated steps to run (default: all, in order)")
    parser.add_argument("--json", action="store_true", help="one JSON document on standard output")
    parser.add_argument("--verbose", action="store_true", help="log each command run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    mode = "check" if args.check else "dry-run" if args.dry_run else "apply"
    try:
        config = load_config(args.config)
        selected = steps.by_name([name.strip() for name in args.only.split(",")] if args.only else None)
        target = core.Target(args.root)
    except ConfigError as exc:
        return _fail(args, mode, 2, f"configuration: {exc}")
    except KeyError as exc:
        return _fail(args, mode, 2, f"unknown step {exc.args[0]!r}; known: {', '.join(s.name for s in steps.STEPS)}")
    except TargetError as exc:
        return _fail(args, mode, 2, str(exc))
    started = time.monotonic()
    try:
        if mode == "apply":
            on_change = None if args.json else (lambda pending: print(f"applied {pending.describe()}", flush=True))
            changes = core.apply(selected, config, target, on_change=on_change)
        else:
            changes = core.plan(selected, config, target)
    except ConfigError as exc:
        return _fail(args, mode, 2, f"configuration: {exc}")
    except (ApplyError, TargetError) as exc:
        return _fail(args, mode, 3, str(exc))
    status = 1 if mode == "check" and changes else 0
    if args.json:
        document = {
            "mode": mode,
            "root": str(target.root),
            "steps": [step.name for step in selected],
            "changes": [{"step": p.step, "change": p.change.describe()} for p in changes],
            "drift": bool(changes) if mode == "check" else None,
            "seconds": round(time.monotonic() - started, 2),
            "ok": status == 0,
        }
        print(json.dumps(document, indent=2))
    elif mode != "apply":
        label = "drift" if mode == "check" else "would apply"
        for pending in changes:
            print(f"{label} {pending.describe()}")
        print(f"{len(changes)} change(s) {'drifted' if mode == 'check' else 'pending'}")
    else:
        print(f"{len(changes)} change(s) applied")
    return status


def _fail(args: argparse.Namespace, mode: str, status: int, message: str) -> int:
    if args.json:
        print(json.dumps({"mode": mode, "ok": False, "error": message}, indent=2))
    print(f"kiosk-provision: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
