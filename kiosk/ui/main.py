"""``kiosk-app``: the booth's patient app, assembled from its services.

:func:`emulated_stack` builds everything the screens need on emulated
:func:`emulated_stack` builds everything the screens need on emulated
peripherals (the demo, the tests and the benches use it too), :func:`booth_stack`
on any peripherals; :func:`main` runs the Kivy app on the emulated ones
(``--emulate``) or on the real ones (``--peripherals``). Under systemd
(kiosk-app.service) it sends READY=1 once the welcome screen is drawn and
WATCHDOG=1 from the loop Kivy runs on (:mod:`kiosk.sdnotify`). The booth's
state directory holds Kivy's home (no log files: patient screens must leave no
trace), the app's temporary directory, emptied at every wipe, and the sealed
records spool (``records/``, which the wipe leaves alone: the booth cannot read
it, ``kiosk-uploader`` empties it) and the booth's hash-chained audit log
(``audit/``, :mod:`kiosk.audit`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding

from kiosk.audit import AuditLog
from kiosk.audit.booth import BoothAudit
from kiosk.documents.intake import BoothPrescriptions, PrescriptionIntake, cups_printer
from kiosk.documents.printing import PrinterConfig
from kiosk.memory import limit_arenas
from kiosk.records.service import SealedRecords, open_records
from kiosk.sdnotify import Notifier
from kiosk.session.booth import add_booth_arguments, booth_equipment, credentials_from_args, run_cli
from kiosk.session.consultation import BoothCredentials, BoothSession
from kiosk.session.emulated import EmulatedBooth, EmulationSettings, emulated_booth
from kiosk.session.hub_link import HubEndpoint
from kiosk.session.ice import IceConfig
from kiosk.ui.booth_services import BoothSelfCheck, CallVideo, EspeakSpeaker, PcscCardService
from kiosk.ui.controller import Controller
from kiosk.ui.flow import FlowConfig, Step
from kiosk.ui.services import CardService, NoRecords, RecordsService, Services

if TYPE_CHECKING:
    from kiosk.ui.app import BoothApp

logger = logging.getLogger(__name__)
audit_logger = logging.getLogger("kiosk.audit")


@dataclass
class BoothStack:
    """A running booth: its controller and what the controller drives."""

    controller: Controller
    session: BoothSession
    booth: EmulatedBooth
    video: CallVideo
    audit: BoothAudit | None = None


def empty_directory(path: Path) -> None:
    """Delete everything inside ``path`` (the directory stays)."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                child.unlink()


def prepare_state(state: Path) -> Path:
    """Create the app's directories under ``state``; point Kivy and temporary files there. Returns the temp dir."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = state / "tmp"
    temp.mkdir(exist_ok=True, mode=0o700)
    empty_directory(temp)  # what a crash left behind
    os.environ["TMPDIR"] = str(temp)
    tempfile.tempdir = str(temp)  # tempfile caches its directory: set it even if something asked already
    os.environ.setdefault("KIVY_HOME", str(state / "kivy"))
    os.environ["KIVY_NO_FILELOG"] = "1"
    os.environ["KIVY_NO_ARGS"] = "1"
    return temp


def audit(event: str) -> None:
    """The flow's audit events (never patient data); the hash-chained audit trail takes them over later."""
    audit_logger.info("%s", event)


def emulated_stack(
    workdir: Path,
    *,
    hub: HubEndpoint,
    credentials: BoothCredentials,
    card: CardService,
    temp_dir: Path | None = None,
    flow_config: FlowConfig | None = None,
    settings: EmulationSettings | None = None,
    ice: IceConfig | None = None,
    speaker_ok: bool = True,
    records: RecordsService | None = None,
    audit_log: AuditLog | None = None,
    printer: PrinterConfig | None = None,
) -> contextlib.AbstractAsyncContextManager[BoothStack]:
    """A whole booth on emulated peripherals, connected to ``hub``; everything stops on exit."""
    return booth_stack(
        emulated_booth(workdir, settings),
        hub=hub,
        credentials=credentials,
        card=card,
        temp_dir=temp_dir,
        flow_config=flow_config,
        ice=ice,
        speaker_ok=speaker_ok,
        records=records,
        audit_log=audit_log,
        printer=printer,
    )


@contextlib.asynccontextmanager
async def booth_stack(
    equipment: contextlib.AbstractAsyncContextManager[EmulatedBooth],
    *,
    hub: HubEndpoint,
    credentials: BoothCredentials,
    card: CardService,
    temp_dir: Path | None = None,
    flow_config: FlowConfig | None = None,
    ice: IceConfig | None = None,
    speaker_ok: bool = True,
    records: RecordsService | None = None,
    audit_log: AuditLog | None = None,
    printer: PrinterConfig | None = None,
) -> AsyncIterator[BoothStack]:
    """A whole booth on ``equipment`` (emulated or real peripherals), connected to ``hub``; everything stops on exit.

    ``speaker_ok`` reports the sound output as working without probing it (emulated booths have none). With
    ``audit_log``, the flow's and the session's events go to it and its head to the hub.
    """
    async with equipment as booth:
        session = BoothSession(
            hub=hub, credentials=credentials, media=booth.media, peripherals=booth.peripherals, ice=ice
        )
        booth_audit: BoothAudit | None = None
        if audit_log is not None:
            booth_audit = BoothAudit(
                audit_log,
                send_head=lambda seq, digest: session.link.send("audit_head", seq=seq, hash=digest),
                consultation=lambda: session.call.session if session.call is not None else None,
            )
            session.add_listener(booth_audit.session_event)
        room = booth.cameras["room"]
        video = CallVideo(session, room)
        forget: Callable[[], None] = (lambda: empty_directory(temp_dir)) if temp_dir is not None else (lambda: None)
        services = Services(
            card=card,
            session=session,
            selfcheck=BoothSelfCheck(
                booth.peripherals,
                camera=room,
                microphone=booth.microphone,
                speaker_check=(lambda: (True, "emulated")) if speaker_ok else None,
            ),
            video=video,
            speaker=EspeakSpeaker(),
            audit=booth_audit.flow_event if booth_audit is not None else audit,
            forget=booth_audit.wrap_forget(forget) if booth_audit is not None else forget,
            records=records or NoRecords(),
            # Prescriptions are verified against the fleet root the booth already trusts, then printed if it can.
            prescriptions=BoothPrescriptions(
                PrescriptionIntake(
                    credentials.trust.root.public_bytes(Encoding.PEM),
                    cups_printer(printer) if printer else None,
                    audit=(lambda event, fields: booth_audit.record(event, **fields)) if booth_audit else None,
                )
            ),
            booth_id=credentials.booth_id,
        )
        controller = Controller(services, flow_config)
        await session.start()
        video.start()
        if booth_audit is not None:
            booth_audit.start()
        try:
            yield BoothStack(controller, session, booth, video, booth_audit)
        finally:
            if booth_audit is not None:
                await booth_audit.report_head()
            await video.stop()
            await session.close()
            if booth_audit is not None:
                await booth_audit.stop()  # last: the session's own ending is recorded before the stop


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk-app", description="Run the booth's patient app.")
    add_booth_arguments(parser)
    parser.add_argument("--state", type=Path, required=True, help="the booth's state directory")
    parser.add_argument("--fullscreen", action="store_true")
    parser.add_argument("--size", default="1280x800", help="window size, WxH")
    parser.add_argument("--language", default="fr", help="the language the welcome screen starts in")
    parser.add_argument("--staff-pin-hash", default="", help="from kiosk.ui.flow.hash_pin; empty disables staff mode")
    parser.add_argument("--cleaning-required", action="store_true", help="staff confirm cleaning between patients")
    parser.add_argument("--records-key", type=Path, help="the hub's records public key (default with --hub-state)")
    parser.add_argument("--printer", help="CUPS queue for prescriptions (none: verified, not printed)")
    parser.add_argument("--cups-server", help="host:port of the CUPS scheduler (default: the system's)")
    return parser


def records_from_args(args: argparse.Namespace) -> SealedRecords | None:
    """The sealed records service, from ``--records-key`` or ``<hub state>/records-pub.pem``; None without a key."""
    key: Path | None = args.records_key
    if key is None and args.hub_state is not None:
        key = args.hub_state / "records-pub.pem"
    if key is None or not key.exists():
        logger.warning("no records public key: this booth keeps no session records")
        return None
    return open_records(args.state, key, args.booth_id)


async def run(args: argparse.Namespace) -> int:
    temp = prepare_state(args.state)
    endpoint, credentials = credentials_from_args(args)
    width, _, height = args.size.partition("x")
    config = FlowConfig(
        staff_pin_hash=args.staff_pin_hash, cleaning_required=args.cleaning_required, default_language=args.language
    )
    printer = PrinterConfig(args.printer, server=args.cups_server) if args.printer else None
    notifier = Notifier()
    watchdog = asyncio.create_task(notifier.keep_alive())
    records = records_from_args(args)
    try:
        with AuditLog(args.state / "audit", source="booth") as audit_log:
            async with booth_stack(
                booth_equipment(args),
                hub=endpoint,
                credentials=credentials,
                card=PcscCardService(),
                temp_dir=temp,
                flow_config=config,
                speaker_ok=args.emulate is not None,
                records=records,
                audit_log=audit_log,
                printer=printer,
            ) as stack:
                if stack.audit is not None:
                    stack.audit.record_start(vars(args))
                await _run_until_closed(stack, notifier, fullscreen=args.fullscreen, size=(int(width), int(height)))
    finally:
        watchdog.cancel()
        notifier.close()
        if records is not None:
            records.close()  # what is queued is sealed before the process ends
    empty_directory(temp)
    return 0


async def _run_until_closed(stack: BoothStack, notifier: Notifier, *, fullscreen: bool, size: tuple[int, int]) -> None:
    """The app's window until it closes; READY=1 once the welcome screen is up, STOPPING=1 at the end."""
    from kiosk.ui.app import BoothApp, run_app  # imports Kivy: only after prepare_state set its environment

    app = BoothApp(stack.controller)
    ready = asyncio.create_task(_notify_ready(app, notifier))
    try:
        await run_app(stack.controller, fullscreen=fullscreen, size=size, app=app)
    finally:
        ready.cancel()
        notifier.stopping()


async def _notify_ready(app: BoothApp, notifier: Notifier, *, every: float = 60.0) -> None:
    """READY=1 once the welcome screen is drawn: until then kiosk-app.service is still starting.

    systemd's TimeoutStartSec decides how long is too long; meanwhile, every ``every`` seconds, the
    journal says what stands in the way (screen names and frame counts: nothing of a patient).
    """
    waited = 0.0
    while True:
        try:
            await app.wait_screen(Step.WELCOME.value, timeout=every)
        except TimeoutError:
            waited += every
            logger.warning("welcome screen not drawn after %.0f s: %s", waited, app.drawing_state())
            continue
        notifier.ready("welcome screen up")
        return


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kiosk-app``."""
    limit_arenas()  # before any thread allocates: see kiosk.memory
    return run_cli(run, _parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
