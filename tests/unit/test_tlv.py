"""BER-TLV parsing: hand-written bytes and hypothesis robustness."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.identity import tlv
from kiosk.identity.errors import TLVError


def test_primitive_and_constructed_by_hand() -> None:
    # 65 { 80 "AB", 93 "1" } then 66 { 80 "20240115" }
    data = bytes.fromhex("6507 8002 4142 9301 31") + bytes.fromhex("660A 8008") + b"20240115"
    holder, card = tlv.parse(data)
    assert holder.tag == 0x65 and holder.constructed
    assert [c.tag for c in holder.children] == [0x80, 0x93]
    assert holder.find(0x80) is not None and holder.find(0x80).value == b"AB"  # type: ignore[union-attr]
    assert card.find(0x80).value == b"20240115"  # type: ignore[union-attr]


def test_multibyte_tags_and_long_lengths() -> None:
    value = bytes(200)
    data = bytes.fromhex("7F21 81CC 5F37 81C8") + value
    (cert,) = tlv.parse(data)
    assert cert.tag == 0x7F21 and cert.constructed
    assert cert.children[0].tag == 0x5F37 and cert.children[0].value == value
    assert tlv.parse(bytes.fromhex("80 820003 414243"))[0].value == b"ABC"


def test_padding_is_skipped() -> None:
    assert [t.tag for t in tlv.parse(bytes.fromhex("00FF 8001 41 FFFF 8100 0000"))] == [0x80, 0x81]


@pytest.mark.parametrize(
    ("hexdata", "offset"),
    [
        ("80", 1),  # missing length
        ("8005 4142", 2),  # value past the end
        ("8080", 1),  # indefinite length
        ("8185", 1),  # 5 length bytes
        ("5F", 0),  # truncated tag
        ("6503 8005 41", 4),  # child runs past its parent
    ],
)
def test_malformed_raises_tlv_error_with_offset(hexdata: str, offset: int) -> None:
    with pytest.raises(TLVError) as info:
        tlv.parse(bytes.fromhex(hexdata))
    assert info.value.offset == offset


def test_deep_nesting_is_bounded() -> None:
    data = b""
    for _ in range(40):
        data = tlv.encode(0x65, data) if data else tlv.encode(0x80, b"x")
    with pytest.raises(TLVError):
        tlv.parse(data)


def test_repr_shows_no_value() -> None:
    (t,) = tlv.parse(tlv.encode(0x80, b"SECRETNAME"))
    assert "SECRETNAME" not in repr(t) and "SECRETNAME" not in str(t)


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_tlv_error(data: bytes) -> None:
    with contextlib.suppress(TLVError):
        tlv.parse(data)


_VALID = tlv.encode(0x65, [tlv.encode(0x80, b"NAME"), tlv.encode(0x93, b"123")]) + tlv.encode(0x7F21, bytes(140))


@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=8), st.integers(0, 20))
def test_mutated_bytes_raise_only_tlv_error(mutations: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID)
    for pos, val in mutations:
        data[pos] = val
    with contextlib.suppress(TLVError):
        tlv.parse(bytes(data[: len(data) - cut]))


@given(st.binary(max_size=150))
def test_encode_parse_round_trip(value: bytes) -> None:
    (t,) = tlv.parse(tlv.encode(0x5F37, value))
    assert t.tag == 0x5F37 and t.value == value
