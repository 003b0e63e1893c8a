"""What the patient app needs from the booth, as interfaces the controller calls.

The screens never see these: they talk to :class:`kiosk.ui.controller.Controller`,
which talks to the services. Production implementations wrap the card reader
(:mod:`kiosk.identity.pcsc`), the consultation service
(:class:`kiosk.session.consultation.BoothSession`) and the peripherals; tests
pass their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from kiosk.identity.identity import CardIdentity
from kiosk.session.consultation import Confirm, SessionEvent, WaitingPatient


# -- the card reader ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CardPresented:
    """A card went into the reader; reading starts."""


@dataclass(frozen=True, repr=False)
class CardIdentityRead:
    """The card was read."""

    identity: CardIdentity

    def __repr__(self) -> str:
        return f"CardIdentityRead({self.identity!r})"


@dataclass(frozen=True)
class CardFailed:
    """The card could not be read (pulled out, mute, not a Carte Vitale, unreadable)."""

    reason: str
    """A :class:`kiosk.identity.errors.Reason` value; never card content."""


@dataclass(frozen=True)
class CardWithdrawn:
    """The card left the reader."""


CardEvent = CardPresented | CardIdentityRead | CardFailed | CardWithdrawn


class CardService(Protocol):
    def events(self) -> AsyncIterator[CardEvent]:
        """Card events, for as long as the app runs (reconnecting to pcscd by itself)."""
        ...


# -- the consultation --------------------------------------------------------------------------
class ConsultationService(Protocol):
    """The part of :class:`~kiosk.session.consultation.BoothSession` the app uses."""

    confirm: Confirm

    def add_listener(self, listener: Callable[[SessionEvent], None]) -> None: ...

    async def announce(self, patient: WaitingPatient) -> None: ...

    async def withdraw(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_chat(self, text: str) -> None: ...

    async def end(self) -> None: ...


# -- prescriptions -----------------------------------------------------------------------------
class PrescriptionService(Protocol):
    async def receive(self, pdf: bytes) -> tuple[str, bool]:
        """Verify a signed prescription, then print it: ``(fetch code, printed)``.

        Raises :class:`kiosk.documents.errors.PrescriptionRejected` when the signature does not check out
        (nothing is printed); a printer problem is ``printed`` False, the fetch code still works.
        """
        ...


# -- the self-check ----------------------------------------------------------------------------
CHECKS: tuple[str, ...] = ("camera", "microphone", "speaker", "devices")
"""What the self-check tests, in the order the screen lists them (``selfcheck.<name>`` messages)."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    """One of :data:`CHECKS`, or a device name (``oximeter``...) for the staff's device health."""
    ok: bool
    detail: str = ""
    """For staff and logs; never patient data."""


class SelfCheckService(Protocol):
    def run(self) -> AsyncIterator[CheckResult]:
        """Test everything, yielding results as they come; :data:`CHECKS` first, then each device."""
        ...


# -- video for the screens ----------------------------------------------------------------------
class VideoFeeds(Protocol):
    """The pictures the consultation and self-check screens show, polled by the screens (~15 times a second)."""

    def doctor(self) -> npt.NDArray[np.uint8] | None:
        """The doctor's latest video frame (RGB, H x W x 3), or None outside a call or before the first frame.

        The same array (``is``) until a new frame came: the screen then has nothing to redraw.
        """
        ...

    def self_view(self) -> npt.NDArray[np.uint8] | None:
        """The booth camera's latest frame (RGB), or None when it has none yet."""
        ...

    def watch_self(self, watching: bool) -> None:
        """A screen starts (True) or stops (False) showing the self view: the camera is read only while one does."""
        ...


class NoVideo:
    """A booth (or a test) without pictures."""

    def doctor(self) -> npt.NDArray[np.uint8] | None:
        return None

    def self_view(self) -> npt.NDArray[np.uint8] | None:
        return None

    def watch_self(self, watching: bool) -> None:
        return None


# -- spoken prompts ----------------------------------------------------------------------------
class Speaker(Protocol):
    def say(self, text: str, language: str) -> None:
        """Speak ``text`` (replacing anything still being said); never blocks."""
        ...


class SilentSpeaker:
    """No speech synthesis on this booth."""

    def say(self, text: str, language: str) -> None:
        return None


# -- sealed records -------------------------------------------------------------------------------
class RecordsService(Protocol):
    """Seals what a session produces to the hub's records key (:mod:`kiosk.records`); the booth cannot read it back."""

    def record(self, kind: str, payload: bytes, meta: Mapping[str, str]) -> None:
        """Seal and spool in the background, in call order; storage failures are logged, never raised."""
        ...

    async def flush(self) -> None:
        """Wait until every record handed over so far is sealed on disk."""
        ...


class NoRecords:
    """A booth (or a test) that keeps no records."""

    def record(self, kind: str, payload: bytes, meta: Mapping[str, str]) -> None:
        return None

    async def flush(self) -> None:
        return None


@dataclass
class Services:
    """Everything the controller drives."""

    card: CardService
    session: ConsultationService
    selfcheck: SelfCheckService
    video: VideoFeeds = field(default_factory=NoVideo)
    speaker: Speaker = field(default_factory=SilentSpeaker)
    audit: Callable[[str], None] = lambda event: None
    """Receives flow audit events (``consent_given``...); never patient data."""
    forget: Callable[[], None] = lambda: None
    """Erases what the services keep about the patient outside memory (the app's temporary files)."""
    records: RecordsService = field(default_factory=NoRecords)
    """Sealed session records (consent, identification, readings, stills, chat, files, summary)."""
    prescriptions: PrescriptionService | None = None
    """Verifies and prints the doctor's signed prescriptions; None on a booth without a printer set up."""
    booth_id: str = "booth"
    """The booth's fleet name, which the consultation documents carry (never the patient's identity)."""
