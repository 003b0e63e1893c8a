"""``kiosk-booth``: a booth's consultation service without its touchscreen.

    kiosk-booth --hub wss://localhost:8444/ws --fleet-ca fleet-ca.pem \\
                --cert booth-0001.pem --key booth-0001.key --emulate WORKDIR \\
                [--first-name Ana --age 42 --reason "sore throat"] [--turn URL --turn-secret S] [--relay-only]

    kiosk-booth --hub-state DIR --emulate WORKDIR      # development: paths from a ``kiosk-hub init --dev`` state
    kiosk-booth ... --peripherals /etc/kiosk/peripherals.toml      # real peripherals instead of emulators

It connects to the hub, announces the patient, and runs consultations on
emulated peripherals. Events go to stdout as JSON lines (``{"event": ...}``)
for scripts and tests; they carry no patient data (chat and files are
reported by size and digest only, measurements by name only; ``waiting``
gives the queue position and estimated minutes, ``link`` the hub link's
state). Standard input takes one command per line: ``stop`` (the patient's
STOP), ``chat TEXT``, ``file PATH``, ``end``, ``announce``, ``withdraw``,
``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import mimetypes
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from devices import config as peripheral_config
from kiosk.memory import limit_arenas
from kiosk.session import hardware
from kiosk.session.binding import FleetTrust, IdentityKey
from kiosk.session.consultation import (
    BoothCredentials,
    BoothSession,
    ChatEvent,
    CommandEvent,
    FileEvent,
    LinkEvent,
    MeasurementEvent,
    SessionEvent,
    StateEvent,
    VerifiedEvent,
    WaitingEvent,
    WaitingPatient,
)
from kiosk.session.emulated import EmulatedBooth, EmulationSettings, emulated_booth
from kiosk.session.hub_link import HubEndpoint
from kiosk.session.ice import IceConfig


def add_booth_arguments(parser: argparse.ArgumentParser) -> None:
    """The hub, the booth's fleet identity (read by :func:`credentials_from_args`) and its peripherals, emulated
    or real (read by :func:`booth_equipment`)."""
    parser.add_argument("--hub", help="the hub's booth listener, wss://host:port/ws")
    parser.add_argument("--hub-state", type=Path, help="development: take CA, certificate and key from a hub state")
    parser.add_argument("--booth-id", default="booth-0001")
    parser.add_argument("--fleet-ca", type=Path)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    equipment = parser.add_mutually_exclusive_group(required=True)
    equipment.add_argument("--emulate", type=Path, help="work directory of the emulated peripherals")
    equipment.add_argument(
        "--peripherals", type=Path, help="the real peripherals' configuration (e.g. /etc/kiosk/peripherals.toml)"
    )
    parser.add_argument("--verbose", action="store_true")


def booth_equipment(
    args: argparse.Namespace, settings: EmulationSettings | None = None
) -> contextlib.AbstractAsyncContextManager[EmulatedBooth]:
    """The booth's peripherals: the emulators under ``--emulate``, or the hardware ``--peripherals`` names."""
    if args.peripherals is not None:
        try:
            config = peripheral_config.load(args.peripherals)
            hardware.check(config)
        except peripheral_config.ConfigError as exc:
            raise SystemExit(f"{Path(sys.argv[0]).name}: {exc.message}") from exc
        return hardware.hardware_booth(config)
    return emulated_booth(args.emulate, settings)


def run_cli(run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace) -> int:
    """Log to stderr, run ``run(args)`` in a new event loop; 130 on Ctrl-C."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk-booth", description="Run a booth's consultation service.")
    add_booth_arguments(parser)
    parser.add_argument("--video-size", default="640x360", help="live video size, WxH")
    parser.add_argument("--fps", type=float, default=15)
    parser.add_argument(
        "--stamp-frames", action="store_true", help="draw the capture time into the booth camera's frames (benches)"
    )
    parser.add_argument("--first-name", default="Camille")
    parser.add_argument("--age", type=int, default=42)
    parser.add_argument("--reason", default="Consultation")
    parser.add_argument("--no-announce", action="store_true", help="wait for an 'announce' command")
    parser.add_argument("--stun", action="append", default=[])
    parser.add_argument("--turn", action="append", default=[])
    parser.add_argument("--turn-secret")
    parser.add_argument("--relay-only", action="store_true")
    return parser


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def describe(event: SessionEvent) -> None:
    """Print a session event without patient data."""
    if isinstance(event, StateEvent):
        emit("state", state=event.state.value, reason=event.reason)
    elif isinstance(event, VerifiedEvent):
        emit(
            "verified",
            sas_digits=event.sas.digits,
            sas_words=list(event.sas.words),
            doctor=event.doctor_account,
            srtp=event.srtp_profile,
        )
    elif isinstance(event, ChatEvent):
        emit("chat", length=len(event.text), from_doctor=event.from_doctor)
    elif isinstance(event, FileEvent):
        emit("file", size=len(event.data), sha256=hashlib.sha256(event.data).hexdigest(), from_doctor=event.from_doctor)
    elif isinstance(event, CommandEvent):
        emit(
            "command",
            command=event.command,
            phase=event.phase,
            detail=event.detail,
            device_seconds=event.device_seconds,
        )
    elif isinstance(event, WaitingEvent):
        emit("waiting", position=event.position, minutes=event.minutes)
    elif isinstance(event, LinkEvent):
        emit("link", connected=event.connected)
    elif isinstance(event, MeasurementEvent):
        emit("measurement", name=event.name)  # the name only: readings are patient data


def credentials_from_args(args: argparse.Namespace) -> tuple[HubEndpoint, BoothCredentials]:
    if args.hub_state is not None:
        root: Path = args.hub_state
        fleet_ca = args.fleet_ca or root / "fleet-ca.pem"
        cert = args.cert or root / "booths" / f"{args.booth_id}.pem"
        key = args.key or root / "booths" / f"{args.booth_id}.key"
    else:
        fleet_ca, cert, key = args.fleet_ca, args.cert, args.key
    if args.hub is None or fleet_ca is None or cert is None or key is None:
        raise SystemExit("kiosk-booth: give --hub and either --hub-state or --fleet-ca, --cert and --key")
    private_key = load_pem_private_key(Path(key).read_bytes(), password=None)
    if not isinstance(private_key, IdentityKey):
        raise SystemExit("kiosk-booth: the booth key must be an EC or Ed25519 key")
    endpoint = HubEndpoint(args.hub, Path(fleet_ca), Path(cert), Path(key))
    credentials = BoothCredentials(
        booth_id=args.booth_id,
        certificate_pem=Path(cert).read_text(),
        key=private_key,
        trust=FleetTrust(Path(fleet_ca).read_bytes()),
    )
    return endpoint, credentials


async def _commands(session: BoothSession, patient: WaitingPatient, done: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not done.is_set():
        line = (await reader.readline()).decode("utf-8", "replace")
        if not line:
            return  # stdin closed: keep running until a signal
        word, _, rest = line.strip().partition(" ")
        try:
            if word == "stop":
                await session.stop()
            elif word == "chat":
                await session.send_chat(rest)
            elif word == "file":
                path = Path(rest)
                mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                await session.send_file(path.name, mime, path.read_bytes())
            elif word == "end":
                await session.end()
            elif word == "announce":
                await session.announce(patient)
            elif word == "withdraw":
                await session.withdraw()
            elif word == "quit":
                done.set()
            elif word:
                emit("error", message=f"unknown command {word!r}")
        except (RuntimeError, OSError, ValueError) as exc:
            emit("error", message=str(exc)[:200])


async def run(args: argparse.Namespace) -> int:
    """Run until ``quit``, SIGINT or SIGTERM."""
    endpoint, credentials = credentials_from_args(args)
    width, _, height = args.video_size.partition("x")
    settings = EmulationSettings(stream_size=(int(width), int(height)), fps=args.fps, stamp_frames=args.stamp_frames)
    ice = IceConfig(
        stun_urls=tuple(args.stun),
        turn_urls=tuple(args.turn),
        turn_secret=args.turn_secret,
        turn_user=args.booth_id,
        relay_only=args.relay_only,
    )
    patient = WaitingPatient(args.first_name, args.age, args.reason)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    async with booth_equipment(args, settings) as booth:
        session = BoothSession(
            hub=endpoint, credentials=credentials, media=booth.media, peripherals=booth.peripherals, ice=ice
        )
        session.add_listener(describe)
        await session.start()
        try:
            await session.link.wait_connected(30)
            if not args.no_announce:
                await session.announce(patient)
            emit("ready", booth=credentials.booth_id)
            commands = asyncio.create_task(_commands(session, patient, done))
            await done.wait()
            commands.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await commands
        finally:
            await session.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kiosk-booth``."""
    limit_arenas()  # before any thread allocates: see kiosk.memory
    return run_cli(run, _parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
