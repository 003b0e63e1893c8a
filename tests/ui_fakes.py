"""Fakes of the patient app's services (ours), for controller and screen tests.

They record what the controller asked for and let a test push the events a
card reader, the consultation service or the self-check would produce.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator, Callable, Mapping

from kiosk.identity.identity import Beneficiary, CardIdentity, Nir
from kiosk.identity.virtual.cards import synthetic_nir
from kiosk.session.consultation import Confirm, SessionEvent, WaitingPatient
from kiosk.ui.services import CHECKS, CardEvent, CheckResult, Services


async def _never_confirmed(command: str) -> bool:
    return False


class FakeCard:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[CardEvent] = asyncio.Queue()

    async def events(self) -> AsyncIterator[CardEvent]:
        while True:
            yield await self.queue.get()


class FakeSession:
    def __init__(self) -> None:
        self.confirm: Confirm = _never_confirmed
        self.listeners: list[Callable[[SessionEvent], None]] = []
        self.calls: list[tuple[str, object]] = []

    def add_listener(self, listener: Callable[[SessionEvent], None]) -> None:
        self.listeners.append(listener)

    def emit(self, event: SessionEvent) -> None:
        for listener in self.listeners:
            listener(event)

    async def announce(self, patient: WaitingPatient) -> None:
        self.calls.append(("announce", patient))

    async def withdraw(self) -> None:
        self.calls.append(("withdraw", None))

    async def stop(self) -> None:
        self.calls.append(("stop", None))

    async def send_chat(self, text: str) -> None:
        self.calls.append(("chat", text))

    async def end(self) -> None:
        self.calls.append(("end", None))

    def named(self, name: str) -> list[object]:
        return [value for call, value in self.calls if call == name]


class FakeSelfCheck:
    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.runs = 0

    async def run(self) -> AsyncIterator[CheckResult]:
        self.runs += 1
        for name in CHECKS:
            await asyncio.sleep(0)
            yield CheckResult(name, name not in self.failing)


class FakeRecords:
    """Keeps what would be sealed, in order; ``flushes`` counts the controller's waits."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, dict[str, str]]] = []
        self.flushes = 0

    def record(self, kind: str, payload: bytes, meta: Mapping[str, str]) -> None:
        self.records.append((kind, payload, dict(meta)))

    async def flush(self) -> None:
        self.flushes += 1

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.records]

    def documents(self, kind: str) -> list[dict[str, object]]:
        return [json.loads(payload) for k, payload, _ in self.records if k == kind]


class FakeServices(Services):
    card: FakeCard
    session: FakeSession
    selfcheck: FakeSelfCheck
    records: FakeRecords

    def __init__(self) -> None:
        self.audited: list[str] = []
        self.forgotten = 0
        super().__init__(
            card=FakeCard(),
            session=FakeSession(),
            selfcheck=FakeSelfCheck(),
            audit=self.audited.append,
            records=FakeRecords(),
        )
        self.forget = self._forget

    def _forget(self) -> None:
        self.forgotten += 1


def synthetic_identity(*people: tuple[str, str, datetime.date]) -> CardIdentity:
    """A card's identity for synthetic people (surname, first name, birth date)."""
    beneficiaries = tuple(
        Beneficiary(surname, first, born, Nir(synthetic_nir(1 + index % 2, born, 100 + index)))
        for index, (surname, first, born) in enumerate(people)
    )
    return CardIdentity(beneficiaries, reader="Virtual PCD 00 00")


FAMILY = synthetic_identity(
    ("TESTMARTIN", "Zoé", datetime.date(1961, 4, 2)),
    ("TESTMARTIN", "Yanis", datetime.date(2012, 9, 30)),
)
