"""Newer CMS50D+/E firmware: 9-byte commands and live frames, and its emulator."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from devices.errors import RemoteProtocolError
from devices.protocols import NEED_DATA
from devices.protocols.contec import (
    CURRENT_SETTINGS,
    KEEP_ALIVE,
    START_LIVE,
    STORED_DATA,
    OximeterFrame,
    OximeterParser,
    to_json,
)
from devices.simulators.oximeter import OximeterFirmware, pleth_shape

# The published capture: bytes 5 and 6 (& 0x7F) are 65 bpm and 97 %.
VALID = bytes([0x01, 0xE0, 0xC0, 0x83, 0x86, 0xC1, 0xE1, 0x80, 0x80])
NOT_YET = bytes([0x01, 0xE1, 0x90, 0xA0, 0x86, 0xFF, 0xFF, 0x80, 0x80])  # searching, no values
NO_DATA = bytes([0x01, 0xE2, 0x80, 0x80, 0x90, 0xFF, 0xFF, 0x80, 0x80])  # finger out
FAST = bytes([0x01, 0xE0, 0x80, 0x80, 0xC6, 0xC8, 0xDF, 0x80, 0x80])  # pulse 0x80|0x48 = 200, SpO2 95


def drain(parser: OximeterParser) -> tuple[list[OximeterFrame], list[bytes]]:
    events: list[OximeterFrame] = []
    skipped: list[bytes] = []
    while True:
        try:
            event = parser.next_event()
        except RemoteProtocolError as exc:
            skipped.append(exc.skipped)  # type: ignore[attr-defined]
            continue
        if event is NEED_DATA:
            return events, skipped
        events.append(event)


def test_commands_and_settings() -> None:
    assert bytes.fromhex("7d81a1808080808080") == START_LIVE
    assert bytes.fromhex("7d81a6808080808080") == STORED_DATA
    assert bytes.fromhex("7d81af808080808080") == KEEP_ALIVE
    assert CURRENT_SETTINGS.baudrate == 115200 and CURRENT_SETTINGS.parity == "N"


def test_decodes_hand_written_frames() -> None:
    parser = OximeterParser()
    parser.receive_data(VALID + NOT_YET + NO_DATA + FAST)
    events, skipped = drain(parser)
    assert not skipped
    valid, not_yet, no_data, fast = events
    assert (valid.pulse, valid.spo2, valid.pleth, valid.valid) == (65, 97, 0x40, True)
    assert (valid.bargraph, valid.signal_strength) == (3, 6)
    assert not_yet.searching and not not_yet.valid and not_yet.spo2 is None and not_yet.pulse is None
    assert no_data.finger_out and no_data.spo2 is None and no_data.pulse is None
    assert (fast.pulse, fast.spo2) == (200, 95)
    assert to_json(valid) == {
        "spo2": 97,
        "pulse": 65,
        "pleth": 0x40,
        "finger_out": False,
        "probe_error": False,
        "searching": False,
    }


def test_garbage_then_resync() -> None:
    parser = OximeterParser()
    parser.receive_data(b"\x55\xaa" + VALID[:5] + VALID + b"\x01\xe9" + VALID)
    events, skipped = drain(parser)
    assert skipped == [b"\x55\xaa", VALID[:5], b"\x01\xe9"]
    assert [e.spo2 for e in events] == [97, 97]


def test_split_anywhere() -> None:
    data = VALID + NO_DATA
    for cut in range(len(data)):
        parser = OximeterParser()
        parser.receive_data(data[:cut])
        first, _ = drain(parser)
        parser.receive_data(data[cut:])
        rest, skipped = drain(parser)
        assert len(first + rest) == 2 and not skipped


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    parser = OximeterParser()
    parser.receive_data(data)
    drain(parser)
    parser.receive_data(VALID * 3)
    events, _ = drain(parser)
    assert events and events[-1].spo2 == 97 and events[-1].pulse == 65


@given(st.lists(st.tuples(st.integers(0, 89), st.integers(0, 255)), max_size=8), st.integers(1, 11))
def test_mutated_stream_resynchronises(mutations: list[tuple[int, int]], chunk: int) -> None:
    stream = bytearray(VALID * 10)
    for index, value in mutations:
        stream[index] = value
    parser = OximeterParser()
    data = bytes(stream) + VALID * 2
    for start in range(0, len(data), chunk):
        parser.receive_data(data[start : start + chunk])
        drain(parser)
    parser.receive_data(VALID)
    events, _ = drain(parser)
    assert events and events[-1].pulse == 65


def test_firmware_waits_for_start_and_stops_without_keep_alive() -> None:
    firmware = OximeterFirmware(seed=1)
    assert firmware.get_timer() is None
    firmware.receive_data(START_LIVE[:4], 100.0)
    assert firmware.get_timer() is None
    firmware.receive_data(START_LIVE[4:], 100.0)
    firmware.handle_timer(101.0)
    parser = OximeterParser()
    parser.receive_data(firmware.data_to_send())
    events, skipped = drain(parser)
    assert not skipped and 58 <= len(events) <= 62, "60 frames a second"
    assert all(e.spo2 is not None and 96 <= e.spo2 <= 99 for e in events)
    firmware.receive_data(KEEP_ALIVE, 104.0)
    firmware.handle_timer(108.0)
    assert firmware.streaming
    firmware.handle_timer(109.5)
    assert not firmware.streaming and firmware.get_timer() is None


def test_firmware_scenarios() -> None:
    def frames(scenario: str, seconds: float = 3.0) -> list[OximeterFrame]:
        firmware = OximeterFirmware(scenario, seed=2)
        firmware.receive_data(START_LIVE, 0.0)
        now = 0.0
        while now < seconds:
            now += 0.05
            firmware.handle_timer(now)
        parser = OximeterParser()
        parser.receive_data(firmware.data_to_send())
        events, skipped = drain(parser)
        assert not skipped
        return events

    assert all(e.spo2 is not None and 86 <= e.spo2 <= 90 for e in frames("hypoxia"))
    assert all(e.finger_out and e.spo2 is None for e in frames("finger-out"))
    assert all(e.probe_error for e in frames("probe-error"))
    searching = frames("searching")
    assert searching[0].searching and not searching[0].valid and searching[-1].valid
    weak = frames("weak-signal", 10.0)
    assert all(e.signal_strength == 1 for e in weak)
    assert any(e.spo2 is None for e in weak) and any(e.spo2 is not None for e in weak)


def test_pleth_has_upstroke_and_dicrotic_notch() -> None:
    samples = [pleth_shape(i / 100) for i in range(100)]
    peak = max(range(100), key=samples.__getitem__)
    assert peak < 25, "systolic upstroke comes early in the cycle"
    # After the peak the wave falls, dips (notch) and rises a little again.
    after = samples[peak:]
    assert any(after[i] > after[i - 1] for i in range(1, len(after) - 20))
    assert samples[0] < 0.1 and samples[-1] < 0.1
