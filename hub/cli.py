"""``kiosk-hub``: create a development state, serve, mint booth certificates.

    kiosk-hub init --dev --state DIR [--force]
    kiosk-hub serve --state DIR [--host H] [--port P] [--booth-port Q] [--config FILE.toml]
    kiosk-hub add-booth --state DIR --id booth-0002

``serve`` prints one line ``ready doctor=https://H:P booth=wss://H:Q`` once
both listeners accept connections; scripts and tests wait for it. Under
systemd (``kiosk-hub.service``) it also sends READY=1 then WATCHDOG=1 from its
event loop (:mod:`kiosk.sdnotify`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import signal
import sys
from pathlib import Path

from hub import pki
from hub.app import StateError, StatePaths, init_dev_state, start
from hub.config import ConfigError, load_config
from kiosk.sdnotify import Notifier


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk-hub", description="Teleconsultation hub: signalling and accounts.")
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create a state directory")
    init.add_argument("--dev", action="store_true", required=True, help="development setup (demo CA, booth, doctor)")
    init.add_argument("--state", type=Path, required=True)
    init.add_argument("--force", action="store_true", help="replace an existing state")
    serve = commands.add_parser("serve", help="serve doctors (HTTPS) and booths (mutual TLS)")
    serve.add_argument("--state", type=Path)
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.add_argument("--host", help="address of both listeners (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="doctor HTTPS port")
    serve.add_argument("--booth-port", type=int, help="booth mutual-TLS port")
    booth = commands.add_parser("add-booth", help="mint a booth certificate and key with the fleet CA")
    booth.add_argument("--state", type=Path, required=True)
    booth.add_argument("--id", required=True, help="booth id, e.g. booth-0002")
    return parser


def _init(args: argparse.Namespace) -> int:
    try:
        credentials = init_dev_state(args.state, force=args.force)
    except StateError as exc:
        print(f"kiosk-hub: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"state": str(args.state), **credentials}, indent=2))
    return 0


def _add_booth(args: argparse.Namespace) -> int:
    paths = StatePaths(args.state)
    if paths.booth_cert(args.id).exists():
        print(f"kiosk-hub: {args.id} already has a certificate", file=sys.stderr)
        return 1
    try:
        fleet = pki.load_issuer(paths.fleet_ca, paths.fleet_ca_key)
        key = pki.new_key()
        cert = pki.issue_booth_certificate(fleet, key.public_key(), args.id, now=datetime.datetime.now(datetime.UTC))
    except pki.PkiError as exc:
        print(f"kiosk-hub: {exc}", file=sys.stderr)
        return 1
    pki.save_certificate(paths.booth_cert(args.id), cert)
    pki.save_key(paths.booth_key(args.id), key)
    print(json.dumps({"booth": args.id, "certificate": str(paths.booth_cert(args.id))}))
    return 0


async def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(
            args.config,
            state=args.state,
            host=args.host,
            booth_host=args.host,
            port=args.port,
            booth_port=args.booth_port,
        )
        hub = await start(config)
    except (ConfigError, StateError, pki.PkiError, OSError) as exc:
        print(f"kiosk-hub: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    host = f"[{config.host}]" if ":" in config.host else config.host
    booth_host = f"[{config.booth_host}]" if ":" in config.booth_host else config.booth_host
    print(f"ready doctor=https://{host}:{hub.doctor_port} booth=wss://{booth_host}:{hub.booth_port}", flush=True)
    # Under systemd (kiosk-hub.service, Type=notify): ready now, then pings from this loop for the watchdog.
    notifier = Notifier()
    notifier.ready(f"doctors on port {hub.doctor_port}, booths on port {hub.booth_port}")
    watchdog = asyncio.create_task(notifier.keep_alive())
    try:
        await stop.wait()
    finally:
        notifier.stopping()
        watchdog.cancel()
        await hub.stop()
        notifier.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kiosk-hub``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "init":
        return _init(args)
    if args.command == "add-booth":
        return _add_booth(args)
    if args.state is None and args.config is None:
        print("kiosk-hub: serve needs --state or a --config that sets it", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
