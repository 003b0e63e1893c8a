"""Small fakes of the booth's services for the screen tests: the test pushes card and session events."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable

import numpy as np
import numpy.typing as npt

from kiosk.identity.identity import Beneficiary, CardIdentity, Nir
from kiosk.session.consultation import Confirm, SessionEvent, WaitingPatient
from kiosk.ui.services import CHECKS, CardEvent, CheckResult, Services


class FakeCard:
    """A card reader the test feeds with :meth:`push`."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[CardEvent] = asyncio.Queue()

    def push(self, event: CardEvent) -> None:
        self.queue.put_nowait(event)

    async def events(self) -> AsyncIterator[CardEvent]:
        while True:
            yield await self.queue.get()


class FakeSession:
    """The consultation service: records calls; :meth:`emit` plays events; ``hold`` makes calls wait."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[SessionEvent], None]] = []
        self.calls: list[str] = []
        self.chat_sent: list[str] = []
        self.hold = asyncio.Event()
        self.hold.set()

        async def refuse(command: str) -> bool:
            return False

        self.confirm: Confirm = refuse

    def add_listener(self, listener: Callable[[SessionEvent], None]) -> None:
        self.listeners.append(listener)

    def emit(self, event: SessionEvent) -> None:
        for listener in self.listeners:
            listener(event)

    async def _call(self, name: str) -> None:
        self.calls.append(name)
        await self.hold.wait()

    async def announce(self, patient: WaitingPatient) -> None:
        await self._call("announce")

    async def withdraw(self) -> None:
        await self._call("withdraw")

    async def stop(self) -> None:
        await self._call("stop")

    async def send_chat(self, text: str) -> None:
        self.chat_sent.append(text)
        await self._call("send_chat")

    async def end(self) -> None:
        await self._call("end")


class FakeSelfCheck:
    """Yields :data:`CHECKS` after ``gate`` opens; ``failing`` names checks that fail."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing: set[str] = set()
        self.runs = 0

    async def run(self) -> AsyncIterator[CheckResult]:
        self.runs += 1
        yield CheckResult("camera", "camera" not in self.failing)
        await self.gate.wait()
        for name in CHECKS[1:]:
            yield CheckResult(name, name not in self.failing)
        yield CheckResult("oximeter", "oximeter" not in self.failing, "serial ok")


class Frames:
    """Synthetic RGB frames: a gradient for the doctor, a plain colour for the booth camera."""

    def __init__(self) -> None:
        gradient = np.linspace(40, 200, 640, dtype=np.uint8)
        self._doctor = np.zeros((360, 640, 3), dtype=np.uint8)
        self._doctor[:, :, 0] = gradient
        self._doctor[:, :, 2] = 120
        self._self = np.full((240, 320, 3), (30, 140, 90), dtype=np.uint8)
        self.on = True
        self.self_watchers = 0

    def doctor(self) -> npt.NDArray[np.uint8] | None:
        return self._doctor if self.on else None

    def self_view(self) -> npt.NDArray[np.uint8] | None:
        return self._self if self.on else None

    def watch_self(self, watching: bool) -> None:
        self.self_watchers += 1 if watching else -1
        assert self.self_watchers >= 0, "a screen stopped watching the self view twice"


def identity(count: int) -> CardIdentity:
    names = [("MARTIN", "Camille"), ("MARTIN", "Léo"), ("MARTIN", "Inès")]
    people = tuple(
        Beneficiary(surname, first, datetime.date(1984 + 10 * i, 3, 14), Nir("184127512345678"))
        for i, (surname, first) in enumerate(names[:count])
    )
    return CardIdentity(people)


class FakePrescriptions:
    """Every prescription verifies and prints (the real checks are in tests/documents)."""

    async def receive(self, pdf: bytes) -> tuple[str, bool]:
        return "K7QM-2XHD-9PWA", True


def services() -> tuple[Services, FakeCard, FakeSession, FakeSelfCheck, Frames]:
    card, session, selfcheck, frames = FakeCard(), FakeSession(), FakeSelfCheck(), Frames()
    built = Services(card=card, session=session, selfcheck=selfcheck, video=frames, prescriptions=FakePrescriptions())
    return built, card, session, selfcheck, frames
