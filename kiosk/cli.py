"""``kiosk``: the booth's maintenance commands, one group per subsystem.

    kiosk audit verify --state DIR [--anchors FILE]

Each group lives in its own module exposing
``add_commands(subparsers: argparse._SubParsersAction) -> None``; its
subcommands set ``func(args) -> int``, the exit status. A group whose module
is not installed is left out, so subsystems can land one at a time.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Final

COMMAND_MODULES: Final = ("kiosk.audit.cli", "kiosk.records.cli")


def parser() -> argparse.ArgumentParser:
    """The ``kiosk`` parser with every available command group."""
    root = argparse.ArgumentParser(prog="kiosk", description="Teleconsultation booth: maintenance commands.")
    subparsers = root.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that group is not part of this installation
            raise
        module.add_commands(subparsers)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kiosk``."""
    args = parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
