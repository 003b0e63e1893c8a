"""The patient's way through the booth, as a sans-IO state machine.

The screens (Kivy) feed it typed events and execute the effects it returns; it
never touches a clock, a widget, a device or the network. Rules it keeps:

- The way through is WELCOME → CONSENT → IDENTIFICATION (→ BENEFICIARY when the
  card holds several people, or → MANUAL_ENTRY without a card) → REASON →
  SELFCHECK → WAITING → CONSULTATION → END → WIPE → WELCOME. A declined consent
  goes to DECLINED (a polite goodbye), then WIPE.
- Every step but WELCOME, CLEANING and WIPE has an idle timeout. The warning
  shows ``warn`` seconds before expiry; a touch hides it and restarts the timer.
  On expiry the flow goes to WIPE. WAITING and CONSULTATION have no idle timeout
  by default (nobody touches the screen while talking to a doctor), but a failure
  screen shown there has one.
- Entering WIPE emits :class:`Wipe` and forgets everything about the patient in
  the same call; the flow leaves WIPE on :class:`WipeDone`, sent by whoever
  executed the wipe. When the pharmacy asks for cleaning between patients, a
  session where consent was given is followed by CLEANING instead of WELCOME,
  until staff confirm it.
- A failure (card unreadable, peripheral failing, network lost, doctor gone) is
  an overlay on the current step: the step keeps its data and resumes once the
  failure is recovered, dismissed, or the step moves on.
- STOP is honoured in every step: it always emits :class:`StopMeasurements`.
- Events that make no sense in the current step are ignored, never raised on:
  they come from touches and peers that race with the flow.

Time is passed in: ``handle(event, now)``, and ``next_timer()`` says when the
next :class:`Tick` is due (as aioquic's ``get_timer`` / ``handle_timer``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from kiosk.ui.i18n import LANGUAGES

logger = logging.getLogger(__name__)


class Step(enum.Enum):
    """Where the patient (or staff) is. Values are the screen names."""

    WELCOME = "welcome"
    CONSENT = "consent"
    DECLINED = "declined"
    IDENTIFICATION = "identification"
    BENEFICIARY = "beneficiary"
    MANUAL_ENTRY = "manual_entry"
    REASON = "reason"
    SELFCHECK = "selfcheck"
    WAITING = "waiting"
    CONSULTATION = "consultation"
    END = "end"
    WIPE = "wipe"
    CLEANING = "cleaning"
    STAFF_PIN = "staff_pin"
    STAFF = "staff"


class FailureKind(enum.Enum):
    """A failure the patient can meet; each has its own calm screen."""

    CARD_UNREADABLE = "card_unreadable"
    PERIPHERAL_FAILING = "peripheral_failing"
    NETWORK_LOST = "network_lost"
    DOCTOR_GONE = "doctor_gone"


class VisitReason(enum.Enum):
    """The few, big choices on the reason screen."""

    INFECTION = "infection"
    PAIN = "pain"
    SKIN = "skin"
    RENEWAL = "renewal"
    OTHER = "other"


class Measurement(enum.Enum):
    """Measurements the doctor can ask for that need the patient's help."""

    OXIMETER = "oximeter"
    BLOOD_PRESSURE = "blood_pressure"
    THERMOMETER = "thermometer"


# --- events in -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LanguageChosen:
    """The patient picked a language (on the welcome screen, or later from the language button)."""

    language: str
    """A code from :data:`LANGUAGES`; others are ignored."""


@dataclass(frozen=True)
class ConsentGiven:
    """The patient accepted the consent text."""


@dataclass(frozen=True)
class ConsentDeclined:
    """The patient declined; the booth says goodbye."""


@dataclass(frozen=True)
class CardRead:
    """The card reader read a Carte Vitale."""

    beneficiaries: int
    """How many people the card holds; 0 means nothing usable (shown as unreadable)."""


@dataclass(frozen=True)
class BeneficiaryChosen:
    """The patient picked who consults, among the card's beneficiaries."""

    index: int
    """Position in the card's list, from 0."""


@dataclass(frozen=True)
class ManualEntryChosen:
    """The patient has no card and will type their details."""


@dataclass(frozen=True)
class ManualEntry:
    """The patient submitted their details by hand (kept out of ``repr``, so out of any log)."""

    surname: str = field(repr=False)
    first_name: str = field(repr=False)
    birth_date: str = field(repr=False)
    """As typed (DD/MM/YYYY); the screen validates the format."""


@dataclass(frozen=True)
class ReasonChosen:
    """The patient picked why they came."""

    reason: VisitReason


@dataclass(frozen=True)
class SelfCheckDone:
    """Camera, microphone, speaker and peripherals were checked (failures come as :class:`Failure`)."""


@dataclass(frozen=True)
class WaitingUpdate:
    """The waiting room's news for this booth."""

    position: int
    """1 means next."""
    minutes: int | None
    """Honest estimate of the wait, or None when unknown."""


@dataclass(frozen=True)
class DoctorJoined:
    """A doctor accepted the call (or came back after leaving)."""


@dataclass(frozen=True)
class SasShown:
    """The short authentication string both sides read aloud."""

    sas: str


@dataclass(frozen=True)
class MeasurementRequested:
    """The doctor asks for a measurement: the booth shows how to place the device."""

    kind: Measurement


@dataclass(frozen=True)
class MeasurementConfirmed:
    """The patient says the device is in place; only now may it start (a cuff inflates)."""


@dataclass(frozen=True)
class MeasurementDone:
    """The measurement finished (reading sent, or stopped by the doctor)."""


@dataclass(frozen=True)
class Stop:
    """The big STOP button: stop any measurement at once."""


@dataclass(frozen=True)
class ConsultationEnded:
    """The consultation is over (the doctor ended it, or the patient hung up)."""


@dataclass(frozen=True)
class Finish:
    """The patient leaves the goodbye or end screen."""


@dataclass(frozen=True)
class Back:
    """The patient goes one step back."""


@dataclass(frozen=True)
class Quit:
    """The patient stops the session (the screen asked for confirmation first)."""


@dataclass(frozen=True)
class Touch:
    """Any touch on the screen: the patient is still there."""


@dataclass(frozen=True)
class Tick:
    """Time passes; sent at :meth:`Flow.next_timer` (or more often)."""

    now: float


@dataclass(frozen=True)
class Failure:
    """Something the patient must be told about went wrong."""

    kind: FailureKind


@dataclass(frozen=True)
class Recovered:
    """The failure went away by itself (reconnected, peripheral back)."""

    kind: FailureKind


@dataclass(frozen=True)
class Dismiss:
    """The patient acknowledged a failure screen ("Try again" / "Continue")."""


@dataclass(frozen=True)
class WipeDone:
    """Every service confirmed the wipe; the booth may show the next screen."""


@dataclass(frozen=True)
class StaffRequested:
    """The hidden staff gesture on the welcome or cleaning screen."""


@dataclass(frozen=True)
class PinEntered:
    """Staff typed a PIN."""

    pin: str


@dataclass(frozen=True)
class SelfTestRequested:
    """Staff ask for the peripheral self-test."""


@dataclass(frozen=True)
class CleaningConfirmed:
    """Staff confirm the booth was cleaned."""


@dataclass(frozen=True)
class StaffExit:
    """Staff leave staff mode."""


Event = (
    LanguageChosen
    | ConsentGiven
    | ConsentDeclined
    | CardRead
    | BeneficiaryChosen
    | ManualEntryChosen
    | ManualEntry
    | ReasonChosen
    | SelfCheckDone
    | WaitingUpdate
    | DoctorJoined
    | SasShown
    | MeasurementRequested
    | MeasurementConfirmed
    | MeasurementDone
    | Stop
    | ConsultationEnded
    | Finish
    | Back
    | Quit
    | Touch
    | Tick
    | Failure
    | Recovered
    | Dismiss
    | WipeDone
    | StaffRequested
    | PinEntered
    | SelfTestRequested
    | CleaningConfirmed
    | StaffExit
)

# --- effects out -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Announce:
    """Show (and, with spoken prompts on, say) this catalog message."""

    message: str
    """A msgid of the ``kiosk`` catalog."""


@dataclass(frozen=True)
class Wipe:
    """Erase every trace of the patient: UI state, chat, stills, card data, buffers, temporary files."""


@dataclass(frozen=True)
class Withdraw:
    """Leave the waiting room or hang up the call."""


@dataclass(frozen=True)
class JoinWaitingRoom:
    """Enter the waiting room."""

    reason: VisitReason


@dataclass(frozen=True)
class StartSelfCheck:
    """Test camera, microphone, speaker and peripherals."""


@dataclass(frozen=True)
class StartMeasurement:
    """Start the measurement the patient just confirmed."""

    kind: Measurement


@dataclass(frozen=True)
class StopMeasurements:
    """Stop every running measurement now (deflate the cuff)."""


@dataclass(frozen=True)
class Audit:
    """An audit event; never carries patient data."""

    event: str


Effect = Announce | Wipe | Withdraw | JoinWaitingRoom | StartSelfCheck | StartMeasurement | StopMeasurements | Audit

# --- configuration ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeout:
    """An idle timeout: expire after ``expire`` seconds without activity, warn ``warn`` seconds before."""

    expire: float
    warn: float = 20.0
    """0 (or not less than ``expire``) means no warning phase."""


DEFAULT_TIMEOUTS: Mapping[Step, Timeout | None] = {
    Step.WELCOME: None,
    Step.CONSENT: Timeout(180),
    Step.DECLINED: Timeout(15, warn=0),
    Step.IDENTIFICATION: Timeout(150),
    Step.BENEFICIARY: Timeout(120),
    Step.MANUAL_ENTRY: Timeout(240),
    Step.REASON: Timeout(120),
    Step.SELFCHECK: Timeout(180),
    Step.WAITING: None,
    Step.CONSULTATION: None,
    Step.END: Timeout(120),
    # Not an idle timeout: a wipe not confirmed by then is asked for again.
    Step.WIPE: Timeout(30, warn=0),
    Step.CLEANING: None,
    Step.STAFF_PIN: Timeout(60),
    Step.STAFF: Timeout(180),
}

PROMPTS: Mapping[Step, str] = {
    Step.WELCOME: "welcome.choose_language",
    Step.CONSENT: "consent.title",
    Step.DECLINED: "declined.title",
    Step.IDENTIFICATION: "identification.insert",
    Step.BENEFICIARY: "beneficiary.title",
    Step.MANUAL_ENTRY: "manual.title",
    Step.REASON: "reason.title",
    Step.SELFCHECK: "selfcheck.title",
    Step.WAITING: "waiting.title",
    Step.CONSULTATION: "consultation.sas_title",
    Step.END: "end.title",
    Step.WIPE: "wipe.title",
    Step.CLEANING: "cleaning.title",
    Step.STAFF_PIN: "staff.pin",
    Step.STAFF: "staff.title",
}
"""The message announced on entering each step."""

_FAILURE_STEPS: Mapping[FailureKind, frozenset[Step]] = {
    FailureKind.CARD_UNREADABLE: frozenset({Step.IDENTIFICATION, Step.BENEFICIARY}),
    FailureKind.PERIPHERAL_FAILING: frozenset({Step.SELFCHECK, Step.WAITING, Step.CONSULTATION}),
    FailureKind.NETWORK_LOST: frozenset({Step.SELFCHECK, Step.WAITING, Step.CONSULTATION}),
    FailureKind.DOCTOR_GONE: frozenset({Step.CONSULTATION}),
}
# The patient may close these screens; the others go away when the problem does.
_DISMISSABLE = frozenset({FailureKind.CARD_UNREADABLE, FailureKind.PERIPHERAL_FAILING})

_PATIENT_STEPS = frozenset(
    {
        Step.CONSENT,
        Step.DECLINED,
        Step.IDENTIFICATION,
        Step.BENEFICIARY,
        Step.MANUAL_ENTRY,
        Step.REASON,
        Step.SELFCHECK,
        Step.WAITING,
        Step.CONSULTATION,
        Step.END,
    }
)
_CONNECTED_STEPS = frozenset({Step.WAITING, Step.CONSULTATION})
_BACK: Mapping[Step, Step] = {
    Step.CONSENT: Step.WELCOME,
    Step.IDENTIFICATION: Step.CONSENT,
    Step.BENEFICIARY: Step.IDENTIFICATION,
    Step.MANUAL_ENTRY: Step.IDENTIFICATION,
    Step.REASON: Step.IDENTIFICATION,
    Step.SELFCHECK: Step.REASON,
}
# Events that are not a sign of the patient's presence: they do not restart the idle timer.
_BACKGROUND = (Tick, WaitingUpdate, SasShown, Recovered, WipeDone, MeasurementDone)


@dataclass(frozen=True)
class FlowConfig:
    """What the pharmacy and the technician set."""

    staff_pin_hash: str = ""
    """From :func:`hash_pin`; empty disables staff mode."""
    cleaning_required: bool = False
    """The next session waits for staff to confirm cleaning."""
    timeouts: Mapping[Step, Timeout | None] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    failure_timeout: Timeout = Timeout(300, warn=30)
    """Idle timeout while a failure screen shows (network never back, doctor never back)."""
    default_language: str = "fr"
    pin_max_failures: int = 3
    """Wrong PINs in a row before the keypad locks."""
    pin_lockout: float = 300.0
    """Seconds the keypad stays locked."""


# --- staff PIN -------------------------------------------------------------------------------------------------

_PIN_SCHEME = "pbkdf2_sha256"


def hash_pin(pin: str, *, salt: bytes | None = None, iterations: int = 600_000) -> str:
    """Hash a staff PIN for the configuration: ``pbkdf2_sha256$iterations$salt_hex$hash_hex``."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"{_PIN_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, encoded: str) -> bool:
    """True when ``pin`` matches ``encoded`` (from :func:`hash_pin`); a malformed hash never matches."""
    try:
        scheme, iterations_text, salt_hex, digest_hex = encoded.split("$")
        iterations = int(iterations_text)
        salt = bytes.fromhex(salt_hex)
        expected = bytes.fromhex(digest_hex)
    except ValueError:
        return False
    if scheme != _PIN_SCHEME or iterations < 1 or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return hmac.compare_digest(digest, expected)


# --- the flow --------------------------------------------------------------------------------------------------


class PinError(enum.Enum):
    """Why the last PIN was refused (shown on the keypad)."""

    WRONG = "wrong"
    LOCKED = "locked"


class Flow:
    """The patient's way through the booth. Feed :meth:`handle`; execute the effects it returns."""

    def __init__(self, config: FlowConfig | None = None, *, now: float = 0.0) -> None:
        self.config = config or FlowConfig()
        self._now = now
        self._step = Step.WELCOME
        self.language = self.config.default_language
        self.failure: FailureKind | None = None
        """The failure screen showing over the step, if any."""
        self.warning = False
        """The idle warning is showing."""
        self.cleaning_pending = False
        self.pin_error: PinError | None = None
        self._pin_failures = 0
        self._pin_locked_until = float("-inf")
        self._staff_return = Step.WELCOME
        self._deadline: float | None = None
        self._warn_at: float | None = None
        self._clear_patient()

    # -- outputs

    @property
    def step(self) -> Step:
        return self._step

    @property
    def screen(self) -> str:
        """The screen to show: the failure's when one is showing, else the step's."""
        return f"failure.{self.failure.value}" if self.failure is not None else self._step.value

    def seconds_left(self) -> float | None:
        """Seconds before the idle timeout expires (for the warning's countdown), or None."""
        return None if self._deadline is None else max(0.0, self._deadline - self._now)

    def pin_locked_for(self) -> float:
        """Seconds the staff keypad stays locked (0 when open)."""
        return max(0.0, self._pin_locked_until - self._now)

    def next_timer(self) -> float | None:
        """When the next :class:`Tick` is due, or None when no timer runs."""
        if self._warn_at is not None and not self.warning:
            return self._warn_at
        return self._deadline

    def patient_data_present(self) -> bool:
        """True while the flow holds anything about the patient."""
        return (
            self.consented
            or self.beneficiary_count is not None
            or self.beneficiary is not None
            or self.manual_identity is not None
            or self.reason is not None
            or self.sas is not None
            or self.measurement is not None
            or self.waiting_position is not None
            or self.waiting_minutes is not None
        )

    # -- input

    def handle(self, event: Event, now: float | None = None) -> list[Effect]:
        """Apply one event at time ``now`` (a :class:`Tick` carries its own); return the effects to execute.

        Never raises on events that do not fit the current step: they are ignored.
        """
        if isinstance(event, Tick):
            now = event.now
        if now is not None and now > self._now:
            self._now = now  # time never goes back, whatever the caller's clock does
        effects: list[Effect] = []
        if isinstance(event, Tick):
            self._on_timer(effects)
            return effects
        accepted = self._dispatch(event, effects)
        if accepted and not isinstance(event, _BACKGROUND):
            self._activity()
        return effects

    # -- internals

    def _clear_patient(self) -> None:
        self.consented = False
        self.beneficiary_count: int | None = None
        self.beneficiary: int | None = None
        self.manual_identity: ManualEntry | None = None
        self.reason: VisitReason | None = None
        self.sas: str | None = None
        self.measurement: Measurement | None = None
        self.measurement_running = False
        self.waiting_position: int | None = None
        self.waiting_minutes: int | None = None

    def _timeout(self) -> Timeout | None:
        if self.failure is not None and self._step is not Step.WIPE:
            return self.config.failure_timeout
        return self.config.timeouts.get(self._step)

    def _activity(self) -> None:
        self.warning = False
        timeout = self._timeout()
        if timeout is None:
            self._deadline = self._warn_at = None
            return
        self._deadline = self._now + timeout.expire
        has_warning = 0 < timeout.warn < timeout.expire
        self._warn_at = self._deadline - timeout.warn if has_warning else None

    def _on_timer(self, effects: list[Effect]) -> None:
        if self._deadline is not None and self._now >= self._deadline:
            if self._step is Step.WIPE:
                logger.warning("wipe not confirmed in time; asking again")
                effects.append(Wipe())
                self._activity()
            else:
                logger.info("idle timeout in %s", self._step.value)
                effects.append(Audit("idle_timeout"))
                self._go_wipe(effects)
            return
        if self._warn_at is not None and not self.warning and self._now >= self._warn_at:
            self.warning = True
            effects.append(Announce("idle.title"))

    def _set_step(self, step: Step, effects: list[Effect]) -> None:
        old = self._step
        if old in _CONNECTED_STEPS and step not in _CONNECTED_STEPS and step is not Step.END:
            effects.append(Withdraw())
        if self.measurement is not None and step is not Step.CONSULTATION:
            self._stop_measurement(effects)
        self._step = step
        self.failure = None
        logger.info("flow %s -> %s", old.value, step.value)
        effects.append(Announce(PROMPTS[step]))
        self._activity()

    def _go_wipe(self, effects: list[Effect]) -> None:
        if self.consented and self.config.cleaning_required:
            self.cleaning_pending = True
        self._set_step(Step.WIPE, effects)
        self._clear_patient()
        self.language = self.config.default_language
        self.pin_error = None
        effects.append(Wipe())

    def _rest_step(self) -> Step:
        return Step.CLEANING if self.cleaning_pending else Step.WELCOME

    def _stop_measurement(self, effects: list[Effect]) -> None:
        self.measurement = None
        self.measurement_running = False
        effects.append(StopMeasurements())

    def _identified(self, effects: list[Effect]) -> None:
        self._set_step(Step.REASON, effects)

    def _dispatch(self, event: Event, effects: list[Effect]) -> bool:
        step = self._step
        match event:
            case Touch():
                return True
            case Stop():
                # Whatever the flow believes, the cuff must deflate.
                self._stop_measurement(effects)
                return True
            case LanguageChosen(language=language):
                if language not in LANGUAGES or step not in {Step.WELCOME, *_PATIENT_STEPS}:
                    return False
                self.language = language
                if step is Step.WELCOME:
                    self._set_step(Step.CONSENT, effects)
                return True
            case ConsentGiven() if step is Step.CONSENT:
                self.consented = True
                effects.append(Audit("consent_given"))
                self._set_step(Step.IDENTIFICATION, effects)
                return True
            case ConsentDeclined() if step is Step.CONSENT:
                effects.append(Audit("consent_declined"))
                self._set_step(Step.DECLINED, effects)
                return True
            case CardRead(beneficiaries=count) if step in {Step.IDENTIFICATION, Step.BENEFICIARY}:
                self.beneficiary = None
                if count < 1:
                    self.beneficiary_count = None
                    return self._fail(FailureKind.CARD_UNREADABLE, effects)
                self.beneficiary_count = count
                effects.append(Audit("card_read"))
                if count == 1:
                    self.beneficiary = 0
                    self._identified(effects)
                else:
                    self._set_step(Step.BENEFICIARY, effects)
                return True
            case BeneficiaryChosen(index=index) if step is Step.BENEFICIARY:
                if self.beneficiary_count is None or not 0 <= index < self.beneficiary_count:
                    return False
                self.beneficiary = index
                self._identified(effects)
                return True
            case ManualEntryChosen() if step is Step.IDENTIFICATION:
                self._set_step(Step.MANUAL_ENTRY, effects)
                return True
            case ManualEntry() if step is Step.MANUAL_ENTRY:
                if not (event.surname.strip() and event.first_name.strip() and event.birth_date.strip()):
                    return False
                self.manual_identity = event
                effects.append(Audit("manual_identity"))
                self._identified(effects)
                return True
            case ReasonChosen(reason=reason) if step is Step.REASON:
                self.reason = reason
                self._set_step(Step.SELFCHECK, effects)
                effects.append(StartSelfCheck())
                return True
            case SelfCheckDone() if step is Step.SELFCHECK and self.reason is not None:
                self._set_step(Step.WAITING, effects)
                effects.append(JoinWaitingRoom(self.reason))
                return True
            case WaitingUpdate(position=position, minutes=minutes) if step is Step.WAITING:
                self.waiting_position = max(1, position)
                self.waiting_minutes = None if minutes is None else max(0, minutes)
                return True
            case DoctorJoined() if step is Step.WAITING:
                self._set_step(Step.CONSULTATION, effects)
                return True
            case DoctorJoined() if step is Step.CONSULTATION:
                if self.failure is FailureKind.DOCTOR_GONE:
                    self.failure = None
                return True
            case SasShown(sas=sas) if step is Step.CONSULTATION:
                self.sas = sas
                return True
            case MeasurementRequested(kind=kind) if step is Step.CONSULTATION:
                if self.measurement_running:
                    self._stop_measurement(effects)
                self.measurement = kind
                self.measurement_running = False
                effects.append(Announce(f"measure.{kind.value}.steps"))
                return True
            case MeasurementConfirmed() if step is Step.CONSULTATION and self.failure is None:
                if self.measurement is None or self.measurement_running:
                    return False
                self.measurement_running = True
                effects.append(StartMeasurement(self.measurement))
                return True
            case MeasurementDone() if step is Step.CONSULTATION:
                self.measurement = None
                self.measurement_running = False
                return True
            case ConsultationEnded() if step is Step.CONSULTATION:
                self._set_step(Step.END, effects)
                return True
            case Finish() if step in {Step.END, Step.DECLINED}:
                self._go_wipe(effects)
                return True
            case Back() if step in _BACK:
                target = _BACK[step]
                if target is Step.IDENTIFICATION:
                    self.beneficiary_count = self.beneficiary = self.manual_identity = None
                if target is Step.REASON:
                    self.reason = None
                if target is Step.CONSENT:
                    self.consented = False  # the consent screen shows again and asks again
                self._set_step(target, effects)
                return True
            case Back() if step is Step.STAFF_PIN:
                self._set_step(self._staff_return, effects)
                return True
            case Quit() if step in _PATIENT_STEPS:
                effects.append(Audit("patient_quit"))
                self._go_wipe(effects)
                return True
            case Failure(kind=kind):
                return self._fail(kind, effects)
            case Recovered(kind=kind) if self.failure is kind:
                self.failure = None
                self._activity()
                return True
            case Dismiss() if self.failure in _DISMISSABLE:
                self.failure = None
                return True
            case WipeDone() if step is Step.WIPE:
                self._set_step(self._rest_step(), effects)
                return True
            case StaffRequested() if step in {Step.WELCOME, Step.CLEANING} and self.config.staff_pin_hash:
                self._staff_return = step
                self.pin_error = None
                self._set_step(Step.STAFF_PIN, effects)
                return True
            case PinEntered(pin=pin) if step is Step.STAFF_PIN:
                return self._check_pin(pin, effects)
            case SelfTestRequested() if step is Step.STAFF:
                effects.append(StartSelfCheck())
                return True
            case CleaningConfirmed() if step is Step.STAFF:
                self.cleaning_pending = False
                effects.append(Audit("cleaning_confirmed"))
                return True
            case StaffExit() if step is Step.STAFF:
                effects.append(Audit("staff_logout"))
                self._set_step(self._rest_step(), effects)
                return True
        return False

    def _fail(self, kind: FailureKind, effects: list[Effect]) -> bool:
        if self._step not in _FAILURE_STEPS[kind]:
            return False
        if self.measurement is not None:
            self._stop_measurement(effects)
        self.failure = kind
        logger.info("failure %s in %s", kind.value, self._step.value)
        effects.append(Audit(f"failure_{kind.value}"))
        effects.append(Announce(f"failure.{kind.value}.title"))
        return True

    def _check_pin(self, pin: str, effects: list[Effect]) -> bool:
        if self._now < self._pin_locked_until:
            self.pin_error = PinError.LOCKED
            return True
        if verify_pin(pin, self.config.staff_pin_hash):
            self._pin_failures = 0
            self.pin_error = None
            effects.append(Audit("staff_login"))
            self._set_step(Step.STAFF, effects)
            return True
        self._pin_failures += 1
        self.pin_error = PinError.WRONG
        effects.append(Audit("staff_pin_wrong"))
        if self._pin_failures >= self.config.pin_max_failures:
            self._pin_failures = 0
            self._pin_locked_until = self._now + self.config.pin_lockout
            self.pin_error = PinError.LOCKED
            effects.append(Audit("staff_pin_locked"))
        return True
