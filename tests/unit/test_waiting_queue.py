"""The waiting-room queue message stays within the signalling size limit however long the queue."""

from __future__ import annotations

from hub.messages import MAX_MESSAGE_BYTES, Direction, parse
from hub.waiting_room import BoothLink, DoctorLink, WaitingRoom


class Endpoint:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, text: str) -> None:
        self.sent.append(text)

    def close(self, code: int, reason: str) -> None:
        pass


def test_a_long_queue_is_cut_to_fit_one_message_oldest_first() -> None:
    room = WaitingRoom(audit=lambda kind, fields: None)
    doctor = DoctorLink(Endpoint(), username="dr.a", display_name="Dr A")
    room.doctor_joined(doctor, 0.0)
    for index in range(600):
        link = BoothLink(Endpoint(), booth=f"booth-{index:04d}", certificate="")
        room.booth_joined(link, float(index))
        patient = {"first_name": "É" * 64, "age": 80, "reason": "fièvre depuis hier " * 6}
        room.from_booth(link, parse_announce(patient), float(index))
    assert isinstance(doctor.endpoint, Endpoint)
    last = doctor.endpoint.sent[-1]
    assert len(last.encode()) <= MAX_MESSAGE_BYTES
    entries = parse(last, Direction.HUB_TO_DOCTOR)["entries"]
    assert 100 < len(entries) < 600
    # The longest-waiting patients are the ones listed.
    assert [e["booth"] for e in entries] == [f"booth-{i:04d}" for i in range(len(entries))]


def parse_announce(patient: dict[str, object]):  # type: ignore[no-untyped-def]
    import json

    return parse(json.dumps({"v": 1, "type": "announce", "patient": patient}), Direction.BOOTH_TO_HUB)
