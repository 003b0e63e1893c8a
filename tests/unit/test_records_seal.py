"""The sealed record format: round trip, every kind of tampering, and fuzzed input giving typed errors only."""

from __future__ import annotations

import contextlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from kiosk.records import seal as s

KEY = X25519PrivateKey.generate()
OTHER = X25519PrivateKey.generate()
CHUNK = s.MIN_CHUNK_SIZE


def sealed(
    payload: bytes, *, meta: dict[str, str] | None = None, chunk_size: int = CHUNK, kind: str = "still"
) -> bytes:
    return s.seal(
        payload,
        KEY.public_key(),
        record_id="0123456789abcdef0123456789abcdef",
        kind=kind,
        booth_id="booth-0001",
        created_ms=1_700_000_000_123,
        meta=meta if meta is not None else {"mime": "image/jpeg", "session": "t0k3n"},
        chunk_size=chunk_size,
    )


@pytest.mark.parametrize("size", [0, 1, CHUNK - 5, CHUNK - 4, CHUNK - 3, 3 * CHUNK - 4, 3 * CHUNK, 10 * CHUNK + 7])
def test_round_trip_around_chunk_boundaries(size: int) -> None:
    payload = os.urandom(size)
    record = s.open_record(sealed(payload), KEY)
    assert record.payload == payload
    assert record.meta == {"mime": "image/jpeg", "session": "t0k3n"}
    assert record.header.record_id == "0123456789abcdef0123456789abcdef"
    assert (record.header.kind, record.header.booth_id, record.header.created_ms) == (
        "still",
        "booth-0001",
        1_700_000_000_123,
    )


def test_large_still_with_default_chunks() -> None:
    payload = os.urandom(3 * 1024 * 1024 + 11)
    data = s.seal(payload, KEY.public_key(), record_id="ab" * 16, kind="still", booth_id="booth-0001", created_ms=1)
    assert s.open_record(data, KEY).payload == payload
    assert len(data) < len(payload) + 1024 + 16 * (len(payload) // s.DEFAULT_CHUNK_SIZE + 2)


def test_the_header_is_readable_without_the_key() -> None:
    data = sealed(b"x")
    header, length = s.parse_header(data)
    assert header.key_id == s.key_id(KEY.public_key())
    assert data[length:] and header.encode() == data[:length]


def test_plaintext_and_metadata_are_not_in_the_sealed_bytes() -> None:
    secret = b"TESTMARTIN Zoe 2610475100123 spo2=97"
    data = sealed(secret * 50, meta={"name": "TESTMARTIN-report.pdf"})
    assert b"TESTMARTIN" not in data and b"2610475100123" not in data


def test_two_seals_of_the_same_payload_differ() -> None:
    assert sealed(b"same") != sealed(b"same")  # fresh ephemeral key each time


def test_wrong_key_is_refused_by_key_id() -> None:
    with pytest.raises(s.FormatError) as caught:
        s.open_record(sealed(b"hello"), OTHER)
    assert caught.value.reason is s.Reason.KEY


def body_offset(data: bytes) -> int:
    return s.parse_header(data)[1]


def test_every_flipped_bit_region_is_detected() -> None:
    data = sealed(os.urandom(3 * CHUNK))
    for position in range(0, len(data), 37):
        changed = bytearray(data)
        changed[position] ^= 0x01
        with pytest.raises(s.FormatError):
            s.open_record(bytes(changed), KEY)


def test_truncation_at_a_chunk_boundary_is_detected() -> None:
    data = sealed(os.urandom(3 * CHUNK))
    offset = body_offset(data)
    step = CHUNK + s.TAG_BYTES
    for chunks in (1, 2, 3):
        with pytest.raises(s.FormatError) as caught:
            s.open_record(data[: offset + chunks * step], KEY)
        assert caught.value.reason is s.Reason.AUTHENTICATION


def test_truncation_anywhere_is_detected() -> None:
    data = sealed(os.urandom(2 * CHUNK + 100))
    for end in range(0, len(data), 53):
        with pytest.raises(s.FormatError):
            s.open_record(data[:end], KEY)


def test_reordered_or_duplicated_chunks_are_detected() -> None:
    data = sealed(os.urandom(3 * CHUNK + 10))
    offset = body_offset(data)
    step = CHUNK + s.TAG_BYTES
    chunks = [data[offset + i * step : offset + (i + 1) * step] for i in range(4)]
    for order in ([1, 0, 2, 3], [0, 2, 1, 3], [0, 0, 2, 3], [0, 1, 2, 2, 3]):
        with pytest.raises(s.FormatError):
            s.open_record(data[:offset] + b"".join(chunks[i] for i in order), KEY)


def test_a_chunk_from_another_record_is_detected() -> None:
    first, second = sealed(os.urandom(2 * CHUNK)), sealed(os.urandom(2 * CHUNK))
    offset = body_offset(first)
    with pytest.raises(s.FormatError):
        s.open_record(first[: offset + CHUNK + s.TAG_BYTES] + second[offset + CHUNK + s.TAG_BYTES :], KEY)


def test_header_fields_are_authenticated() -> None:
    data = sealed(b"reading")
    for old, new in ((b"still", b"stilm"), (b"booth-0001", b"booth-0002")):
        changed = data.replace(old, new, 1)
        assert s.parse_header(changed)[0]  # still well formed
        with pytest.raises(s.FormatError) as caught:
            s.open_record(changed, KEY)
        assert caught.value.reason is s.Reason.AUTHENTICATION


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        (b"", s.Reason.TRUNCATED),
        (b"XXXX" + bytes(40), s.Reason.MAGIC),
        (b"KREC\x02\x01" + bytes(40), s.Reason.VERSION),
        (b"KREC\x01\x07" + bytes(40), s.Reason.SUITE),
    ],
)
def test_header_refusals_are_typed(prefix: bytes, reason: s.Reason) -> None:
    with pytest.raises(s.FormatError) as caught:
        s.parse_header(prefix)
    assert caught.value.reason is reason


@pytest.mark.parametrize(
    "changes",
    [{"record_id": "XYZ"}, {"kind": "Bad Kind"}, {"booth_id": "booth 1/"}, {"chunk_size": 10}, {"created_ms": -1}],
)
def test_seal_refuses_bad_fields(changes: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "record_id": "ab" * 16,
        "kind": "chat",
        "booth_id": "booth-0001",
        "created_ms": 1,
        "chunk_size": CHUNK,
    }
    arguments.update(changes)
    with pytest.raises(s.FormatError):
        s.seal(b"x", KEY.public_key(), **arguments)  # type: ignore[arg-type]


def test_seal_refuses_oversized_payload_and_metadata() -> None:
    with pytest.raises(s.FormatError) as caught:
        sealed(b"x", meta={"k": "v" * (s.MAX_META_BYTES + 1)})
    assert caught.value.reason is s.Reason.TOO_LARGE


def test_keys_load_from_pem_and_refuse_other_kinds() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert s.raw_public(s.load_public_key(public)) == s.raw_public(KEY.public_key())
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(s.FormatError):
        s.load_private_key(ec_pem)
    with pytest.raises(s.FormatError):
        s.load_public_key(b"not pem")


# -- fuzz --------------------------------------------------------------------------------------------
VALID = sealed(os.urandom(2 * CHUNK + 33))


@given(st.binary(max_size=4096))
def test_random_bytes_give_typed_errors(data: bytes) -> None:
    with pytest.raises(s.FormatError):
        s.open_record(data, KEY)
    with contextlib.suppress(s.FormatError):
        s.parse_header(data)


@given(st.binary(min_size=0, max_size=200))
def test_random_bytes_after_a_valid_header_give_typed_errors(tail: bytes) -> None:
    offset = body_offset(VALID)
    with pytest.raises(s.FormatError):
        s.open_record(VALID[:offset] + tail, KEY)


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(min_value=1, max_value=255)),
        min_size=1,
        max_size=8,
    )
)
def test_mutated_records_give_typed_errors(flips: list[tuple[int, int]]) -> None:
    changed = bytearray(VALID)
    for position, mask in flips:
        changed[position] ^= mask
    if bytes(changed) == VALID:
        return  # the flips cancelled out
    with pytest.raises(s.FormatError):
        s.open_record(bytes(changed), KEY)


@given(st.integers(min_value=0, max_value=len(VALID)), st.integers(min_value=0, max_value=len(VALID)))
def test_spliced_records_give_typed_errors(cut: int, resume: int) -> None:
    spliced = VALID[:cut] + VALID[resume:]
    if spliced == VALID:
        return
    with pytest.raises(s.FormatError):
        s.open_record(spliced, KEY)


@given(st.binary(max_size=3 * CHUNK), st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5))
def test_any_payload_and_metadata_round_trip(payload: bytes, meta: dict[str, str]) -> None:
    record = s.open_record(sealed(payload, meta=meta), KEY)
    assert (record.payload, record.meta) == (payload, meta)
