"""The patient app's controller against fake services: the flow's effects reach the services, and back."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator

import pytest

from kiosk.session.binding import Sas
from kiosk.session.consultation import (
    ChatEvent,
    CommandEvent,
    FileEvent,
    LinkEvent,
    MeasurementEvent,
    SessionState,
    StateEvent,
    VerifiedEvent,
    WaitingEvent,
    WaitingPatient,
)
from kiosk.ui.controller import CardStatus, CheckState, Controller, age_on, parse_birth_date
from kiosk.ui.flow import FailureKind, FlowConfig, Measurement, Step, Timeout, VisitReason
from kiosk.ui.services import CardFailed, CardIdentityRead, CardPresented
from tests.ui_fakes import FAMILY, FakeRecords, FakeServices, synthetic_identity

SAS = Sas("042 917", ("abricot", "balcon", "cigale", "dune"))


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


@pytest.fixture
async def app() -> AsyncIterator[tuple[Controller, FakeServices]]:
    services = FakeServices()
    controller = Controller(services)
    runner = asyncio.create_task(controller.run())
    yield controller, services
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def to_waiting(controller: Controller, services: FakeServices) -> None:
    controller.choose_language("en")
    controller.accept_consent()
    await services.card.queue.put(CardPresented())
    await services.card.queue.put(CardIdentityRead(FAMILY))
    await settle()
    controller.choose_beneficiary(1)
    controller.choose_reason(VisitReason.INFECTION)
    await settle()
    assert controller.step is Step.WAITING


async def test_card_with_two_people_to_the_waiting_room(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    controller.choose_language("en")
    assert controller.tr("common.yes") != Controller(FakeServices()).tr("common.yes") or controller.tr.rtl is False
    controller.accept_consent()
    assert controller.step is Step.IDENTIFICATION
    await services.card.queue.put(CardPresented())
    await settle()
    assert controller.view.card is CardStatus.READING
    await services.card.queue.put(CardIdentityRead(FAMILY))
    await settle()
    assert controller.step is Step.BENEFICIARY
    assert [choice.name for choice in controller.view.beneficiaries] == ["Zoé TESTMARTIN", "Yanis TESTMARTIN"]
    assert controller.view.beneficiaries[1].born == "30/09/2012"
    controller.choose_beneficiary(1)
    assert controller.step is Step.REASON
    controller.choose_reason(VisitReason.SKIN)
    assert controller.step is Step.SELFCHECK
    await settle()
    assert set(controller.view.selfcheck.values()) == {CheckState.OK}
    assert controller.step is Step.WAITING
    (patient,) = services.session.named("announce")
    assert isinstance(patient, WaitingPatient)
    assert patient.first_name == "Yanis"
    assert patient.age == age_on(datetime.date(2012, 9, 30), datetime.date.today())
    assert patient.reason  # in the doctors' (reference) language, whatever the patient's
    assert "consent_given" in services.audited and "card_read" in services.audited
    assert not any("TESTMARTIN" in event or "Yanis" in event for event in services.audited)


async def test_waiting_news_call_and_sas(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    await to_waiting(controller, services)
    services.session.emit(WaitingEvent(3, 12))
    assert (controller.flow.waiting_position, controller.flow.waiting_minutes) == (3, 12)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    assert controller.step is Step.CONSULTATION and controller.view.connecting
    services.session.emit(VerifiedEvent(SAS, "Dr Demo", "acct"))
    services.session.emit(StateEvent(SessionState.IN_CALL))
    assert controller.view.sas_digits == "042 917" and controller.view.sas_words == SAS.words
    assert controller.flow.sas == "042 917" and not controller.view.connecting
    services.session.emit(ChatEvent("Bonjour", from_doctor=True))
    controller.send_chat("  Hello doctor  ")
    await settle()
    assert [(line.text, line.from_doctor) for line in controller.view.chat] == [
        ("Bonjour", True),
        ("Hello doctor", False),
    ]
    assert services.session.named("chat") == ["Hello doctor"]
    services.session.emit(FileEvent("ordonnance.pdf", "application/pdf", b"%PDF-1.7"))
    # A plain PDF is a document, not a prescription: only a signed one, verified, is (tests/documents).
    assert controller.view.files_received == 1 and not controller.view.prescription


async def test_blood_pressure_waits_for_the_patient(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    await to_waiting(controller, services)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    asking = asyncio.create_task(services.session.confirm("bp.start"))
    await settle()
    assert controller.flow.measurement is Measurement.BLOOD_PRESSURE and not asking.done()
    controller.confirm_measurement()
    assert await asking is True
    services.session.emit(MeasurementEvent("cuff", {"pressure": 120.0}))
    assert controller.view.cuff_pressure == 120.0
    services.session.emit(MeasurementEvent("blood_pressure", {"systolic": 128, "diastolic": 82, "pulse": 71}))
    services.session.emit(CommandEvent("bp.start", "done"))
    assert controller.view.readings == {"systolic": 128, "diastolic": 82, "pulse": 71}
    assert controller.view.cuff_pressure is None and controller.flow.measurement is None


async def test_stop_refuses_a_pending_cuff_and_stops_the_call_s_measurements(
    app: tuple[Controller, FakeServices],
) -> None:
    controller, services = app
    await to_waiting(controller, services)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    asking = asyncio.create_task(services.session.confirm("bp.start"))
    await settle()
    controller.stop()
    assert await asking is False
    await settle()
    assert services.session.named("stop") == [None]
    assert controller.view.stopped
    # Only the cuff asks: other commands are not the app's to confirm.
    assert await services.session.confirm("oximeter.start") is False


async def test_oximeter_and_temperature_show_instructions_and_readings(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    await to_waiting(controller, services)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    services.session.emit(CommandEvent("oximeter.start", "started"))
    assert controller.flow.measurement is Measurement.OXIMETER
    services.session.emit(MeasurementEvent("oximeter", {"spo2": 97, "pulse": 72}))
    assert controller.view.live == {"spo2": 97, "pulse": 72}
    services.session.emit(CommandEvent("oximeter.stop", "started"))
    assert controller.flow.measurement is None
    services.session.emit(CommandEvent("thermometer.read", "started"))
    assert controller.flow.measurement is Measurement.THERMOMETER
    services.session.emit(MeasurementEvent("temperature", {"celsius": 36.8}))
    services.session.emit(CommandEvent("thermometer.read", "done"))
    assert controller.view.readings == {"spo2": 97, "pulse": 72, "celsius": 36.8}


async def test_end_then_wipe_forgets_everything(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    await to_waiting(controller, services)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    services.session.emit(VerifiedEvent(SAS, "Dr Demo", "acct"))
    services.session.emit(ChatEvent("Bonjour", from_doctor=True))
    services.session.emit(MeasurementEvent("temperature", {"celsius": 38.2}))
    services.session.emit(StateEvent(SessionState.ENDED, "doctor-ended"))
    assert controller.step is Step.END
    assert controller.view.readings == {"celsius": 38.2}
    controller.set_large_text(True)
    controller.finish()
    await settle()
    assert controller.step is Step.WELCOME
    assert controller.wipes == 1 and services.forgotten == 1
    assert not controller.flow.patient_data_present()
    assert controller.view.chat == [] and controller.view.beneficiaries == () and controller.view.readings == {}
    assert controller.view.sas_digits == "" and not controller.settings.large_text
    assert controller.flow.language == "fr" and not controller.tr.rtl
    # The doctor ended the call: the booth neither hangs up again nor withdraws a patient no longer waiting.
    assert services.session.named("end") == [] and services.session.named("withdraw") == []


async def _through_a_call_to_the_wipe(controller: Controller, services: FakeServices) -> None:
    await to_waiting(controller, services)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    services.session.emit(VerifiedEvent(SAS, "Dr Demo", "acct"))
    services.session.emit(StateEvent(SessionState.ENDED, "doctor-ended"))
    assert controller.step is Step.END
    controller.finish()
    await settle()
    assert controller.step is Step.WELCOME


async def test_heap_trimmed_again_once_at_rest_after_the_wipe(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    controller.rest_trim_seconds = 0.05
    for session in (1, 2):
        await _through_a_call_to_the_wipe(controller, services)
        assert controller.wipes == session and controller.rest_trims == session - 1
        await asyncio.sleep(0.3)
        assert controller.rest_trims == session  # once per wipe, however long the booth rests
    # A patient who starts before the booth has rested: no trim in the middle of their session.
    await _through_a_call_to_the_wipe(controller, services)
    controller.choose_language("en")
    await asyncio.sleep(0.3)
    assert controller.wipes == 3 and controller.rest_trims == 2


async def test_quitting_in_the_waiting_room_withdraws(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    await to_waiting(controller, services)
    controller.ask_quit()
    assert controller.view.quit_asked
    controller.quit()
    await settle()
    assert services.session.named("withdraw") == [None]
    assert controller.step is Step.WELCOME


async def test_doctor_gone_goes_back_to_the_queue(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    await to_waiting(controller, services)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    services.session.emit(VerifiedEvent(SAS, "Dr Demo", "acct"))
    services.session.emit(StateEvent(SessionState.ENDED, "doctor-disconnected"))
    await settle()
    assert controller.flow.failure is FailureKind.DOCTOR_GONE
    assert controller.view.sas_digits == ""
    assert len(services.session.named("announce")) == 2
    services.session.emit(StateEvent(SessionState.CONNECTING))
    assert controller.flow.failure is None and controller.step is Step.CONSULTATION


async def test_refused_call_is_not_a_consultation(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    await to_waiting(controller, services)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    services.session.emit(StateEvent(SessionState.REFUSED, "the doctor's identity did not verify"))
    await settle()
    assert controller.step is Step.CONSULTATION and controller.flow.failure is FailureKind.DOCTOR_GONE
    assert controller.flow.sas is None


async def test_network_lost_and_back(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    await to_waiting(controller, services)
    services.session.emit(LinkEvent(False))
    assert controller.screen == "failure.network_lost"
    services.session.emit(LinkEvent(True))
    assert controller.screen == "waiting"


async def test_unreadable_card_and_self_check_failure(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    controller.choose_language("es")
    controller.accept_consent()
    await services.card.queue.put(CardFailed("unreadable"))
    await settle()
    assert controller.screen == "failure.card_unreadable" and controller.view.card is CardStatus.ABSENT
    controller.dismiss()
    await services.card.queue.put(CardIdentityRead(synthetic_identity(("TESTSOLO", "Ana", datetime.date(1990, 1, 5)))))
    await settle()
    assert controller.step is Step.REASON  # one person on the card: no choice to make
    services.selfcheck.failing = {"microphone"}
    controller.choose_reason(VisitReason.PAIN)
    await settle()
    assert controller.screen == "failure.peripheral_failing"
    assert controller.view.selfcheck["microphone"] is CheckState.FAILED
    services.selfcheck.failing = set()
    controller.retry_selfcheck()
    await settle()
    assert services.selfcheck.runs == 2 and controller.step is Step.WAITING


async def test_manual_entry_checks_the_birth_date(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    controller.choose_language("pt")
    controller.accept_consent()
    controller.no_card()
    assert controller.step is Step.MANUAL_ENTRY
    assert controller.submit_manual("TESTNUNES", "Rui", "31/02/1980") is False
    assert controller.submit_manual("TESTNUNES", "Rui", "tomorrow") is False
    assert controller.submit_manual("   ", "Rui", "05/06/1980") is False  # the flow refuses a blank name
    assert controller.step is Step.MANUAL_ENTRY
    assert controller.submit_manual(" TESTNUNES ", "Rui", "05/06/1980") is True
    assert controller.step is Step.REASON
    controller.choose_reason(VisitReason.RENEWAL)
    await settle()
    (patient,) = services.session.named("announce")
    assert isinstance(patient, WaitingPatient) and patient.first_name == "Rui"


async def test_idle_timeout_warns_then_wipes() -> None:
    timeouts = dict(FlowConfig().timeouts)
    timeouts[Step.CONSENT] = Timeout(0.4, warn=0.2)
    services = FakeServices()
    controller = Controller(services, FlowConfig(timeouts=timeouts))
    seen: list[tuple[str, bool]] = []
    controller.bind(lambda: seen.append((controller.screen, controller.flow.warning)))
    runner = asyncio.create_task(controller.run())
    try:
        controller.choose_language("ar")
        assert controller.tr.rtl
        async with asyncio.timeout(5):
            while controller.step is not Step.WELCOME or controller.wipes == 0:
                await asyncio.sleep(0.02)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert ("consent", True) in seen
    assert "idle_timeout" in services.audited
    assert controller.flow.language == "fr"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("05/06/1980", datetime.date(1980, 6, 5)),
        ("5-6-1980", datetime.date(1980, 6, 5)),
        ("05.06.1980", datetime.date(1980, 6, 5)),
        ("1980/06/05", None),
        ("31/02/1980", None),
        ("01/01/1800", None),
        ("", None),
        ("aa/bb/cccc", None),
    ],
)
def test_parse_birth_date(text: str, expected: datetime.date | None) -> None:
    assert parse_birth_date(text) == expected


def test_age() -> None:
    assert age_on(datetime.date(2000, 6, 15), datetime.date(2026, 6, 14)) == 25
    assert age_on(datetime.date(2000, 6, 15), datetime.date(2026, 6, 15)) == 26
    assert age_on(None, datetime.date(2026, 1, 1)) == 0


async def test_a_session_is_recorded_for_sealing(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    await to_waiting(controller, services)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    services.session.emit(VerifiedEvent(SAS, "Dr Demo", "acct"))
    controller.send_chat("J'ai mal")
    services.session.emit(ChatEvent("Bonjour", from_doctor=True))
    services.session.emit(MeasurementEvent("cuff", {"pressure": 120.0}))  # live cuff pressure: not a reading
    services.session.emit(MeasurementEvent("oximeter", {"spo2": 97, "pulse": 72}))
    services.session.emit(FileEvent("otoscope-1.jpg", "image/jpeg", b"\xff\xd8jpeg", from_doctor=False))
    services.session.emit(FileEvent("ordonnance.pdf", "application/pdf", b"%PDF-1.7"))
    services.session.emit(StateEvent(SessionState.ENDED, "doctor-ended"))
    # A lost call and a second wait would not record the identification again.
    controller.finish()
    await settle()
    records = services.records
    # The oximeter's series is sealed when it reaches OXIMETER_RECORD_SECONDS, or at the end.
    assert records.kinds() == [
        "consent",
        "identification",
        "chat",
        "chat",
        "still",
        "file",
        "reading",
        "fhir",
        "report",
        "summary",
    ]
    tokens = {meta["session"] for _, _, meta in records.records}
    assert len(tokens) == 1
    consent = records.documents("consent")[0]
    assert consent["decision"] == "given" and consent["language"] == "en"
    assert isinstance(consent["consent_text_version"], str) and len(consent["consent_text_version"]) == 16
    identification = records.documents("identification")[0]
    person = FAMILY.beneficiaries[1]
    assert identification["source"] == "card" and identification["surname"] == person.surname
    assert identification["nir"] == person.nir.reveal() and identification["reason"] == "infection"
    assert [d["from"] for d in records.documents("chat")] == ["patient", "doctor"]
    reading = records.documents("reading")[0]
    assert reading["measurement"] == "oximeter" and reading["session"] == identification["session"]
    assert reading["series"] == [{"at": reading["series"][0]["at"], "spo2": 97, "pulse": 72}]  # type: ignore[index]
    still = records.records[4]
    assert still[1] == b"\xff\xd8jpeg" and still[2]["from"] == "booth" and still[2]["mime"] == "image/jpeg"
    summary = records.documents("summary")[0]
    assert summary["readings"] == {"spo2": 97, "pulse": 72} and summary["doctor"] == "Dr Demo"
    assert summary["records"] == 10 and records.flushes == 1
    # The consultation's documents: a FHIR R4 bundle (validated as it is made) and the patient's report, which
    # name nobody: the patient is the session's opaque token.
    fhir = records.documents("fhir")[0]
    resources = [entry["resource"] for entry in fhir["entry"]]  # type: ignore[union-attr]
    types = sorted(resource["resourceType"] for resource in resources)
    assert types == ["Encounter", "Media", "Observation", "Observation"]
    media = next(resource for resource in resources if resource["resourceType"] == "Media")
    assert media["content"]["size"] == len(b"\xff\xd8jpeg") and "data" not in media["content"]
    report = next(payload for kind, payload, _ in records.records if kind == "report")
    assert report.startswith(b"%PDF")
    for kind, payload, _ in records.records:
        if kind in ("fhir", "report"):
            assert person.surname.encode() not in payload and person.nir.reveal().encode() not in payload
    # The next patient gets a new token.
    controller.choose_language("fr")
    controller.decline_consent()
    controller.finish()
    await settle()
    assert records.kinds()[10:] == ["consent", "summary"]  # no consultation: no documents
    assert records.records[10][2]["session"] not in tokens
    assert records.documents("consent")[1]["decision"] == "declined"


async def test_streamed_oximeter_readings_are_sealed_as_series(app: tuple[Controller, FakeServices]) -> None:
    controller, services = app
    now = [1_000_000.0]
    controller._records.wall_clock = lambda: now[0]
    await to_waiting(controller, services)
    services.session.emit(StateEvent(SessionState.CONNECTING))
    for second in range(25):  # two values a second for 12.5 s
        now[0] = 1_000_000.0 + second / 2
        services.session.emit(MeasurementEvent("oximeter", {"spo2": 95 + second % 3, "pulse": 70}))
    services.session.emit(MeasurementEvent("blood_pressure", {"systolic": 128, "diastolic": 81, "pulse": 70}))
    readings = services.records.documents("reading")
    assert [len(r.get("series", [])) for r in readings] == [21, 0]  # type: ignore[arg-type]
    assert readings[1]["values"] == {"systolic": 128, "diastolic": 81, "pulse": 70}
    services.session.emit(StateEvent(SessionState.ENDED, "doctor-ended"))
    controller.finish()
    await settle()
    readings = services.records.documents("reading")
    assert [len(r.get("series", [])) for r in readings] == [21, 0, 4]  # type: ignore[arg-type]


async def test_a_hanging_records_disk_does_not_block_the_wipe(monkeypatch: pytest.MonkeyPatch) -> None:
    import kiosk.ui.controller as controller_module

    class HangingRecords(FakeRecords):
        async def flush(self) -> None:
            await asyncio.Event().wait()

    monkeypatch.setattr(controller_module, "RECORDS_FLUSH_SECONDS", 0.05)
    services = FakeServices()
    services.records = HangingRecords()
    controller = Controller(services)
    controller.choose_language("en")
    controller.decline_consent()
    await asyncio.wait_for(controller.wipe(), 5)
    assert controller.wipes == 1 and services.records.kinds() == ["consent", "summary"]
