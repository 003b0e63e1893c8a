"""The waiting room tells each waiting booth its place and estimated wait (``position``), and no one else."""

from __future__ import annotations

import json
from typing import Any

from hub.messages import Direction, parse
from hub.waiting_room import BoothLink, DoctorLink, WaitingRoom

CHAIN = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class Endpoint:
    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.sent: list[dict[str, Any]] = []

    def send(self, text: str) -> None:
        parse(text, self.direction)
        self.sent.append(json.loads(text))

    def close(self, code: int, reason: str) -> None:
        pass

    def positions(self) -> list[tuple[int, int | None]]:
        found = [(m["position"], m["estimate_seconds"]) for m in self.sent if m["type"] == "position"]
        self.sent.clear()
        return found


def message(direction: Direction, type_: str, **body: object) -> Any:
    return parse(json.dumps({"v": 1, "type": type_, **body}), direction)


ANNOUNCE = message(Direction.BOOTH_TO_HUB, "announce", patient={"first_name": "Lou", "age": 7, "reason": "toux"})
WITHDRAW = message(Direction.BOOTH_TO_HUB, "withdraw")


class Room:
    def __init__(self) -> None:
        self.room = WaitingRoom(audit=lambda kind, fields: None)
        self.endpoints: dict[str, Endpoint] = {}

    def booth(self, name: str, now: float) -> BoothLink:
        self.endpoints[name] = Endpoint(Direction.HUB_TO_BOOTH)
        link = BoothLink(self.endpoints[name], booth=name, certificate=CHAIN)
        self.room.booth_joined(link, now)
        return link

    def doctor(self, name: str, now: float) -> DoctorLink:
        self.endpoints[name] = Endpoint(Direction.HUB_TO_DOCTOR)
        link = DoctorLink(self.endpoints[name], username=name, display_name=name, identity_chain=lambda: CHAIN)
        self.room.doctor_joined(link, now)
        return link

    def positions(self, name: str) -> list[tuple[int, int | None]]:
        return self.endpoints[name].positions()

    def accept(self, doctor: DoctorLink, booth: str, now: float) -> str:
        (entry,) = [e.entry for e in self.room.entries.values() if e.booth == booth]
        self.room.from_doctor(doctor, message(Direction.DOCTOR_TO_HUB, "accept", entry=entry), now)
        (session,) = [s.session for s in self.room.sessions.values() if s.booth == booth]
        return session


def test_positions_follow_the_queue_and_estimates_stay_null_without_doctor_or_history() -> None:
    r = Room()
    a, b, c = r.booth("booth-a", 0.0), r.booth("booth-b", 0.0), r.booth("booth-c", 0.0)
    r.room.from_booth(a, ANNOUNCE, 1.0)
    assert r.positions("booth-a") == [(1, None)]
    r.room.from_booth(b, ANNOUNCE, 2.0)
    r.room.from_booth(c, ANNOUNCE, 3.0)
    # Only news is sent: a's place did not change.
    assert (r.positions("booth-a"), r.positions("booth-b"), r.positions("booth-c")) == ([], [(2, None)], [(3, None)])
    r.room.from_booth(a, WITHDRAW, 4.0)
    assert (r.positions("booth-a"), r.positions("booth-b"), r.positions("booth-c")) == ([], [(1, None)], [(2, None)])
    r.room.booth_left(b, 5.0)
    assert r.positions("booth-c") == [(1, None)]
    # A doctor but no consultation finished yet: still no honest estimate.
    r.doctor("dr.a", 6.0)
    assert r.positions("booth-c") == []
    r.room.refresh(7.0)
    assert r.positions("booth-c") == [(1, None)]


def test_estimates_come_from_finished_consultations_and_doctors_connected() -> None:
    r = Room()
    a, b, c = r.booth("booth-a", 0.0), r.booth("booth-b", 0.0), r.booth("booth-c", 0.0)
    dr = r.doctor("dr.a", 0.0)
    r.room.from_booth(a, ANNOUNCE, 0.0)
    session = r.accept(dr, "booth-a", 10.0)
    r.room.from_doctor(dr, message(Direction.DOCTOR_TO_HUB, "end", session=session), 610.0)  # 600 s
    assert list(r.room.history) == [600.0]
    r.room.from_booth(b, ANNOUNCE, 620.0)
    r.room.from_booth(c, ANNOUNCE, 621.0)
    assert r.positions("booth-b") == [(1, 0)]  # the doctor is free
    assert r.positions("booth-c") == [(2, 600)]
    # The doctor takes b: c is next, when the doctor is expected free again.
    session = r.accept(dr, "booth-b", 630.0)
    assert r.positions("booth-b") == []  # in a consultation: no position, ever
    assert r.positions("booth-c") == [(1, 600)]
    r.room.refresh(930.0)
    assert r.positions("booth-c") == [(1, 300)]
    assert r.positions("booth-b") == []
    # A second doctor is free now; when both leave, nobody can say.
    dr2 = r.doctor("dr.b", 940.0)
    assert r.positions("booth-c") == [(1, 0)]
    r.room.doctor_left(dr2, 950.0)
    assert r.positions("booth-c") == [(1, 280)]
    r.room.doctor_left(dr, 960.0)  # ends b's consultation (330 s): history [600, 330]
    assert list(r.room.history) == [600.0, 330.0]
    assert r.positions("booth-c") == [(1, None)]
    assert r.positions("booth-b") == []


def test_a_booth_that_announces_again_hears_its_place_again() -> None:
    r = Room()
    a = r.booth("booth-a", 0.0)
    r.room.from_booth(a, ANNOUNCE, 1.0)
    r.room.from_booth(a, ANNOUNCE, 2.0)
    assert r.positions("booth-a") == [(1, None), (1, None)]
