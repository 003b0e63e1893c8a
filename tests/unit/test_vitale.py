"""The Vitale state machine against the sans-IO virtual cards (no pcscd)."""

from __future__ import annotations

import datetime
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.identity import apdu
from kiosk.identity.errors import CardError, Reason
from kiosk.identity.identity import Beneficiary, CardIdentity, Nir, nir_key
from kiosk.identity.virtual import cards
from kiosk.identity.virtual.card import VirtualCard
from kiosk.identity.vitale import VitaleReadout, drive_sync


def read(card: VirtualCard) -> CardIdentity:
    card.power_on()
    return drive_sync(VitaleReadout(reader="test"), card.process_apdu)


def test_single_card() -> None:
    ident = read(cards.make_card("vitale").card)
    (b,) = ident.beneficiaries
    p = cards.SINGLE
    assert (b.surname, b.first_name, b.birth_date) == (p.surname, p.first_name, p.birth_date)
    assert b.nir.reveal() == p.nir and b.nir.key_valid
    assert ident.valid_from == datetime.date(2024, 1, 15)
    assert ident.inaccessible_files == ("2006 RIGHTS",)
    assert "nir-key-invalid" not in ident.flags


def test_family_card_returns_everyone_in_order() -> None:
    ident = read(cards.make_card("family").card)
    assert [b.first_name for b in ident.beneficiaries] == ["ORIANE", "NILO", "YSALINE"]
    assert all(b.nir.key_valid for b in ident.beneficiaries)


def test_t0_card_needs_get_response_and_le_correction() -> None:
    card = cards.vitale_card([cards.PARENT], [cards.CHILD_1, cards.CHILD_2], t0_style=True)
    card.power_on()
    sent: list[bytes] = []

    def transmit(cmd: bytes) -> bytes:
        sent.append(cmd)
        return card.process_apdu(cmd)

    ident = drive_sync(VitaleReadout(), transmit)
    assert len(ident.beneficiaries) == 3
    assert any(c[1] == 0xC0 for c in sent), "GET RESPONSE after 61xx"
    reissued = [c for c in sent if c[1] == 0xB0 and c[-1] not in (0x00,)]
    assert reissued, "READ BINARY re-issued with the Le from 6Cxx"


def test_hand_written_61xx_and_6cxx_exchanges() -> None:
    # Script a card by hand: SELECT -> 61 02, GET RESPONSE -> 2 bytes 9000; then 6C xx path.
    readout = VitaleReadout()
    assert readout.next_command() == bytes.fromhex("00A404000B D250000002564954414C45")
    readout.receive_response(bytes.fromhex("6102"))
    assert readout.next_command() == bytes.fromhex("00C0000002")
    readout.receive_response(bytes.fromhex("6F00 9000"))
    assert readout.next_command() == bytes.fromhex("00A4020002 2001")
    readout.receive_response(bytes.fromhex("9000"))
    assert readout.next_command() == bytes.fromhex("00B0000000")
    readout.receive_response(bytes.fromhex("6C05"))
    assert readout.next_command() == bytes.fromhex("00B0000005")
    # E0 03 A0 01 00 : a map with no application -> unreadable
    with pytest.raises(CardError) as info:
        readout.receive_response(bytes.fromhex("E003A00100 9000"))
    assert info.value.reason is Reason.UNREADABLE
    assert readout.next_command() is None


def test_protected_files_are_reported_not_fatal() -> None:
    ident = read(cards.make_card("protected").card)
    assert len(ident.beneficiaries) == 1
    assert set(ident.inaccessible_files) == {"2F10 CERTIF", "2005 DEPEND", "2006 RIGHTS"}


def test_bank_card_is_not_vitale() -> None:
    with pytest.raises(CardError) as info:
        read(cards.make_card("bank").card)
    assert info.value.reason is Reason.NOT_VITALE


def test_garbage_card_is_unreadable() -> None:
    with pytest.raises(CardError) as info:
        read(cards.make_card("garbage").card)
    assert info.value.reason is Reason.UNREADABLE


@pytest.mark.parametrize("raw", [b"", b"\x90", b"\x12\x34\x56"])
def test_short_or_non_iso_first_answer(raw: bytes) -> None:
    readout = VitaleReadout()
    readout.next_command()
    with pytest.raises(CardError) as info:
        readout.receive_response(raw)
    assert info.value.reason is Reason.UNREADABLE


def test_endless_61xx_is_cut_off() -> None:
    readout = VitaleReadout()
    error: CardError | None = None
    try:
        while readout.next_command() is not None:
            readout.receive_response(b"\x61\x10")
    except CardError as exc:
        error = exc
    assert error is not None and error.reason is Reason.UNREADABLE


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=30))
def test_random_answers_raise_only_card_error(answers: list[bytes]) -> None:
    readout = VitaleReadout()
    try:
        for answer in answers:
            if readout.next_command() is None:
                break
            readout.receive_response(answer)
    except CardError:
        pass


@given(st.integers(0, 400), st.integers(0, 255))
def test_mutated_card_raises_only_card_error(pos: int, val: int) -> None:
    card = cards.make_card("family").card
    card.power_on()
    # Corrupt one byte of the dependants file: the read still ends cleanly.
    vitale = card.applications[1]
    ef = vitale.files[cards.EF_DEPENDANTS]
    content = bytearray(ef.content)
    content[pos % len(content)] = val
    ef.content = bytes(content)
    try:
        ident = drive_sync(VitaleReadout(), card.process_apdu)
    except CardError:
        return
    assert ident.beneficiaries[0].first_name == "ORIANE"


# -- NIR -------------------------------------------------------------------


def test_nir_key_and_masking() -> None:
    nir = Nir(cards.SINGLE.nir)
    assert nir.key_valid
    assert str(nir) == repr(nir)[5:-2] == "1 84 12 ** *** *** **"
    assert f"{nir}" == nir.masked()
    assert cards.SINGLE.nir not in repr(nir) + str(nir) + f"{nir}"
    bad = Nir(cards.SINGLE.nir[:13] + f"{(int(cards.SINGLE.nir[13:]) + 1) % 100:02d}")
    assert not bad.key_valid
    assert not Nir(cards.SINGLE.nir[:13]).key_valid
    assert not Nir("garbage").key_valid


def test_nir_corsica() -> None:
    # 2A counts as 19, 2B as 18 (both synthetic numbers).
    assert nir_key("190072A004123") == 97 - int("1900719004123") % 97
    assert nir_key("190072B004123") == 97 - int("1900718004123") % 97
    key = nir_key("285012B123456")
    assert Nir(f"285012B123456{key:02d}").key_valid
    assert Nir(f"2 85 01 2b 123 456 {key:02d}").key_valid


def test_invalid_key_is_flagged_not_fatal() -> None:
    bad = cards.SyntheticPerson("TESTELLI", "ZORAN", datetime.date(1984, 12, 3), cards.SINGLE.nir[:13] + "00")
    ident = read(cards.vitale_card([bad]))
    assert "nir-key-invalid" in ident.flags
    assert not ident.beneficiaries[0].nir.key_valid


def test_reprs_and_errors_hold_no_patient_data() -> None:
    ident = read(cards.make_card("family").card)
    text = repr(ident) + repr(ident.beneficiaries) + str(ident.beneficiaries[0])
    for p in (cards.PARENT, cards.CHILD_1, cards.CHILD_2):
        for secret in (p.surname, p.first_name, p.nir, p.birth_date.isoformat()):
            assert secret not in text
    assert isinstance(ident.beneficiaries[0], Beneficiary)


def test_logs_hold_no_patient_data(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    read(cards.make_card("family").card)
    assert caplog.records, "the read logs its steps"
    for p in (cards.PARENT, cards.CHILD_1):
        assert p.surname not in caplog.text and p.nir not in caplog.text and p.nir[:13] not in caplog.text


def test_commands_built_from_spec() -> None:
    assert apdu.select_ef(0x2001).to_bytes() == bytes.fromhex("00A40200022001")
    assert apdu.read_binary(0x0100).to_bytes() == bytes.fromhex("00B0010000")
    assert apdu.get_response(0x10).to_bytes() == bytes.fromhex("00C0000010")


def test_vpcd_framing_by_hand() -> None:
    from kiosk.identity.virtual.vpcd import Kind, VpcdFramer, frame

    f = VpcdFramer()
    # power on, get ATR, an empty message (skipped), then a SELECT split across two reads
    f.receive_data(bytes.fromhex("000101 000104 0000 0007 00A40200"))
    assert f.next_event().kind is Kind.POWER_ON  # type: ignore[union-attr]
    assert f.next_event().kind is Kind.GET_ATR  # type: ignore[union-attr]
    assert f.next_event() is None
    f.receive_data(bytes.fromhex("022001"))
    msg = f.next_event()
    assert msg is not None and msg.kind is Kind.APDU and msg.apdu == bytes.fromhex("00A40200022001")
    assert frame(b"\x90\x00") == bytes.fromhex("00029000")
