"""The patient app's controller: runs the :class:`~kiosk.ui.flow.Flow` against the booth's services.

The screens call the controller's action methods (one per button) and redraw
from :attr:`Controller.view` whenever a listener added with
:meth:`Controller.bind` is called. The controller feeds the flow, executes the
flow's effects on the services (:class:`kiosk.ui.services.Services`), turns the
services' events into flow events, and keeps the clock (:meth:`run`).

Everything it knows about the patient lives in :class:`View` and in the flow;
:meth:`wipe` replaces the view with a fresh one, ends any call, drops the card
data and received files, and only then tells the flow the wipe is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import gc
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kiosk.documents import PRESCRIPTION_MIME
from kiosk.documents.errors import DocumentError
from kiosk.documents.fhir import bundle_json
from kiosk.documents.report import consultation_report
from kiosk.documents.summary import ConsultationSummary, Still
from kiosk.identity.identity import Beneficiary, CardIdentity
from kiosk.memory import return_free_memory
from kiosk.session.consultation import (
    ChatEvent,
    CommandEvent,
    FileEvent,
    LinkEvent,
    MeasurementEvent,
    SessionEvent,
    SessionState,
    StateEvent,
    VerifiedEvent,
    WaitingEvent,
    WaitingPatient,
)
from kiosk.ui import flow as f
from kiosk.ui.i18n import REFERENCE, Translator
from kiosk.ui.services import (
    CHECKS,
    CardEvent,
    CardFailed,
    CardIdentityRead,
    CardPresented,
    CardWithdrawn,
    CheckResult,
    Services,
)

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 90.0
"""Seconds the patient has to confirm a measurement the doctor asked for before it is refused."""
MAX_CHAT_LINES = 200
OXIMETER_RECORD_SECONDS = 10.0
"""The streamed oximeter readings are sealed as one record per this many seconds."""
RECORDS_FLUSH_SECONDS = 30.0
"""How long the wipe waits for the session's records to be sealed and on disk."""
REST_TRIM_SECONDS = 10.0
"""After a wipe, once the booth has been back at rest this long, its free heap pages go back to the system again."""


class CardStatus(enum.Enum):
    ABSENT = "absent"
    READING = "reading"
    READ = "read"


class CheckState(enum.Enum):
    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class BeneficiaryChoice:
    """One person on the card, as the beneficiary screen shows them (to the patient only)."""

    name: str = field(repr=False)
    born: str = field(repr=False)
    """Birth date as DD/MM/YYYY, or "" when the card's date is not a calendar date."""


@dataclass(frozen=True)
class ChatLine:
    text: str = field(repr=False)
    from_doctor: bool


@dataclass
class View:
    """What the screens show. One instance per patient: :meth:`Controller.wipe` replaces it."""

    card: CardStatus = CardStatus.ABSENT
    beneficiaries: tuple[BeneficiaryChoice, ...] = ()
    selfcheck: dict[str, CheckState] = field(default_factory=lambda: dict.fromkeys(CHECKS, CheckState.PENDING))
    doctor_name: str = ""
    connecting: bool = False
    """A doctor accepted; the link is being secured (no SAS yet)."""
    sas_digits: str = ""
    sas_words: tuple[str, ...] = ()
    chat: list[ChatLine] = field(default_factory=list)
    cuff_pressure: float | None = None
    live: dict[str, float] = field(default_factory=dict)
    """The running measurement's latest values (``spo2``, ``pulse``...)."""
    readings: dict[str, float] = field(default_factory=dict)
    """Final readings of this consultation for the end summary: ``spo2``, ``pulse``, ``systolic``,
    ``diastolic``, ``celsius``."""
    stopped: bool = False
    """The patient pressed STOP; the screen says the measurement stopped."""
    files_received: int = 0
    quit_asked: bool = False
    """The quit confirmation is showing."""
    prescription: bool = False
    """A signed prescription was verified and sent to the printer."""
    fetch_code: str = ""
    """The code to fetch the verified prescription on a phone (the end screen shows it)."""
    prescription_refused: bool = False
    """A prescription came that did not verify: it was not printed; the end screen says so calmly."""

    def __repr__(self) -> str:
        return f"View(card={self.card.value}, beneficiaries={len(self.beneficiaries)}, chat={len(self.chat)})"


@dataclass
class Settings:
    """The patient's accessibility choices; reset with the session."""

    large_text: bool = False
    voice: bool = False


@dataclass
class Health:
    """Device health for staff mode; survives sessions (it holds nothing about patients)."""

    results: dict[str, CheckResult] = field(default_factory=dict)
    checked_at: float | None = None
    """``time.time()`` of the last self-check."""


class Controller:
    """The one object the screens talk to."""

    def __init__(
        self,
        services: Services,
        config: f.FlowConfig | None = None,
        *,
        translator: Translator | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = services
        self.clock = clock
        self.flow = f.Flow(config, now=clock())
        self.tr = translator or Translator(self.flow.language)
        self.view = View()
        self.settings = Settings()
        self.health = Health()
        self._identity: CardIdentity | None = None
        self._listeners: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._confirming: asyncio.Future[bool] | None = None
        self._selfcheck_task: asyncio.Task[None] | None = None
        self._in_call = False
        self._announced = False
        self._records = SessionRecords()
        self.wipes = 0
        """Completed wipes (tests and benches count sessions with it)."""
        self.rest_trim_seconds = REST_TRIM_SECONDS
        self.rest_trims = 0
        """Heap trims made at rest after a wipe (see :meth:`_trim_at_rest`)."""
        services.session.add_listener(self._on_session_event)
        services.session.confirm = self._confirm

    # -- for the screens -------------------------------------------------------------------------
    def bind(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change of the flow or the view."""
        self._listeners.append(listener)

    @property
    def screen(self) -> str:
        return self.flow.screen

    @property
    def step(self) -> f.Step:
        return self.flow.step

    def touch(self) -> None:
        self.send(f.Touch())

    def choose_language(self, language: str) -> None:
        self.send(f.LanguageChosen(language))

    def accept_consent(self) -> None:
        self.send(f.ConsentGiven())

    def decline_consent(self) -> None:
        self.send(f.ConsentDeclined())

    def no_card(self) -> None:
        self.send(f.ManualEntryChosen())

    def choose_beneficiary(self, index: int) -> None:
        self.send(f.BeneficiaryChosen(index))

    def submit_manual(self, surname: str, first_name: str, birth_date: str) -> bool:
        """Details typed by hand; False (and nothing changes) when the birth date is not DD/MM/YYYY."""
        if parse_birth_date(birth_date) is None:
            return False
        self.send(f.ManualEntry(surname.strip(), first_name.strip(), birth_date.strip()))
        return self.flow.manual_identity is not None

    def choose_reason(self, reason: f.VisitReason) -> None:
        self.send(f.ReasonChosen(reason))

    def confirm_measurement(self) -> None:
        self.send(f.MeasurementConfirmed())

    def stop(self) -> None:
        """The big STOP button."""
        self.view.stopped = self.flow.measurement is not None or self._in_call
        self.send(f.Stop())

    def send_chat(self, text: str) -> None:
        text = text.strip()
        if not text or not self._in_call:
            return
        self.view.chat.append(ChatLine(text, from_doctor=False))
        del self.view.chat[:-MAX_CHAT_LINES]
        self._record("chat", {"from": "patient", "text": text})
        self._spawn(self.services.session.send_chat(text))
        self.send(f.Touch())

    def ask_quit(self) -> None:
        self.view.quit_asked = True
        self.send(f.Touch())

    def cancel_quit(self) -> None:
        self.view.quit_asked = False
        self.send(f.Touch())

    def quit(self) -> None:
        """The patient confirmed they want to stop (hang up, or leave before the call)."""
        self.view.quit_asked = False
        self.send(f.Quit())

    def back(self) -> None:
        self.send(f.Back())

    def finish(self) -> None:
        self.send(f.Finish())

    def dismiss(self) -> None:
        self.send(f.Dismiss())

    def keep_going(self) -> None:
        """The idle warning's "I'm still here"."""
        self.send(f.Touch())

    def staff_gesture(self) -> None:
        self.send(f.StaffRequested())

    def enter_pin(self, pin: str) -> None:
        self.send(f.PinEntered(pin))

    def staff_selftest(self) -> None:
        self.send(f.SelfTestRequested())

    def staff_cleaning_done(self) -> None:
        self.send(f.CleaningConfirmed())

    def staff_exit(self) -> None:
        self.send(f.StaffExit())

    def set_large_text(self, on: bool) -> None:
        self.settings.large_text = on
        self.send(f.Touch())

    def set_voice(self, on: bool) -> None:
        self.settings.voice = on
        if on:
            self._say(f.PROMPTS[self.flow.step])
        self.send(f.Touch())

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep the flow's clock and listen to the card reader, until cancelled."""
        cards = asyncio.create_task(self._pump_cards())
        try:
            while True:
                due = self.flow.next_timer()
                delay = None if due is None else max(0.0, due - self.clock())
                self._wake.clear()
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
                # that arrives as the event is set, leaving this loop unstoppable.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                due = self.flow.next_timer()
                if due is not None and self.clock() >= due:
                    self.send(f.Tick(self.clock()))
        finally:
            cards.cancel()
            for task in [cards, *self._tasks]:
                task.cancel()
            await asyncio.gather(cards, *self._tasks, return_exceptions=True)

    def send(self, event: f.Event) -> list[f.Effect]:
        """Feed one event to the flow, execute its effects, and tell the screens."""
        effects = self.flow.handle(event, self.clock())
        if self.tr.lang != self.flow.language:
            self.tr.set_language(self.flow.language)
        for effect in effects:
            self._execute(effect)
        self._wake.set()
        self._changed()
        return effects

    # -- effects ----------------------------------------------------------------------------------
    def _execute(self, effect: f.Effect) -> None:
        match effect:
            case f.Announce(message=message):
                self._say(message)
            case f.Audit(event=event):
                self.services.audit(event)
                if event in ("consent_given", "consent_declined"):
                    self._record_consent(event == "consent_given")
            case f.Wipe():
                self._spawn(self.wipe())
            case f.Withdraw():
                self._spawn(self._leave())
            case f.JoinWaitingRoom(reason=reason):
                self._record_identification(reason)
                self._spawn(self._join(reason))
            case f.StartSelfCheck():
                self._start_selfcheck()
            case f.StartMeasurement():
                self.view.stopped = False
                self._resolve_confirm(True)
            case f.StopMeasurements():
                self._resolve_confirm(False)
                self.view.cuff_pressure = None
                if self._in_call:
                    self._spawn(self.services.session.stop())

    def _say(self, message: str) -> None:
        if self.settings.voice:
            self.services.speaker.say(self.tr(message), self.flow.language)

    async def wipe(self) -> None:
        """Forget the patient everywhere, then let the flow go on."""
        with contextlib.suppress(Exception):
            await self._leave()
        self._resolve_confirm(False)
        if self._selfcheck_task is not None:
            self._selfcheck_task.cancel()
            self._selfcheck_task = None
        await self._record_summary()
        self._identity = None
        try:
            self.services.forget()
        except OSError:
            logger.exception("could not erase the session's temporary files")
        self.view = View()
        self.settings = Settings()
        gc.collect()  # received files and frames held by dropped objects go now, not at some later cycle
        return_free_memory()
        self.wipes += 1
        self.send(f.WipeDone())
        self._spawn(self._trim_at_rest(self.wipes))

    async def _trim_at_rest(self, wipe: int) -> None:
        """Trim the heap again once the booth has rested after wipe number ``wipe``.

        What still runs between patients (the stethoscope's capture, the hub link, the screens' last frames
        going away) reuses free pages the wipe's trim gave back, a few at a time and scattered over the heap,
        so the booth's resident size would drift up until the next wipe. A second trim once the booth is at
        rest (no new session started) gives them back; in a worker thread, as it walks the whole heap.
        """
        await asyncio.sleep(self.rest_trim_seconds)
        if self.wipes == wipe and self.flow.step in (f.Step.WELCOME, f.Step.CLEANING):
            await asyncio.to_thread(return_free_memory)
            self.rest_trims += 1

    async def _leave(self) -> None:
        session = self.services.session
        if self._in_call:
            self._in_call = False
            await session.end()
        if self._announced:
            self._announced = False
            await session.withdraw()

    async def _join(self, reason: f.VisitReason) -> None:
        patient = self._waiting_patient(reason)
        if patient is None:
            return
        self._announced = True
        try:
            await self.services.session.announce(patient)
        except RuntimeError:
            logger.warning("announce refused: a consultation is still running")

    def _waiting_patient(self, reason: f.VisitReason) -> WaitingPatient | None:
        """What the waiting room shows doctors: first name, age, reason (in the doctors' language)."""
        first_name, born = "", None
        if self.flow.manual_identity is not None:
            first_name = self.flow.manual_identity.first_name
            born = parse_birth_date(self.flow.manual_identity.birth_date)
        elif self._identity is not None and self.flow.beneficiary is not None:
            person: Beneficiary = self._identity.beneficiaries[self.flow.beneficiary]
            first_name, born = person.first_name, person.birth_date
        if not first_name:
            return None
        reference = Translator(REFERENCE)
        return WaitingPatient(first_name[:64], age_on(born, datetime.date.today()), reference(f"reason.{reason.value}"))

    def _start_selfcheck(self) -> None:
        if self._selfcheck_task is not None and not self._selfcheck_task.done():
            return
        self.view.selfcheck = dict.fromkeys(CHECKS, CheckState.PENDING)
        self._selfcheck_task = asyncio.create_task(self._selfcheck())

    async def _selfcheck(self) -> None:
        failed = False
        try:
            async for result in self.services.selfcheck.run():
                self.health.results[result.name] = result
                if result.name in self.view.selfcheck:
                    self.view.selfcheck[result.name] = CheckState.OK if result.ok else CheckState.FAILED
                failed = failed or not result.ok
                self._changed()
        except Exception:
            logger.exception("self-check failed")
            failed = True
        self.health.checked_at = time.time()
        if self.flow.step is f.Step.SELFCHECK:
            self.send(f.Failure(f.FailureKind.PERIPHERAL_FAILING) if failed else f.SelfCheckDone())
        else:
            self._changed()

    def retry_selfcheck(self) -> None:
        """ "Try again" on the peripheral failure screen during the self-check."""
        self.send(f.Dismiss())
        if self.flow.step is f.Step.SELFCHECK:
            self._start_selfcheck()

    def continue_selfcheck(self) -> None:
        """Go on to the waiting room although a peripheral failed (the doctor will do without it)."""
        self.send(f.Dismiss())
        if self.flow.step is f.Step.SELFCHECK and self.flow.failure is None:
            self.send(f.SelfCheckDone())

    # -- the card reader --------------------------------------------------------------------------
    async def _pump_cards(self) -> None:
        async for event in self.services.card.events():
            self._on_card(event)

    def _on_card(self, event: CardEvent) -> None:
        step = self.flow.step
        reading_steps = {f.Step.IDENTIFICATION, f.Step.BENEFICIARY}
        match event:
            case CardPresented() if step in reading_steps:
                self.view.card = CardStatus.READING
                self.send(f.Touch())
            case CardIdentityRead(identity=identity) if step in reading_steps:
                self._identity = identity
                self.view.card = CardStatus.READ
                self.view.beneficiaries = tuple(_choice(person) for person in identity.beneficiaries)
                self.send(f.CardRead(len(identity.beneficiaries)))
            case CardFailed(reason=reason) if step in reading_steps:
                logger.info("card not read (%s)", reason)
                self.view.card = CardStatus.ABSENT
                self.send(f.CardRead(0))
            case CardWithdrawn():
                # The identity was read when the card went in; a card pulled after that changes nothing.
                if self.view.card is CardStatus.READING:
                    self.view.card = CardStatus.ABSENT
                    self._changed()

    # -- the consultation -------------------------------------------------------------------------
    async def _confirm(self, command: str) -> bool:
        """BoothSession asks before a command that acts on the patient (``bp.start``)."""
        if command != "bp.start" or self.flow.step is not f.Step.CONSULTATION:
            return False
        self._resolve_confirm(False)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._confirming = future
        self.send(f.MeasurementRequested(f.Measurement.BLOOD_PRESSURE))
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT):
                return await future
        except TimeoutError:
            self.send(f.MeasurementDone())
            return False
        finally:
            if self._confirming is future:
                self._confirming = None

    def _resolve_confirm(self, answer: bool) -> None:
        if self._confirming is not None and not self._confirming.done():
            self._confirming.set_result(answer)

    def _on_session_event(self, event: SessionEvent) -> None:
        match event:
            case StateEvent(state=state, reason=reason):
                self._on_state(state, reason)
            case VerifiedEvent(sas=sas, doctor_name=name):
                self.view.connecting = False
                self.view.doctor_name = name
                self.view.sas_digits, self.view.sas_words = sas.digits, sas.words
                self.send(f.SasShown(sas.digits))
            case ChatEvent(text=text, from_doctor=True):
                self._record("chat", {"from": "doctor", "text": text})
                self.view.chat.append(ChatLine(text, from_doctor=True))
                del self.view.chat[:-MAX_CHAT_LINES]
                self._changed()
            case FileEvent(mime=mime, data=data, from_doctor=True) if mime == PRESCRIPTION_MIME:
                self.view.files_received += 1
                self._spawn(self._take_prescription(data))
                self._changed()
            case FileEvent():
                self._record_file(event)
                # Shown as a count only; the content stays in the session until the wipe.
                self.view.files_received += 1
                self._changed()
            case CommandEvent(command=command, phase=phase):
                self._on_command(command, phase)
            case MeasurementEvent(name=name, values=values):
                self._on_measurement(name, dict(values))
            case WaitingEvent(position=position, minutes=minutes):
                self.send(f.WaitingUpdate(position, minutes))
            case LinkEvent(connected=connected):
                kind = f.FailureKind.NETWORK_LOST
                self.send(f.Recovered(kind) if connected else f.Failure(kind))

    def _on_state(self, state: SessionState, reason: str) -> None:
        if state is SessionState.CONNECTING:
            self._in_call = True
            self.view.connecting = True
            self.view.sas_digits, self.view.sas_words = "", ()
            self.send(f.DoctorJoined())
        elif state is SessionState.IN_CALL:
            self._in_call = True
            self.send(f.Recovered(f.FailureKind.NETWORK_LOST))
        elif state is SessionState.RECONNECTING:
            self.send(f.Failure(f.FailureKind.NETWORK_LOST))
        elif state in (SessionState.ENDED, SessionState.REFUSED):
            was_in_call, self._in_call = self._in_call, False
            self.view.connecting = False
            self._resolve_confirm(False)
            if not was_in_call or self.flow.step is not f.Step.CONSULTATION:
                return
            if state is SessionState.ENDED and reason in ("doctor-ended", "booth-ended"):
                self._announced = False
                self.send(f.ConsultationEnded())
            else:
                # The doctor left without ending, or the call could not be secured: back in the queue.
                logger.info("call lost (%s); back to the waiting room", reason)
                self.view.sas_digits, self.view.sas_words = "", ()
                self.send(f.Failure(f.FailureKind.DOCTOR_GONE))
                if self.flow.reason is not None:
                    self._spawn(self._join(self.flow.reason))
        else:
            self._changed()

    def _on_command(self, command: str, phase: str) -> None:
        kinds = {"oximeter.start": f.Measurement.OXIMETER, "thermometer.read": f.Measurement.THERMOMETER}
        if phase == "started" and command in kinds:
            self.view.stopped = False
            self.view.live.clear()
            self.send(f.MeasurementRequested(kinds[command]))
        elif (phase in ("done", "failed") and command in ("thermometer.read", "bp.start")) or (
            phase == "started" and command in ("oximeter.stop", "bp.abort")
        ):
            self.view.cuff_pressure = None
            self.send(f.MeasurementDone())
        elif phase == "stopped":
            self.view.cuff_pressure = None
            self._changed()

    def _on_measurement(self, name: str, values: dict[str, float]) -> None:
        if name == "cuff":
            self.view.cuff_pressure = values.get("pressure")
        else:
            self._record_reading(name, values)
            self.view.live = values
            if name == "blood_pressure":
                self.view.cuff_pressure = None
            for key in ("spo2", "pulse", "systolic", "diastolic", "celsius"):
                if key in values:
                    self.view.readings[key] = values[key]
        self._changed()

    # -- sealed records -----------------------------------------------------------------------------
    # What the session produces goes, as it happens, to the records service, sealed to the hub's records key
    # (the booth cannot read it back). Every record carries the session's opaque token so the hub's
    # operator can put a consultation back together.
    def _record(self, kind: str, document: Mapping[str, object]) -> None:
        self._records.count += 1
        body = {"session": self._records.token, "at": _iso(self._records.wall_clock()), **document}
        payload = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
        self.services.records.record(kind, payload, {"session": self._records.token, "mime": "application/json"})

    def _record_consent(self, given: bool) -> None:
        if self._records.started is None:
            self._records.started = self._records.wall_clock()
        self._record(
            "consent",
            {
                "decision": "given" if given else "declined",
                "language": self.flow.language,
                "consent_text_version": consent_text_version(self.tr),
            },
        )

    def _record_identification(self, reason: f.VisitReason) -> None:
        if self._records.identified:
            return  # back in the queue after a lost call: the same patient
        document: dict[str, object] = {"reason": reason.value}
        if self.flow.manual_identity is not None:
            manual = self.flow.manual_identity
            document.update(
                source="manual", surname=manual.surname, first_name=manual.first_name, birth_date=manual.birth_date
            )
        elif self._identity is not None and self.flow.beneficiary is not None:
            person = self._identity.beneficiaries[self.flow.beneficiary]
            document.update(
                source="card",
                surname=person.surname,
                first_name=person.first_name,
                birth_date=person.birth_date.isoformat() if person.birth_date else person.birth_date_text,
                nir=person.nir.reveal(),
            )
        else:
            return
        self._records.identified = True
        self._record("identification", document)

    def _record_reading(self, name: str, values: dict[str, float]) -> None:
        if name != "oximeter":
            self._record("reading", {"measurement": name, "values": values})
            return
        # The oximeter streams (two values a second): its readings are sealed as series, one record per
        # OXIMETER_RECORD_SECONDS, rather than a record (and two fsyncs) per value.
        records = self._records
        now = records.wall_clock()
        if not records.oximeter:
            records.oximeter_since = now
        records.oximeter.append({"at": _iso(now), **values})
        if now - records.oximeter_since >= OXIMETER_RECORD_SECONDS:
            self._flush_oximeter()

    def _flush_oximeter(self) -> None:
        series, self._records.oximeter = self._records.oximeter, []
        if series:
            self._record("reading", {"measurement": "oximeter", "series": series})

    def _record_file(self, event: FileEvent) -> None:
        if not event.data:
            return
        self._records.count += 1
        kind = "still" if not event.from_doctor and event.mime.startswith("image/") else "file"
        meta = {
            "session": self._records.token,
            "name": event.name,
            "mime": event.mime,
            "from": "doctor" if event.from_doctor else "booth",
            "sha256": hashlib.sha256(event.data).hexdigest(),
        }
        self.services.records.record(kind, event.data, meta)
        if kind == "still":
            self._records.stills.append(
                Still(
                    event.data,
                    event.mime,
                    taken=datetime.datetime.fromtimestamp(self._records.wall_clock(), datetime.UTC),
                )
            )

    def _record_documents(self, started: float, ended: float) -> None:
        """The consultation's FHIR bundle and the patient's report, sealed with the other records."""
        records = self._records
        summary = ConsultationSummary(
            session_id=records.token,
            patient_token=records.token,
            booth_id=self.services.booth_id,
            started=datetime.datetime.fromtimestamp(started, datetime.UTC),
            ended=datetime.datetime.fromtimestamp(ended, datetime.UTC),
            language=self.flow.language,
            doctor_name=self.view.doctor_name,
            readings=dict(self.view.readings),
            stills=tuple(records.stills),
        )
        meta = {"session": records.token}
        try:
            # The stills are records of their own: the bundle's Media entries carry their size and hash.
            bundle = bundle_json(summary, embed_stills=False)
            report = consultation_report(summary)
        except DocumentError as exc:
            logger.error("consultation documents not made: %s", exc.reason.value)
            return
        records.count += 2
        self.services.records.record("fhir", bundle, {**meta, "mime": "application/fhir+json"})
        self.services.records.record("report", report, {**meta, "mime": "application/pdf"})

    async def _record_summary(self) -> None:
        self._flush_oximeter()
        records = self._records
        if records.started is not None:
            if self.view.doctor_name or self.view.readings:
                self._record_documents(records.started, records.wall_clock())
            self._record(
                "summary",
                {
                    "started": _iso(records.started),
                    "ended": _iso(records.wall_clock()),
                    "doctor": self.view.doctor_name,
                    "readings": dict(self.view.readings),
                    "chat_lines": len(self.view.chat),
                    "files": self.view.files_received,
                    "records": records.count + 1,
                },
            )
        self._records = SessionRecords(wall_clock=records.wall_clock)
        try:
            # The next patient waits for this one's records to be sealed, but not for a disk that hangs.
            async with asyncio.timeout(RECORDS_FLUSH_SECONDS):
                await self.services.records.flush()
        except TimeoutError:
            logger.error("records still being sealed after %.0f s; the wipe goes on", RECORDS_FLUSH_SECONDS)
        except Exception:
            logger.exception("records could not be flushed")

    # -- plumbing ---------------------------------------------------------------------------------
    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                logger.exception("a screen failed to refresh")

    async def _take_prescription(self, pdf: bytes) -> None:
        """Verify, then print (the service refuses to print what does not verify); show the fetch code."""
        view = self.view
        if self.services.prescriptions is None:
            logger.warning("a prescription arrived but this booth has no prescription service")
            view.prescription_refused = True
        else:
            try:
                code, printed = await self.services.prescriptions.receive(pdf)
            except DocumentError as exc:
                logger.warning("prescription refused: %s", exc.reason.value)
                view.prescription_refused = True
            else:
                # "Your prescription is printing" only when the printer took it; the fetch code works either way.
                view.prescription, view.fetch_code = printed, code
        if view is self.view:  # not wiped meanwhile
            self._changed()

    def _spawn(self, coroutine: object) -> None:
        async def guarded() -> None:
            try:
                await coroutine  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("booth service call failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass
class SessionRecords:
    """What the controller knows about the records of the current patient (no patient data)."""

    token: str = field(default_factory=lambda: secrets.token_hex(16))
    """Opaque per-patient token in every record (the audit trail uses its own)."""
    wall_clock: Callable[[], float] = time.time
    started: float | None = None
    identified: bool = False
    count: int = 0
    oximeter: list[dict[str, object]] = field(default_factory=list)
    """Oximeter values not sealed yet (at most :data:`OXIMETER_RECORD_SECONDS` of them)."""
    oximeter_since: float = 0.0
    stills: list[Still] = field(default_factory=list)
    """The stills sent to the doctor, for the consultation's FHIR bundle (dropped with this object)."""


CONSENT_MESSAGES = ("consent.title", "consent.recorded", "consent.who", "consent.hosted", "consent.rights")


def consent_text_version(tr: Translator) -> str:
    """Which consent text the patient saw: a digest of its wording in their language (changes with the text)."""
    text = "\n".join([tr.lang, *(tr(message) for message in CONSENT_MESSAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="milliseconds")


def parse_birth_date(text: str) -> datetime.date | None:
    """DD/MM/YYYY (also with ``-`` or ``.``) → a date in the past 130 years, else None."""
    parts = text.strip().replace("-", "/").replace(".", "/").split("/")
    if len(parts) != 3 or not all(part.isdigit() for part in parts) or len(parts[2]) != 4:
        return None
    try:
        born = datetime.date(int(parts[2]), int(parts[1]), int(parts[0]))
    except ValueError:
        return None
    today = datetime.date.today()
    return born if today.year - 130 <= born.year and born <= today else None


def age_on(born: datetime.date | None, today: datetime.date) -> int:
    """Age in whole years (0 when unknown: the doctor asks)."""
    if born is None:
        return 0
    return max(0, min(130, today.year - born.year - ((today.month, today.day) < (born.month, born.day))))


def _choice(person: Beneficiary) -> BeneficiaryChoice:
    born = person.birth_date.strftime("%d/%m/%Y") if person.birth_date else ""
    return BeneficiaryChoice(f"{person.first_name} {person.surname}".strip(), born)
