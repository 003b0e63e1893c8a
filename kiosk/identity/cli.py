"""``kiosk-card``: read a card, or run a virtual card.

``kiosk-card read [--reader NAME] [--timeout S] [--json]`` waits for a card in
any reader (or NAME), reads it and prints ``{"beneficiaries": [...]}`` with
``--json`` (NIR in clear: the caller asked for the card's data), else a short
text with the NIR masked. A card that cannot be read gives one line on stderr
(``error: <reason>: <message>``) and the exit code of :data:`EXIT_CODES`.

``kiosk-card emulate CARD [--vpcd HOST:PORT] [--identity FILE.json]
[--insert-after S] [--remove-after S]`` plugs a virtual card into vpcd and runs
until killed, printing one line when connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence

from .errors import CardError, Reason

EXIT_CODES: dict[Reason, int] = {
    Reason.NO_READER: 3,
    Reason.NO_CARD: 4,
    Reason.REMOVED: 5,
    Reason.MUTE: 6,
    Reason.NOT_VITALE: 7,
    Reason.UNREADABLE: 8,
    Reason.TIMEOUT: 9,
    Reason.PCSC: 10,
}
"""Exit status per failure reason (1 is any other failure, 2 a usage error)."""


def _parser() -> argparse.ArgumentParser:
    from .virtual.cards import CARD_KINDS

    p = argparse.ArgumentParser(prog="kiosk-card", description="Read a Carte Vitale, or emulate a test card.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("read", help="wait for a card and print its beneficiaries")
    r.add_argument("--reader", help="only this reader (default: any)")
    r.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a card, and to read it")
    r.add_argument("--json", action="store_true", help="JSON output (NIR unmasked)")
    e = sub.add_parser("emulate", help="run a virtual card on vpcd")
    e.add_argument("card", choices=CARD_KINDS)
    e.add_argument("--vpcd", default="127.0.0.1:35963", metavar="HOST:PORT")
    e.add_argument("--identity", metavar="FILE.json", help="beneficiaries (surname, first_name, birth_date, nir)")
    e.add_argument("--insert-after", type=float, default=0.0, metavar="S")
    e.add_argument("--remove-after", type=float, default=None, metavar="S")
    return p


async def _read(args: argparse.Namespace) -> int:
    from .pcsc import PcscMonitor, read_card

    async with PcscMonitor() as monitor:
        if not monitor.available:
            raise CardError(reason=Reason.PCSC)
        result = await read_card(monitor, reader=args.reader, timeout=args.timeout)
    ident = result.identity
    if args.json:
        out = ident.to_json(reveal=True)
        out["reader"] = result.reader
        print(json.dumps(out, ensure_ascii=False))
    else:
        for i, b in enumerate(ident.beneficiaries, 1):
            birth = b.birth_date.isoformat() if b.birth_date else "?"
            print(f"{i}. {b.surname} {b.first_name}, born {birth}, NIR {b.nir.masked()}")
        if ident.inaccessible_files:
            print(f"not accessible: {', '.join(ident.inaccessible_files)}")
    return 0


async def _emulate(args: argparse.Namespace) -> int:
    from .virtual.cards import load_identity, make_card
    from .virtual.vpcd import VirtualCardRunner

    host, _, port = args.vpcd.rpartition(":")
    identity = load_identity(args.identity) if args.identity else None
    runner = VirtualCardRunner(make_card(args.card, identity), host or "127.0.0.1", int(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def lifecycle() -> None:
        await asyncio.sleep(args.insert_after)
        while True:
            await runner.insert(timeout=30.0)
            print(f"connected {args.card} to vpcd {runner.host}:{runner.port}", flush=True)
            if args.remove_after is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(runner.wait_removed(), args.remove_after)
                await runner.remove()
                print("removed", flush=True)
                await stop.wait()
                return
            await runner.wait_removed()
            print("disconnected; reconnecting", flush=True)
            await asyncio.sleep(1.0)

    task = asyncio.create_task(lifecycle())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for t in (task, stopper):
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    await runner.remove()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kiosk-card``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "read":
            return asyncio.run(_read(args))
        return asyncio.run(_emulate(args))
    except CardError as exc:
        print(f"error: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return EXIT_CODES[exc.reason]
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        # Only our own messages and OS errors here: no card data reaches them.
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Never a traceback at the booth; the type name carries no card data.
        print(f"error: internal: {type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
