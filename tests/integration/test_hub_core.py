"""The hub's pure parts without sockets: TOTP (RFC 6238 vectors), token buckets, PKI roles, the waiting room."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import example, given
from hypothesis import strategies as st

from hub import pki
from hub.accounts import TokenBuckets, match_totp, totp_at_step, totp_now
from hub.messages import Direction, MessageError, MessageReason
from hub.waiting_room import BoothLink, DoctorLink, WaitingRoom, read_message

# RFC 6238 Appendix B, SHA-1 key "12345678901234567890"; 6 digits are the last 6 of the 8-digit values.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("when", "eight_digits"), RFC_VECTORS)
def test_totp_rfc6238_vectors(when: int, eight_digits: str) -> None:
    assert totp_now(RFC_SECRET, when) == eight_digits[-6:]


def test_totp_window_is_one_step_each_side() -> None:
    now = 1_700_000_015.0
    step = int(now // 30)
    for offset in (-1, 0, 1):
        assert match_totp(RFC_SECRET, totp_at_step(RFC_SECRET, step + offset), now) == step + offset
    for offset in (-2, 2):
        assert match_totp(RFC_SECRET, totp_at_step(RFC_SECRET, step + offset), now) is None
    assert match_totp(RFC_SECRET, "", now) is None
    assert match_totp(RFC_SECRET, "12345", now) is None


def test_token_bucket_refills() -> None:
    buckets = TokenBuckets(burst=2, per_minute=60)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [True, True, False]
    assert buckets.take("b", 0.0)  # per address
    assert buckets.take("a", 1.01)
    assert not buckets.take("a", 1.02)


def test_booth_identity_requires_a_booth_certificate_from_the_fleet_ca() -> None:
    now = datetime.datetime.now(datetime.UTC)
    fleet = pki.create_fleet_ca(now=now)
    doctor_ca = pki.create_doctor_ca(fleet, now=now)
    key = pki.new_key()
    booth = pki.issue_booth_certificate(fleet, key.public_key(), "booth-0042", now=now)
    der = booth.public_bytes(Encoding.DER)
    assert pki.booth_identity(der, fleet.certificate).booth_id == "booth-0042"
    doctor = pki.issue_doctor_certificate(
        doctor_ca, key.public_key(), "dr.x", now=now, not_after=now + datetime.timedelta(hours=30)
    )
    assert doctor.not_valid_after_utc - now <= datetime.timedelta(hours=12)
    with pytest.raises(pki.PkiError):
        pki.booth_identity(doctor.public_bytes(Encoding.DER), fleet.certificate)
    other = pki.create_fleet_ca(now=now)
    with pytest.raises(pki.PkiError):
        pki.booth_identity(der, other.certificate)
    with pytest.raises(pki.PkiError):
        pki.issue_booth_certificate(fleet, key.public_key(), "../etc", now=now)


# -- the waiting room, with recording endpoints ---------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def types(self) -> list[object]:
        return [message["type"] for message in self.sent]


def doctor(name: str, certified: bool = True) -> tuple[DoctorLink, Recorder]:
    recorder = Recorder()
    chain = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" if certified else None
    return DoctorLink(recorder, username=name, display_name=name, identity_chain=lambda: chain), recorder


def booth(name: str) -> tuple[BoothLink, Recorder]:
    recorder = Recorder()
    return BoothLink(
        recorder, booth=name, certificate="-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
    ), recorder


ANNOUNCE = json.dumps({"v": 1, "type": "announce", "patient": {"first_name": "Lou", "age": 7, "reason": "toux"}})


def test_first_accept_wins_and_queue_waits_are_counted() -> None:
    room = WaitingRoom()
    (a, ra), (b, rb) = doctor("a"), doctor("b")
    (k, rk) = booth("booth-0001")
    room.doctor_joined(a, 0.0)
    room.doctor_joined(b, 0.0)
    room.booth_joined(k, 0.0)
    room.from_booth(k, read_message(ANNOUNCE, Direction.BOOTH_TO_HUB), 10.0)
    room.broadcast_queue(75.4)
    entry = ra.sent[-1]["entries"][0]  # type: ignore[index]
    assert entry["waiting_seconds"] == 65
    accept = read_message(json.dumps({"v": 1, "type": "accept", "entry": entry["entry"]}), Direction.DOCTOR_TO_HUB)
    room.from_doctor(b, accept, 80.0)
    room.from_doctor(a, accept, 80.0)
    assert rb.types()[-3:] == ["session", "taken", "queue"]
    taken = {"v": 1, "type": "taken", "entry": entry["entry"], "by_me": False}
    assert ra.sent[-3:] == [taken, {"v": 1, "type": "queue", "entries": []}, taken]  # the late accept: gone
    assert rk.types() == ["position", "accepted"]  # its place while waiting, none once accepted


def test_invalid_messages_strike_until_closed() -> None:
    room = WaitingRoom(max_invalid_per_minute=2)
    k, rk = booth("booth-0001")
    room.booth_joined(k, 0.0)
    for second in range(3):
        try:
            read_message("{", Direction.BOOTH_TO_HUB)
        except MessageError as exc:
            room.invalid(k, exc, float(second))
    assert rk.types() == ["error"] * 3
    assert rk.closed is not None and rk.closed[0] == 4008
    # Strikes older than a minute are forgotten.
    k2, rk2 = booth("booth-0002")
    room.booth_joined(k2, 0.0)
    for moment in (0.0, 61.0, 122.0, 183.0):
        room.invalid(k2, MessageError(MessageReason.FIELD, "x"), moment)
    assert rk2.closed is None


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_read_message_raises_only_message_error(raw: str) -> None:
    for direction in (Direction.BOOTH_TO_HUB, Direction.DOCTOR_TO_HUB):
        try:
            message = read_message(raw, direction)
        except MessageError:
            continue
        json.dumps(message.body, ensure_ascii=False).encode("utf-8")


@given(st.text(st.characters(exclude_categories=()), max_size=40))
@example("\ud800")
@example("Zoé \U0001f600")
def test_relayed_text_always_encodes(first_name: str) -> None:
    raw = json.dumps({"v": 1, "type": "announce", "patient": {"first_name": first_name, "age": 1, "reason": "r"}})
    room = WaitingRoom()
    d, rd = doctor("a")
    k, _ = booth("booth-0001")
    room.doctor_joined(d, 0.0)
    room.booth_joined(k, 0.0)
    try:
        message = read_message(raw, Direction.BOOTH_TO_HUB)
    except MessageError:
        return
    room.from_booth(k, message, 1.0)  # the queue broadcast encodes it: must not raise
    assert rd.sent[-1]["type"] == "queue"
