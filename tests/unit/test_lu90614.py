"""LU90614-family thermometer replies: command, parser, JSON."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import RemoteProtocolError
from devices.protocols import NEED_DATA
from devices.protocols import lu90614 as proto

# Replies written by hand: FE (start, our choice), AC (body mode, our choice),
# temperature whole + hundredths, ambient whole + hundredths, 00 00, checksum
# = low byte of the sum of bytes 0-7 (PROTOCOLS.md).
REPLY_36_55 = bytes.fromhex("FE AC 24 37 17 32 00 00 4E")  # 36.55 °C, ambient 23.50 °C
REPLY_39_20 = bytes.fromhex("FE AC 27 14 16 05 00 00 00")  # 39.20 °C, ambient 22.05 °C
REPLY_72_00 = bytes.fromhex("FE AC 48 00 FF FF 00 00 F0")  # 72.00 °C, no ambient: out of range

VALID = (REPLY_36_55, REPLY_39_20, REPLY_72_00)


def drain(parser: proto.ThermometerParser) -> tuple[list[proto.Temperature], list[bytes]]:
    events: list[proto.Temperature] = []
    skipped: list[bytes] = []
    for _ in range(100_000):
        error: RemoteProtocolError | None = None
        try:
            event = parser.next_event()
        except RemoteProtocolError as exc:
            error = exc
        if error is not None:
            assert isinstance(error, proto.LuProtocolError)
            assert error.skipped, "an error must drop at least one byte"
            skipped.append(error.skipped)
            continue
        if event is NEED_DATA:
            return events, skipped
        events.append(event)
    raise AssertionError("parser made no progress")


def parse(data: bytes) -> tuple[list[proto.Temperature], list[bytes]]:
    parser = proto.ThermometerParser()
    parser.receive_data(data)
    return drain(parser)


def test_hand_written_replies_have_the_documented_checksum() -> None:
    for reply in VALID:
        assert len(reply) == proto.REPLY_LENGTH
        assert sum(reply[:8]) & 0xFF == reply[8]


def test_read_command() -> None:
    assert bytes.fromhex("FA C5 BF") == proto.READ_BODY_TEMPERATURE


def test_decodes_temperature_and_ambient() -> None:
    events, skipped = parse(REPLY_36_55 + REPLY_39_20)
    assert skipped == []
    assert events == [proto.Temperature(36.55, 23.5), proto.Temperature(39.2, 22.05)]
    assert all(event.in_range for event in events)


def test_out_of_range_is_flagged_not_rejected() -> None:
    (event,), skipped = parse(REPLY_72_00)
    assert skipped == []
    assert event == proto.Temperature(72.0, None)
    assert not event.in_range


def test_reply_builder_matches_hand_written_bytes() -> None:
    assert proto.reply_frame(36.55, 23.5) == REPLY_36_55
    assert proto.reply_frame(72.0) == REPLY_72_00


def test_bad_checksum_drops_only_the_first_byte_and_resyncs() -> None:
    corrupted = bytearray(REPLY_36_55)
    corrupted[8] ^= 0x10
    events, skipped = parse(bytes(corrupted) + REPLY_39_20)
    assert b"".join(skipped) == bytes(corrupted)
    assert events == [proto.Temperature(39.2, 22.05)]


def test_hundredths_over_99_is_not_a_reply() -> None:
    body = bytes.fromhex("FE AC 24 64 FF FF 00 00")  # 0x64 = 100 hundredths
    reply = body + bytes([sum(body) & 0xFF])
    events, skipped = parse(reply + REPLY_36_55)
    assert skipped == [reply]
    assert events == [proto.Temperature(36.55, 23.5)]


def test_unknown_mode_byte_is_rejected_without_waiting() -> None:
    parser = proto.ThermometerParser()
    parser.receive_data(b"\xfe\x01")
    with pytest.raises(proto.LuProtocolError) as caught:
        parser.next_event()
    assert caught.value.skipped == b"\xfe\x01"
    assert parser.next_event() is NEED_DATA


def test_split_reply_waits_then_decodes() -> None:
    parser = proto.ThermometerParser()
    for byte in REPLY_39_20[:-1]:
        parser.receive_data(bytes([byte]))
        assert parser.next_event() is NEED_DATA
    parser.receive_data(REPLY_39_20[-1:])
    assert parser.next_event() == proto.Temperature(39.2, 22.05)


def test_leading_garbage_is_skipped() -> None:
    events, skipped = parse(b"\x00\x12\xfa\xc5\xbf" + REPLY_36_55)
    assert skipped == [b"\x00\x12\xfa\xc5\xbf"]
    assert len(events) == 1


def test_to_json() -> None:
    assert proto.to_json(proto.Temperature(36.55, 23.5)) == {"celsius": 36.55}


@given(st.floats(0, 255.99), st.none() | st.floats(0, 99.99))
def test_round_trip_to_the_hundredth(celsius: float, ambient: float | None) -> None:
    (event,), _ = parse(proto.reply_frame(celsius, ambient))
    assert event.celsius == pytest.approx(celsius, abs=0.0051)
    if ambient is None:
        assert event.ambient is None
    else:
        assert event.ambient == pytest.approx(ambient, abs=0.0051)


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    parse(data)


@given(st.binary(max_size=60).map(lambda b: b.replace(b"\xfe", b"")), st.lists(st.sampled_from(VALID), max_size=5))
def test_valid_replies_after_garbage_are_decoded(garbage: bytes, valid: list[bytes]) -> None:
    events, _ = parse(garbage + b"".join(valid))
    assert events == parse(b"".join(valid))[0]
    assert len(events) == len(valid)


@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=6), st.data())
def test_mutated_streams_raise_only_protocol_errors(valid: list[bytes], data: st.DataObject) -> None:
    stream = bytearray(b"".join(valid))
    for _ in range(data.draw(st.integers(1, 5))):
        position = data.draw(st.integers(0, len(stream) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            stream[position] ^= data.draw(st.integers(1, 255))
        elif action == "drop" and len(stream) > 1:
            del stream[position]
        else:
            stream.insert(position, data.draw(st.integers(0, 255)))
    events, skipped = parse(bytes(stream))
    assert sum(len(run) for run in skipped) + 9 * len(events) <= len(stream)
