"""``make demo``: the whole product on one machine.

A development hub (its own PKI, SQLite), the booth on emulated peripherals
running the real patient app (in a window when there is a display, under Xvfb
otherwise), a virtual Carte Vitale in a private pcscd inserted when the app
asks for it, and a doctor:

- scripted (no display, or ``--scripted``): a patient script touches the booth's
  screen while a doctor in headless Chromium runs the whole consultation in the
  real console: accept, SAS, oximeter, blood pressure, temperature, otoscope
  still, chat, end. Screenshots of both sides at each step, then
  ``summary.json``; the exit status is non-zero when a step failed.
- a person (a display and no ``--scripted``): the console URL and development
  credentials are printed; the card goes in when the booth asks for it.

State lives under ``OUT/state/hub`` and ``OUT/state/booth``. ``DEMO_CARD=FILE``
replaces the synthetic family on the card. Nothing here prints or logs patient
data; the summary holds the readings the doctor received (synthetic patients).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.records import ensure_records_key
from kiosk.audit import AuditLog
from kiosk.demo.browser import has_display, home_with_ca, launch_chromium
from kiosk.demo.card import DemoCard
from kiosk.demo.display import virtual_display
from kiosk.demo.hub import DevHub
from kiosk.identity.pcsc import PcscMonitor
from kiosk.identity.virtual.cards import SyntheticPerson
from kiosk.memory import limit_arenas
from kiosk.records.service import open_records
from kiosk.records.uploader import Uploader, UploaderConfig
from kiosk.session.booth import credentials_from_args
from kiosk.session.emulated import EmulationSettings
from kiosk.ui import flow as f
from kiosk.ui.booth_services import PcscCardService
from kiosk.ui.main import BoothStack, emulated_stack, prepare_state

if TYPE_CHECKING:
    from kiosk.demo.doctor import ScriptedDoctor
    from kiosk.ui.app import BoothApp

logger = logging.getLogger("kiosk.demo")

SCREEN = (1280, 800)
CHAT_FROM_DOCTOR = "Bonjour, je suis le médecin de la démonstration."
CHAT_FROM_PATIENT = "Bonjour docteur"


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    error: str = ""


@dataclass
class Summary:
    ok: bool = False
    sas_booth: str = ""
    sas_doctor: str = ""
    srtp_cipher: str | None = None
    readings: dict[str, float | None] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    console_url: str = ""
    screenshots: list[str] = field(default_factory=list)


class DemoFailed(Exception):
    """A step failed; the summary says which."""


class Recorder:
    """Runs named steps, times them and takes both sides' screenshots after each."""

    def __init__(self, out: Path, summary: Summary) -> None:
        self.out = out
        self.summary = summary
        self.app: BoothApp | None = None
        self.doctor: ScriptedDoctor | None = None
        self._shots = 0

    async def step(self, name: str, body: Callable[[], Awaitable[object]]) -> None:
        started = time.monotonic()
        print(f"  {name} ...", end="", flush=True)
        try:
            await body()
        except Exception as exc:
            seconds = time.monotonic() - started
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.summary.steps.append(StepResult(name, False, round(seconds, 2), error))
            print(f" FAILED after {seconds:.1f} s: {error}", flush=True)
            with contextlib.suppress(Exception):
                await self.shoot(f"{name}-failed")
            raise DemoFailed(name) from exc
        seconds = time.monotonic() - started
        self.summary.steps.append(StepResult(name, True, round(seconds, 2)))
        print(f" ok ({seconds:.1f} s)", flush=True)
        await self.shoot(name)

    async def shoot(self, name: str) -> None:
        self._shots += 1
        stem = f"{self._shots:02d}-{name}"
        if self.app is not None:
            await self.app.settle()
            path = self.app.screenshot(self.out / f"booth-{stem}.png")
            self.summary.screenshots.append(path.name)
        if self.doctor is not None:
            path = await self.doctor.screenshot(self.out / f"console-{stem}.png")
            self.summary.screenshots.append(path.name)


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        await asyncio.sleep(0.05)


async def insert_when_asked(stack: BoothStack, card: DemoCard) -> None:
    """The "right moment": the card goes in each time the booth shows the identification screen."""
    controller = stack.controller
    while True:
        await wait_for(lambda: controller.screen == "identification", 1e9, "the identification screen")
        await asyncio.sleep(1.5)  # the patient reads the instruction, then inserts the card
        if controller.screen == "identification" and not card.inserted:
            await card.insert()
        await wait_for(lambda: controller.step is not f.Step.IDENTIFICATION, 1e9, "identification to end")
        await wait_for(lambda: controller.step is f.Step.WELCOME, 1e9, "the next patient")
        await card.remove()


async def scripted_consultation(
    stack: BoothStack, app: BoothApp, card: DemoCard, hub: DevHub, out: Path, summary: Summary, headless: bool
) -> None:
    from kiosk.demo.doctor import ScriptedDoctor

    controller = stack.controller
    recorder = Recorder(out, summary)
    recorder.app = app
    people = card.expected()
    patient = people[0]
    home = home_with_ca(out / "state" / "chromium", hub.paths.fleet_ca)
    async with launch_chromium(home, headless=headless) as browser:
        doctor = await ScriptedDoctor.open(browser, hub.origin, hub.doctor)
        try:
            await _script(controller, app, card, doctor, recorder, summary, patient)
        finally:
            await doctor.close()


async def _script(
    controller: Any,
    app: BoothApp,
    card: DemoCard,
    doctor: ScriptedDoctor,
    recorder: Recorder,
    summary: Summary,
    patient: SyntheticPerson,
) -> None:
    step = recorder.step

    async def welcome() -> None:
        await app.wait_screen("welcome", 20)

    async def language() -> None:
        app.tap("lang_fr")
        await app.wait_screen("consent")

    async def consent() -> None:
        app.tap("consent_accept")
        await app.wait_screen("identification")

    async def insert_card() -> None:
        await card.insert()
        await wait_for(lambda: controller.screen in ("beneficiary", "reason"), 20, "the card to be read")

    async def beneficiary() -> None:
        if controller.screen == "beneficiary":
            app.tap("beneficiary_0")
        await app.wait_screen("reason")

    async def reason() -> None:
        app.tap("reason_infection")
        await app.wait_screen("selfcheck")

    async def selfcheck() -> None:
        await wait_for(lambda: controller.screen == "waiting", 30, "the self-check to pass")

    async def login() -> None:
        await doctor.login()
        recorder.doctor = doctor

    async def accept() -> None:
        await doctor.accept_next(60, first_name=patient.first_name)
        await app.wait_screen("consultation", 20)

    async def sas() -> None:
        shown = await doctor.sas()
        summary.sas_doctor = shown.digits
        await wait_for(lambda: bool(controller.view.sas_digits), 20, "the SAS on the booth")
        summary.sas_booth = controller.view.sas_digits
        if summary.sas_booth != summary.sas_doctor:
            raise AssertionError("the two screens show different SAS: the link is not the doctor's")
        await doctor.verify()

    async def oximeter() -> None:
        measuring = asyncio.create_task(doctor.oximeter(5))
        await wait_for(lambda: controller.flow.measurement is f.Measurement.OXIMETER, 20, "the oximeter instructions")
        await app.settle()
        await recorder.shoot("oximeter-instructions")
        app.tap("measure_confirm")
        await measuring

    async def blood_pressure() -> None:
        measuring = asyncio.create_task(doctor.blood_pressure())
        await wait_for(lambda: controller.flow.measurement is f.Measurement.BLOOD_PRESSURE, 20, "the cuff instructions")
        await app.settle()
        await recorder.shoot("cuff-instructions")
        app.tap("measure_confirm")  # the patient confirms: only now does the cuff inflate
        await wait_for(lambda: controller.view.cuff_pressure is not None or measuring.done(), 30, "the cuff")
        await recorder.shoot("cuff-inflating")
        await measuring

    async def temperature() -> None:
        await doctor.temperature()

    async def otoscope() -> None:
        await doctor.otoscope_still()

    async def chat() -> None:
        await doctor.chat(CHAT_FROM_DOCTOR)
        await wait_for(lambda: any(line.from_doctor for line in controller.view.chat), 15, "the doctor's message")
        app.find("chat_input").text = CHAT_FROM_PATIENT
        app.tap("chat_send")
        await doctor.wait_chat(CHAT_FROM_PATIENT)

    async def end() -> None:
        summary.readings = await doctor.readings()
        summary.srtp_cipher = await doctor.srtp_cipher()
        await doctor.end()
        await app.wait_screen("end", 20)

    async def wipe() -> None:
        wipes = controller.wipes
        app.tap("end_finish")
        await wait_for(lambda: controller.wipes > wipes and controller.screen == "welcome", 30, "the wipe")

    for name, body in (
        ("welcome", welcome),
        ("language", language),
        ("consent", consent),
        ("card", insert_card),
        ("beneficiary", beneficiary),
        ("reason", reason),
        ("selfcheck", selfcheck),
        ("doctor-login", login),
        ("accept", accept),
        ("sas", sas),
        ("oximeter", oximeter),
        ("blood-pressure", blood_pressure),
        ("temperature", temperature),
        ("otoscope-still", otoscope),
        ("chat", chat),
        ("end", end),
        ("wipe", wipe),
    ):
        await step(name, body)
    await card.remove()


async def upload_records(out: Path, hub: DevHub) -> StepResult:
    """Send the session's sealed records to the hub (what ``kiosk-uploader`` does on a booth)."""
    paths = hub.paths
    uploader = Uploader(
        UploaderConfig(
            out / "state" / "booth",
            hub.booth_url,
            paths.fleet_ca,
            paths.booth_cert(hub.booth_id),
            paths.booth_key(hub.booth_id),
        )
    )
    began = time.monotonic()
    count = len(uploader.spool.pending())
    left = await uploader.once()
    print(f"  records-upload ... {count - left} sealed records uploaded, {left} left")
    return StepResult("records-upload", count > 0 and left == 0, time.monotonic() - began, f"{left} left" * bool(left))


def forgotten(roots: list[Path], people: list[SyntheticPerson]) -> list[str]:
    """Files under ``roots`` that still hold a patient's name or NIR (the wipe check)."""
    needles = [n.encode() for p in people for n in (p.surname, p.first_name, p.nir) if len(n) >= 3]
    needles += [n.lower() for n in needles]
    found: list[str] = []
    for root in roots:
        if not root.exists():
            continue
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(needle in data for needle in needles):
                found.append(str(path))
    return found


@contextlib.asynccontextmanager
async def booth(
    out: Path, hub: DevHub, card: DemoCard, *, settings: EmulationSettings | None = None
) -> AsyncIterator[BoothStack]:
    """The booth on emulated peripherals, its state under ``out/state/booth``, connected to ``hub``."""
    state = out / "state" / "booth"
    outside = os.environ.get("TMPDIR")
    temp = prepare_state(state)
    # The doctor's browser is another program on the demo machine: it keeps its temporary files where it
    # would anyway (a profile under the booth's state would also exceed Chromium's socket path length).
    if outside is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = outside
    args = argparse.Namespace(
        hub=hub.booth_url, hub_state=hub.state, booth_id=hub.booth_id, fleet_ca=None, cert=None, key=None
    )
    endpoint, credentials = credentials_from_args(args)
    settings = settings or EmulationSettings(stream_size=(640, 360), nibp_speed=4.0)
    # The session's records, sealed to the hub's records key (a state from before records gets one now).
    records = open_records(state, ensure_records_key(hub.state), hub.booth_id)
    try:
        with AuditLog(state / "audit", source="booth") as audit_log:
            async with emulated_stack(
                state / "emulated",
                hub=endpoint,
                credentials=credentials,
                card=PcscCardService(PcscMonitor),
                temp_dir=temp,
                settings=settings,
                records=records,
                audit_log=audit_log,
            ) as stack:
                await stack.session.link.wait_connected(30)
                yield stack
    finally:
        records.close()


async def run(out: Path, *, scripted: bool, headless_doctor: bool) -> Summary:
    from kiosk.ui.app import BoothApp, run_app

    summary = Summary()
    identity = DemoCard.identity_from_env()
    hub = DevHub(out / "state" / "hub", run_dir=out / "state")
    hub.start()
    summary.console_url = hub.origin
    try:
        with DemoCard(out / "state" / "pcscd", identity=identity) as card:
            async with booth(out, hub, card) as stack:
                app = BoothApp(stack.controller)
                running = asyncio.create_task(run_app(stack.controller, size=SCREEN, app=app))
                try:
                    if scripted:
                        await scripted_consultation(stack, app, card, hub, out, summary, headless_doctor)
                        left = forgotten([out / "state" / "booth", Path(tempfile.gettempdir())], card.expected())
                        summary.steps.append(StepResult("wipe-check", not left, 0.0, ", ".join(left)[:300]))
                        print(f"  wipe-check ... {'ok' if not left else 'FAILED: ' + ', '.join(left)}")
                        summary.steps.append(await upload_records(out, hub))
                    else:
                        print_welcome(hub)
                        inserting = asyncio.create_task(insert_when_asked(stack, card))
                        await running
                        inserting.cancel()
                except DemoFailed:
                    pass
                finally:
                    app.stop()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
    finally:
        hub.stop()
    summary.ok = bool(summary.steps) and all(s.ok for s in summary.steps) if scripted else True
    return summary


def print_welcome(hub: DevHub) -> None:
    doctor = hub.doctor
    print(f"\nThe booth is on screen. The doctor console: {hub.origin}/")
    print(f"  (your browser must trust {hub.paths.fleet_ca} for https://localhost)")
    print(f"  user {doctor.username}, password {doctor.password}, TOTP secret {doctor.totp_secret}")
    print("Touch the booth's screen to start; the virtual card goes in when the booth asks for it.")
    print("Close the booth's window to stop.\n")


def main(argv: list[str] | None = None) -> int:
    limit_arenas()  # the booth runs in this process: as kiosk-app does (kiosk.memory)
    parser = argparse.ArgumentParser(prog="python -m kiosk.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--scripted", action="store_true", help="script patient and doctor even with a display")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    display = has_display()
    scripted = args.scripted or not display
    print(f"demo: {'scripted patient and doctor' if scripted else 'you are the patient and the doctor'}")
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if not display:
            stack.enter_context(virtual_display(SCREEN))
        summary = asyncio.run(run(out, scripted=scripted, headless_doctor=True))
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2, ensure_ascii=False) + "\n")
    print(f"demo: {'ok' if summary.ok else 'FAILED'} in {time.monotonic() - started:.0f} s; see {out}/summary.json")
    return 0 if summary.ok else 1
