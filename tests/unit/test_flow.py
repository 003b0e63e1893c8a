"""The patient flow state machine: every transition, timeouts, failures, staff mode, wipe."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.ui import flow as f
from kiosk.ui.flow import Flow, FlowConfig, Step

PIN = "4821"
PIN_HASH = f.hash_pin(PIN, salt=b"0123456789abcdef", iterations=1000)


def make(*, cleaning_required: bool = False, pin_max_failures: int = 3, pin_lockout: float = 300.0) -> Flow:
    config = FlowConfig(
        staff_pin_hash=PIN_HASH,
        cleaning_required=cleaning_required,
        pin_max_failures=pin_max_failures,
        pin_lockout=pin_lockout,
    )
    return Flow(config)


def feed(flow: Flow, *events: f.Event, now: float = 0.0) -> list[f.Effect]:
    effects: list[f.Effect] = []
    for event in events:
        effects += flow.handle(event, now)
    return effects


def to_step(step: Step, *, cleaning_required: bool = False) -> Flow:
    """A flow walked to ``step`` along the usual path, at time 0."""
    flow = make(cleaning_required=cleaning_required)
    path: list[tuple[Step, f.Event]] = [
        (Step.CONSENT, f.LanguageChosen("en")),
        (Step.IDENTIFICATION, f.ConsentGiven()),
        (Step.REASON, f.CardRead(beneficiaries=1)),
        (Step.SELFCHECK, f.ReasonChosen(f.VisitReason.PAIN)),
        (Step.WAITING, f.SelfCheckDone()),
        (Step.CONSULTATION, f.DoctorJoined()),
        (Step.END, f.ConsultationEnded()),
    ]
    for reached, event in path:
        if flow.step is step:
            return flow
        flow.handle(event, 0.0)
        assert flow.step is reached
    assert flow.step is step
    return flow


# --- the way through ---------------------------------------------------------------------------------------------


def test_starts_on_welcome_without_patient_data() -> None:
    flow = make()
    assert flow.step is Step.WELCOME
    assert flow.screen == "welcome"
    assert not flow.patient_data_present()
    assert flow.next_timer() is None


def test_happy_path_with_effects() -> None:
    flow = make()
    assert feed(flow, f.LanguageChosen("ar")) == [f.Announce("consent.title")]
    assert flow.language == "ar"
    effects = feed(flow, f.ConsentGiven())
    assert f.Audit("consent_given") in effects
    assert flow.step is Step.IDENTIFICATION
    feed(flow, f.CardRead(beneficiaries=1))
    assert flow.step is Step.REASON
    assert flow.beneficiary == 0
    effects = feed(flow, f.ReasonChosen(f.VisitReason.INFECTION))
    assert flow.step is Step.SELFCHECK
    assert f.StartSelfCheck() in effects
    effects = feed(flow, f.SelfCheckDone())
    assert flow.step is Step.WAITING
    assert f.JoinWaitingRoom(f.VisitReason.INFECTION) in effects
    feed(flow, f.WaitingUpdate(position=2, minutes=7))
    assert (flow.waiting_position, flow.waiting_minutes) == (2, 7)
    feed(flow, f.DoctorJoined())
    assert flow.step is Step.CONSULTATION
    feed(flow, f.SasShown("4711"))
    assert flow.sas == "4711"
    effects = feed(flow, f.ConsultationEnded())
    assert flow.step is Step.END
    assert f.Withdraw() not in effects
    effects = feed(flow, f.Finish())
    assert flow.step is Step.WIPE
    assert f.Wipe() in effects
    assert not flow.patient_data_present()
    assert flow.language == "fr"
    feed(flow, f.WipeDone())
    assert flow.step is Step.WELCOME


def test_unknown_language_is_ignored() -> None:
    flow = make()
    assert feed(flow, f.LanguageChosen("xx")) == []
    assert flow.step is Step.WELCOME


def test_language_can_change_midway_without_moving() -> None:
    flow = to_step(Step.REASON)
    feed(flow, f.LanguageChosen("pt"))
    assert (flow.step, flow.language) == (Step.REASON, "pt")


def test_decline_says_goodbye_then_wipes_to_welcome() -> None:
    flow = to_step(Step.CONSENT)
    effects = feed(flow, f.ConsentDeclined())
    assert flow.step is Step.DECLINED
    assert f.Audit("consent_declined") in effects
    assert not flow.consented
    feed(flow, f.Finish())
    assert flow.step is Step.WIPE
    feed(flow, f.WipeDone())
    assert flow.step is Step.WELCOME


def test_decline_goodbye_leaves_by_itself_without_warning() -> None:
    flow = to_step(Step.CONSENT)
    feed(flow, f.ConsentDeclined(), now=100.0)
    assert flow.next_timer() == 115.0
    effects = flow.handle(f.Tick(115.0))
    assert flow.step is Step.WIPE
    assert f.Wipe() in effects
    assert f.Announce("idle.title") not in effects


def test_card_with_several_beneficiaries_asks_who() -> None:
    flow = to_step(Step.IDENTIFICATION)
    feed(flow, f.CardRead(beneficiaries=3))
    assert flow.step is Step.BENEFICIARY
    assert flow.beneficiary_count == 3
    feed(flow, f.BeneficiaryChosen(5))  # out of range: ignored
    assert flow.step is Step.BENEFICIARY
    feed(flow, f.BeneficiaryChosen(2))
    assert (flow.step, flow.beneficiary) == (Step.REASON, 2)


def test_card_reinserted_on_beneficiary_screen_is_read_again() -> None:
    flow = to_step(Step.IDENTIFICATION)
    feed(flow, f.CardRead(beneficiaries=3), f.CardRead(beneficiaries=1))
    assert (flow.step, flow.beneficiary) == (Step.REASON, 0)


def test_manual_entry() -> None:
    flow = to_step(Step.IDENTIFICATION)
    feed(flow, f.ManualEntryChosen())
    assert flow.step is Step.MANUAL_ENTRY
    feed(flow, f.ManualEntry(surname=" ", first_name="Ana", birth_date="01/02/1950"))
    assert flow.step is Step.MANUAL_ENTRY
    feed(flow, f.ManualEntry(surname="Silva", first_name="Ana", birth_date="01/02/1950"))
    assert flow.step is Step.REASON
    assert flow.manual_identity is not None
    assert "Silva" not in repr(flow.manual_identity)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (Step.CONSENT, Step.WELCOME),
        (Step.IDENTIFICATION, Step.CONSENT),
        (Step.REASON, Step.IDENTIFICATION),
        (Step.SELFCHECK, Step.REASON),
    ],
)
def test_back(step: Step, expected: Step) -> None:
    flow = to_step(step)
    feed(flow, f.Back())
    assert flow.step is expected


def test_back_from_reason_forgets_the_beneficiary() -> None:
    flow = to_step(Step.REASON)
    feed(flow, f.Back())
    assert flow.beneficiary is None and flow.beneficiary_count is None


def test_back_from_manual_entry_and_beneficiary() -> None:
    flow = to_step(Step.IDENTIFICATION)
    feed(flow, f.ManualEntryChosen(), f.Back())
    assert flow.step is Step.IDENTIFICATION
    feed(flow, f.CardRead(beneficiaries=2), f.Back())
    assert flow.step is Step.IDENTIFICATION


def test_events_out_of_place_are_ignored() -> None:
    flow = make()
    for event in (f.ConsentGiven(), f.CardRead(2), f.SelfCheckDone(), f.DoctorJoined(), f.Finish(), f.WipeDone()):
        assert feed(flow, event) == []
        assert flow.step is Step.WELCOME


@pytest.mark.parametrize("step", [Step.WAITING, Step.CONSULTATION])
def test_quit_while_connected_withdraws_and_wipes(step: Step) -> None:
    flow = to_step(step)
    effects = feed(flow, f.Quit())
    assert f.Withdraw() in effects
    assert f.Wipe() in effects
    assert flow.step is Step.WIPE
    assert not flow.patient_data_present()


# --- consultation and measurements -------------------------------------------------------------------------------


def test_measurement_needs_patient_confirmation() -> None:
    flow = to_step(Step.CONSULTATION)
    effects = feed(flow, f.MeasurementRequested(f.Measurement.BLOOD_PRESSURE))
    assert f.Announce("measure.blood_pressure.steps") in effects
    assert not any(isinstance(e, f.StartMeasurement) for e in effects)
    effects = feed(flow, f.MeasurementConfirmed())
    assert effects == [f.StartMeasurement(f.Measurement.BLOOD_PRESSURE)]
    assert feed(flow, f.MeasurementConfirmed()) == []  # already running
    feed(flow, f.MeasurementDone())
    assert flow.measurement is None
    assert feed(flow, f.MeasurementConfirmed()) == []


def test_stop_always_stops() -> None:
    flow = to_step(Step.CONSULTATION)
    feed(flow, f.MeasurementRequested(f.Measurement.OXIMETER), f.MeasurementConfirmed())
    assert feed(flow, f.Stop()) == [f.StopMeasurements()]
    assert flow.measurement is None
    assert feed(make(), f.Stop()) == [f.StopMeasurements()]


def test_consultation_end_stops_a_running_measurement() -> None:
    flow = to_step(Step.CONSULTATION)
    feed(flow, f.MeasurementRequested(f.Measurement.THERMOMETER), f.MeasurementConfirmed())
    effects = feed(flow, f.ConsultationEnded())
    assert f.StopMeasurements() in effects
    assert flow.step is Step.END


# --- idle timeouts -----------------------------------------------------------------------------------------------


def test_idle_warning_then_wipe() -> None:
    flow = to_step(Step.REASON)  # 120 s, warning 20 s before
    assert flow.next_timer() == 100.0
    assert flow.handle(f.Tick(99.0)) == []
    assert not flow.warning
    assert flow.handle(f.Tick(100.0)) == [f.Announce("idle.title")]
    assert flow.warning
    assert flow.seconds_left() == 20.0
    assert flow.next_timer() == 120.0
    effects = flow.handle(f.Tick(120.0))
    assert f.Audit("idle_timeout") in effects
    assert f.Wipe() in effects
    assert flow.step is Step.WIPE
    assert not flow.warning
    assert not flow.patient_data_present()
    feed(flow, f.WipeDone(), now=121.0)
    assert flow.step is Step.WELCOME


def test_touch_during_warning_keeps_the_patient() -> None:
    flow = to_step(Step.CONSENT)  # 180 s
    flow.handle(f.Tick(165.0))
    assert flow.warning
    flow.handle(f.Touch(), 170.0)
    assert not flow.warning
    assert flow.next_timer() == 330.0
    assert flow.handle(f.Tick(300.0)) == []
    assert flow.step is Step.CONSENT


def test_background_events_do_not_count_as_presence() -> None:
    flow = to_step(Step.SELFCHECK)
    flow.handle(f.Recovered(f.FailureKind.NETWORK_LOST), 50.0)  # not showing: ignored anyway
    assert flow.next_timer() == 160.0


def test_late_tick_expires_directly() -> None:
    flow = to_step(Step.END)
    effects = flow.handle(f.Tick(10_000.0))
    assert flow.step is Step.WIPE
    assert f.Wipe() in effects


def test_waiting_and_consultation_have_no_idle_timeout() -> None:
    for step in (Step.WAITING, Step.CONSULTATION):
        flow = to_step(step)
        assert flow.next_timer() is None
        flow.handle(f.Tick(1e6))
        assert flow.step is step


def test_time_never_goes_back() -> None:
    flow = to_step(Step.REASON)
    flow.handle(f.Tick(110.0))
    flow.handle(f.Touch(), 5.0)  # a clock that jumped back counts as "now"
    assert flow.next_timer() == 210.0


def test_wipe_is_asked_again_when_not_confirmed() -> None:
    flow = to_step(Step.END)
    feed(flow, f.Finish(), now=0.0)
    assert flow.handle(f.Tick(30.0)) == [f.Wipe()]
    assert flow.step is Step.WIPE


# --- failures ----------------------------------------------------------------------------------------------------


def test_card_unreadable_then_retry() -> None:
    flow = to_step(Step.IDENTIFICATION)
    effects = feed(flow, f.Failure(f.FailureKind.CARD_UNREADABLE))
    assert f.Announce("failure.card_unreadable.title") in effects
    assert flow.screen == "failure.card_unreadable"
    assert flow.step is Step.IDENTIFICATION
    feed(flow, f.Dismiss())
    assert flow.failure is None
    assert flow.screen == "identification"


def test_card_with_no_beneficiary_is_unreadable() -> None:
    flow = to_step(Step.IDENTIFICATION)
    feed(flow, f.CardRead(beneficiaries=0))
    assert flow.failure is f.FailureKind.CARD_UNREADABLE


def test_card_unreadable_then_manual_entry() -> None:
    flow = to_step(Step.IDENTIFICATION)
    feed(flow, f.Failure(f.FailureKind.CARD_UNREADABLE), f.ManualEntryChosen())
    assert flow.step is Step.MANUAL_ENTRY
    assert flow.failure is None


def test_card_reread_after_failure_moves_on() -> None:
    flow = to_step(Step.IDENTIFICATION)
    feed(flow, f.Failure(f.FailureKind.CARD_UNREADABLE), f.CardRead(1))
    assert (flow.step, flow.failure) == (Step.REASON, None)


def test_network_lost_recovers_by_itself() -> None:
    flow = to_step(Step.WAITING)
    feed(flow, f.Failure(f.FailureKind.NETWORK_LOST))
    assert flow.screen == "failure.network_lost"
    feed(flow, f.Dismiss())  # the patient cannot wish the network back
    assert flow.failure is f.FailureKind.NETWORK_LOST
    feed(flow, f.Recovered(f.FailureKind.NETWORK_LOST))
    assert flow.failure is None
    assert flow.step is Step.WAITING
    assert flow.next_timer() is None


def test_network_never_back_wipes() -> None:
    flow = to_step(Step.CONSULTATION)
    feed(flow, f.Failure(f.FailureKind.NETWORK_LOST), now=10.0)
    assert flow.next_timer() == 10.0 + 300 - 30
    flow.handle(f.Tick(280.0))
    assert flow.warning
    effects = flow.handle(f.Tick(310.0))
    assert f.Withdraw() in effects and f.Wipe() in effects
    assert flow.step is Step.WIPE


def test_doctor_gone_then_back() -> None:
    flow = to_step(Step.CONSULTATION)
    feed(flow, f.MeasurementRequested(f.Measurement.BLOOD_PRESSURE), f.MeasurementConfirmed())
    effects = feed(flow, f.Failure(f.FailureKind.DOCTOR_GONE))
    assert f.StopMeasurements() in effects
    assert flow.screen == "failure.doctor_gone"
    feed(flow, f.DoctorJoined())
    assert flow.failure is None
    assert flow.step is Step.CONSULTATION


def test_no_confirmation_while_a_failure_shows() -> None:
    flow = to_step(Step.CONSULTATION)
    feed(flow, f.MeasurementRequested(f.Measurement.OXIMETER), f.Failure(f.FailureKind.PERIPHERAL_FAILING))
    assert feed(flow, f.MeasurementConfirmed()) == []


def test_peripheral_failing_is_dismissable() -> None:
    flow = to_step(Step.SELFCHECK)
    feed(flow, f.Failure(f.FailureKind.PERIPHERAL_FAILING), f.Dismiss())
    assert flow.failure is None
    feed(flow, f.SelfCheckDone())
    assert flow.step is Step.WAITING


@pytest.mark.parametrize(
    ("step", "kind"),
    [
        (Step.WELCOME, f.FailureKind.NETWORK_LOST),
        (Step.REASON, f.FailureKind.CARD_UNREADABLE),
        (Step.WAITING, f.FailureKind.DOCTOR_GONE),
    ],
)
def test_failures_out_of_place_are_ignored(step: Step, kind: f.FailureKind) -> None:
    flow = to_step(step)
    assert feed(flow, f.Failure(kind)) == []
    assert flow.failure is None


# --- staff mode and cleaning ---------------------------------------------------------------------------------------


def test_pin_hash_round_trip_and_malformed() -> None:
    assert f.verify_pin(PIN, PIN_HASH)
    assert not f.verify_pin("0000", PIN_HASH)
    assert not f.verify_pin(PIN, "")
    assert not f.verify_pin(PIN, "md5$1$00$00")
    assert not f.verify_pin(PIN, "pbkdf2_sha256$x$00$00")
    assert not f.verify_pin(PIN, "pbkdf2_sha256$0$00$00")
    assert f.hash_pin(PIN, iterations=10) != f.hash_pin(PIN, iterations=10)  # salted


def test_staff_right_pin() -> None:
    flow = make()
    feed(flow, f.StaffRequested())
    assert flow.step is Step.STAFF_PIN
    effects = feed(flow, f.PinEntered(PIN))
    assert f.Audit("staff_login") in effects
    assert flow.step is Step.STAFF
    feed(flow, f.StaffExit())
    assert flow.step is Step.WELCOME


def test_staff_self_test() -> None:
    flow = make()
    assert feed(flow, f.SelfTestRequested()) == []  # not outside staff mode
    feed(flow, f.StaffRequested(), f.PinEntered(PIN))
    assert feed(flow, f.SelfTestRequested()) == [f.StartSelfCheck()]
    assert flow.step is Step.STAFF


def test_staff_wrong_pin_then_lockout() -> None:
    flow = make(pin_max_failures=3, pin_lockout=300.0)
    feed(flow, f.StaffRequested())
    feed(flow, f.PinEntered("1111"), f.PinEntered("2222"), now=1.0)
    assert flow.pin_error is f.PinError.WRONG
    effects = feed(flow, f.PinEntered("3333"), now=2.0)
    assert f.Audit("staff_pin_locked") in effects
    assert flow.pin_error is f.PinError.LOCKED
    assert flow.pin_locked_for() == 300.0
    feed(flow, f.PinEntered(PIN), now=100.0)  # right PIN, but locked: not even checked
    assert flow.step is Step.STAFF_PIN
    assert flow.pin_error is f.PinError.LOCKED
    flow.handle(f.Touch(), 302.0)
    feed(flow, f.PinEntered(PIN), now=302.0)
    assert flow.step is Step.STAFF


def test_lockout_survives_leaving_the_keypad() -> None:
    flow = make(pin_max_failures=1)
    feed(flow, f.StaffRequested(), f.PinEntered("9"), f.Back(), f.StaffRequested(), f.PinEntered(PIN), now=1.0)
    assert flow.step is Step.STAFF_PIN


def test_staff_mode_disabled_without_hash() -> None:
    flow = Flow(FlowConfig())
    assert feed(flow, f.StaffRequested()) == []
    assert flow.step is Step.WELCOME


def test_staff_keypad_times_out() -> None:
    flow = make()
    feed(flow, f.StaffRequested())
    flow.handle(f.Tick(60.0))
    assert flow.step is Step.WIPE


def test_cleaning_gate() -> None:
    flow = to_step(Step.END, cleaning_required=True)
    feed(flow, f.Finish(), f.WipeDone())
    assert flow.step is Step.CLEANING
    assert flow.cleaning_pending
    assert feed(flow, f.LanguageChosen("fr")) == []  # no new session yet
    feed(flow, f.StaffRequested(), f.PinEntered(PIN))
    assert flow.step is Step.STAFF
    feed(flow, f.StaffExit())
    assert flow.step is Step.CLEANING  # not confirmed yet
    feed(flow, f.StaffRequested(), f.PinEntered(PIN), f.CleaningConfirmed(), f.StaffExit())
    assert flow.step is Step.WELCOME
    assert not flow.cleaning_pending


def test_cleaning_gate_not_needed_after_a_decline() -> None:
    flow = to_step(Step.CONSENT, cleaning_required=True)
    feed(flow, f.ConsentDeclined(), f.Finish(), f.WipeDone())
    assert flow.step is Step.WELCOME


def test_cleaning_gate_disabled() -> None:
    flow = to_step(Step.END)
    feed(flow, f.Finish(), f.WipeDone())
    assert flow.step is Step.WELCOME


def test_every_step_has_a_prompt_and_a_timeout_entry() -> None:
    assert set(f.PROMPTS) == set(Step)
    assert set(f.DEFAULT_TIMEOUTS) == set(Step)


# --- properties --------------------------------------------------------------------------------------------------

_REASONS = st.sampled_from(list(f.VisitReason))
_KINDS = st.sampled_from(list(f.FailureKind))
_EVENTS: st.SearchStrategy[f.Event] = st.one_of(
    st.builds(f.LanguageChosen, st.sampled_from(["fr", "en", "es", "pt", "ar", "xx"])),
    st.just(f.ConsentGiven()),
    st.just(f.ConsentDeclined()),
    st.builds(f.CardRead, st.integers(-1, 4)),
    st.builds(f.BeneficiaryChosen, st.integers(-1, 4)),
    st.just(f.ManualEntryChosen()),
    st.builds(f.ManualEntry, st.sampled_from(["", "Silva"]), st.just("Ana"), st.just("01/02/1950")),
    st.builds(f.ReasonChosen, _REASONS),
    st.just(f.SelfCheckDone()),
    st.builds(f.WaitingUpdate, st.integers(-1, 9), st.none() | st.integers(-1, 60)),
    st.just(f.DoctorJoined()),
    st.builds(f.SasShown, st.just("1234")),
    st.builds(f.MeasurementRequested, st.sampled_from(list(f.Measurement))),
    st.just(f.MeasurementConfirmed()),
    st.just(f.MeasurementDone()),
    st.just(f.Stop()),
    st.just(f.ConsultationEnded()),
    st.just(f.Finish()),
    st.just(f.Back()),
    st.just(f.Quit()),
    st.just(f.Touch()),
    st.builds(f.Failure, _KINDS),
    st.builds(f.Recovered, _KINDS),
    st.just(f.Dismiss()),
    st.just(f.WipeDone()),
    st.just(f.StaffRequested()),
    st.builds(f.PinEntered, st.sampled_from([PIN, "0000"])),
    st.just(f.SelfTestRequested()),
    st.just(f.CleaningConfirmed()),
    st.just(f.StaffExit()),
)


# What a patient (or a peer) would most likely do next on each screen: mixed with random events,
# it lets random sequences reach the consultation and the end instead of dying on the welcome screen.
_LIKELY: dict[Step, list[f.Event]] = {
    Step.WELCOME: [f.LanguageChosen("fr"), f.LanguageChosen("ar"), f.StaffRequested()],
    Step.CONSENT: [f.ConsentGiven(), f.ConsentGiven(), f.ConsentDeclined()],
    Step.DECLINED: [f.Finish()],
    Step.IDENTIFICATION: [
        f.CardRead(1),
        f.CardRead(3),
        f.ManualEntryChosen(),
        f.Failure(f.FailureKind.CARD_UNREADABLE),
    ],
    Step.BENEFICIARY: [f.BeneficiaryChosen(0), f.BeneficiaryChosen(2)],
    Step.MANUAL_ENTRY: [f.ManualEntry("Silva", "Ana", "01/02/1950")],
    Step.REASON: [f.ReasonChosen(reason) for reason in f.VisitReason],
    Step.SELFCHECK: [f.SelfCheckDone(), f.Failure(f.FailureKind.PERIPHERAL_FAILING)],
    Step.WAITING: [f.WaitingUpdate(3, 12), f.DoctorJoined(), f.Failure(f.FailureKind.NETWORK_LOST)],
    Step.CONSULTATION: [
        f.SasShown("1234"),
        f.MeasurementRequested(f.Measurement.BLOOD_PRESSURE),
        f.MeasurementConfirmed(),
        f.MeasurementDone(),
        f.Failure(f.FailureKind.DOCTOR_GONE),
        f.ConsultationEnded(),
    ],
    Step.END: [f.Finish()],
    Step.WIPE: [f.WipeDone()],
    Step.CLEANING: [f.StaffRequested()],
    Step.STAFF_PIN: [f.PinEntered(PIN), f.PinEntered("0000")],
    Step.STAFF: [f.SelfTestRequested(), f.CleaningConfirmed(), f.StaffExit()],
}
_STARTS = [Step.WELCOME, Step.IDENTIFICATION, Step.SELFCHECK, Step.WAITING, Step.CONSULTATION, Step.END]
_SHORT = st.floats(0, 15, allow_nan=False)
_DELAYS = st.one_of(_SHORT, _SHORT, _SHORT, st.floats(0, 400, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), start=st.sampled_from(_STARTS), length=st.integers(0, 80), cleaning=st.booleans())
def test_random_sequences_never_raise_and_wipe_forgets(
    data: st.DataObject, start: Step, length: int, cleaning: bool
) -> None:
    flow = to_step(start, cleaning_required=cleaning)
    now = 0.0
    for _ in range(length):
        likely = st.sampled_from(_LIKELY[flow.step])
        event = data.draw(st.one_of(likely, likely, likely, _EVENTS))
        now += data.draw(_DELAYS)
        for current in (event, f.Tick(now)):
            effects = flow.handle(current, now)
            assert flow.step in Step
            if any(isinstance(effect, f.Wipe) for effect in effects):
                assert not flow.patient_data_present()
                assert flow.step is Step.WIPE
            if any(isinstance(effect, f.StartMeasurement) for effect in effects):
                assert flow.step is Step.CONSULTATION
            if flow.failure is not None:
                assert flow.screen.startswith("failure.")
            if flow.step not in f._PATIENT_STEPS:
                assert not flow.patient_data_present()
        # Once ticked, no timer is overdue.
        timer = flow.next_timer()
        assert timer is None or timer > now
    if flow.step not in {Step.WAITING, Step.CONSULTATION, Step.CLEANING, Step.WELCOME} or flow.failure is not None:
        # Left alone long enough, every other screen ends up back at rest (once the wipe is confirmed).
        flow.handle(f.Tick(now + 10_000))
        flow.handle(f.Tick(now + 20_000))
        flow.handle(f.WipeDone(), now + 20_000)
        assert flow.step in {Step.WELCOME, Step.CLEANING}
        assert not flow.patient_data_present()
