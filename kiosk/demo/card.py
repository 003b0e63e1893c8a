"""The demo's virtual Carte Vitale, in a private pcscd's virtual reader.

A private pcscd (:mod:`kiosk.identity.virtual.pcscd`) runs the vpcd driver under the demo's work
directory; the card is the project's vpcd client (:class:`kiosk.identity.virtual.vpcd.VirtualCardRunner`),
and the booth reads it through pyscard as it would a real reader. ``DEMO_CARD=FILE`` (JSON: surname,
first_name, birth_date, nir; see :func:`kiosk.identity.virtual.cards.parse_identity`) replaces the synthetic
family card's identity with a single-holder Vitale card. The file is checked before anything starts, and
its content never reaches a log.

    with DemoCard(Path("demo-out/pcscd"), identity=DemoCard.identity_from_env()) as card:
        os.environ.update(card.client_environment)   # for a booth process started later
        await card.insert()
        ...
        await card.remove()

pyscard in *this* process talks to the private daemon as long as the context is open
(``PCSCLITE_CSOCK_NAME``, which libpcsclite reads once per process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Self

from kiosk.identity.errors import CardError
from kiosk.identity.virtual import cards, pcscd
from kiosk.identity.virtual.cards import (
    IdentityFileError,
    IdentityFileReason,
    SyntheticPerson,
    load_identity,
    make_card,
)
from kiosk.identity.virtual.vpcd import VirtualCardRunner

__all__ = ["DEMO_CARD_ENV", "DemoCard", "DemoCardError", "IdentityFileError", "IdentityFileReason"]

logger = logging.getLogger(__name__)

DEMO_CARD_ENV: Final = "DEMO_CARD"


class DemoCardError(Exception):
    """The virtual card or its private pcscd could not be started, inserted or removed."""


class DemoCard:
    """A private pcscd under ``workdir`` and one virtual Carte Vitale for its first reader.

    ``identity``: the beneficiaries (:meth:`identity_from_env` / :func:`load_identity`); None gives the
    synthetic family card (one parent, two children). ``slot`` 0 or 1: which of vpcd's two readers.
    """

    def __init__(self, workdir: Path, identity: list[SyntheticPerson] | None = None, *, slot: int = 0) -> None:
        if slot not in (0, 1):
            raise ValueError("vpcd has slots 0 and 1")
        self.workdir = workdir
        self.identity = identity
        self.slot = slot
        self.daemon: pcscd.PrivatePcscd | None = None
        self._runner: VirtualCardRunner | None = None
        self._stack: contextlib.ExitStack | None = None

    @staticmethod
    def identity_from_env(environ: Mapping[str, str] | None = None) -> list[SyntheticPerson] | None:
        """The beneficiaries of the ``DEMO_CARD`` file, or None when it is not set.

        Raises :class:`IdentityFileError` (with a ``reason``) on an unreadable or invalid file.
        """
        path = (os.environ if environ is None else environ).get(DEMO_CARD_ENV, "").strip()
        return load_identity(path) if path else None

    @property
    def kind(self) -> str:
        """``vitale`` with a DEMO_CARD identity (its holders), ``family`` for the synthetic family."""
        return "vitale" if self.identity else "family"

    @property
    def beneficiaries(self) -> int:
        return len(self.identity) if self.identity else 3

    @property
    def reader_name(self) -> str:
        """The pcscd name of the reader the card goes into."""
        return self._daemon().reader_names[self.slot]

    @property
    def client_environment(self) -> dict[str, str]:
        """What another process needs to use this pcscd (its client socket)."""
        return {pcscd.SOCKET_ENV: str(self._daemon().socket_path)}

    @property
    def inserted(self) -> bool:
        return self._runner is not None and self._runner.inserted

    @property
    def inserted_at(self) -> float | None:
        """``time.monotonic()`` of the last insertion (vpcd accepted the card), or None."""
        return self._runner.inserted_at if self._runner is not None else None

    def _daemon(self) -> pcscd.PrivatePcscd:
        if self.daemon is None:
            raise DemoCardError("the private pcscd is not running (use DemoCard as a context manager)")
        return self.daemon

    def start(self) -> Self:
        """Start the private pcscd (this process's PC/SC clients are pointed at it until :meth:`stop`)."""
        if self.daemon is not None:
            return self
        missing = pcscd.available()
        if missing:
            raise DemoCardError(missing)
        stack = contextlib.ExitStack()
        try:
            self.daemon = stack.enter_context(pcscd.private_pcscd(self.workdir))
        except (OSError, RuntimeError) as exc:
            stack.close()
            raise DemoCardError(f"the private pcscd did not start: {exc}") from exc
        self._stack = stack
        logger.info("private pcscd with vpcd on port %d", self.daemon.port)
        return self

    def stop(self) -> None:
        """Stop pcscd (a card still inserted is disconnected by it)."""
        stack, self._stack = self._stack, None
        self.daemon = None
        if stack is not None:
            stack.close()

    async def insert(self, timeout: float = 5.0) -> None:
        """Put the card in the reader (a fresh card each time: its files as issued)."""
        daemon = self._daemon()
        if self.inserted:
            raise DemoCardError("the card is already inserted")
        self._runner = VirtualCardRunner(make_card(self.kind, self.identity), port=daemon.port + self.slot)
        try:
            await self._runner.insert(timeout=timeout)
        except (OSError, TimeoutError) as exc:
            self._runner = None
            raise DemoCardError(f"vpcd did not take the card: {exc.__class__.__name__}") from exc
        logger.info("virtual card (%s) inserted in slot %d", self.kind, self.slot)

    async def remove(self) -> None:
        """Pull the card out (nothing happens when none is in)."""
        runner = self._runner
        if runner is not None and runner.inserted:
            await runner.remove()
            logger.info("virtual card removed from slot %d", self.slot)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def expected(self) -> list[SyntheticPerson]:
        """Who the card holds, in card order."""
        return list(self.identity) if self.identity else [cards.PARENT, cards.CHILD_1, cards.CHILD_2]


async def read_back(card: DemoCard, timeout: float = 10.0) -> dict[str, Any]:
    """Insert the card, read it through pyscard (:func:`kiosk.identity.pcsc.read_card`) and remove it.

    The figures, no identity: reader, kind, beneficiaries, ``identity_matches`` (every field read equals
    what the card was built from), ``insertion_to_identity_ms``. Raises :class:`CardError` from the read.
    """
    from kiosk.identity.pcsc import PcscMonitor, read_card

    async with PcscMonitor(poll_timeout=0.2) as monitor:
        pending = asyncio.create_task(read_card(monitor, reader=card.reader_name, timeout=timeout))
        try:
            await card.insert()
            result = await pending
        finally:
            pending.cancel()
            await card.remove()
    read = [(b.surname, b.first_name, b.birth_date, b.nir.reveal()) for b in result.identity.beneficiaries]
    built = [(p.surname, p.first_name, p.birth_date, p.nir) for p in card.expected()]
    inserted_at = card.inserted_at or result.inserted_at
    return {
        "reader": result.reader,
        "kind": card.kind,
        "beneficiaries": len(read),
        "identity_matches": read == built,
        "insertion_to_identity_ms": round((result.identity_at - inserted_at) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m kiosk.demo.card --workdir DIR``: the demo card inserted and read back once; JSON out.

    Exit status 0 when the identity read is the one the card was built from, 1 otherwise, 2 when the
    DEMO_CARD file is refused or the card reader stack cannot start.
    """
    parser = argparse.ArgumentParser(prog="python -m kiosk.demo.card", description=main.__doc__)
    parser.add_argument("--workdir", type=Path, required=True, help="the private pcscd's directory")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        identity = DemoCard.identity_from_env()
    except IdentityFileError as exc:
        print(json.dumps({"ok": False, "error": exc.reason.value, "detail": str(exc)}))
        print(f"{DEMO_CARD_ENV}: {exc}", file=sys.stderr)
        return 2
    try:
        with DemoCard(args.workdir, identity) as card:
            report = asyncio.run(read_back(card, args.timeout))
    except DemoCardError as exc:
        print(json.dumps({"ok": False, "error": "pcscd", "detail": str(exc)}))
        return 2
    except CardError as exc:
        print(json.dumps({"ok": False, "error": exc.reason.value, "detail": str(exc)}))
        return 1
    print(json.dumps({"ok": report["identity_matches"], **report}))
    return 0 if report["identity_matches"] else 1


if __name__ == "__main__":
    sys.exit(main())
