"""Older CMS50D+ firmware: 5-byte live frames and stored-data download."""

from __future__ import annotations

import serial
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import RemoteProtocolError
from devices.protocols import NEED_DATA
from devices.protocols.contec_legacy import (
    LEGACY_SETTINGS,
    START_DOWNLOAD,
    STOP_DOWNLOAD,
    LegacyOximeterParser,
    OximeterFrame,
    StoredRecord,
    to_json,
)
from devices.simulators.oximeter import LegacyOximeterFirmware

# Signal 5, beep; pleth 0x40; bar graph 3; pulse 72; SpO2 97 (PROTOCOLS.md layout).
NORMAL = bytes([0xC5, 0x40, 0x03, 72, 97])
# Finger out, no values.
FINGER_OUT = bytes([0x90, 0x00, 0x00, 0x7F, 0x7F])
# Pulse 200 = 0x80 | 72: bit 7 travels in byte 2 bit 0x40; searching set.
FAST_SEARCHING = bytes([0x84, 0x11, 0x60, 72, 95])


def drain(parser: LegacyOximeterParser) -> tuple[list[object], list[bytes]]:
    events: list[object] = []
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


def test_settings_are_19200_8o1_without_software_flow_control() -> None:
    assert LEGACY_SETTINGS.baudrate == 19200
    assert LEGACY_SETTINGS.parity == serial.PARITY_ODD
    assert LEGACY_SETTINGS.bytesize == 8 and LEGACY_SETTINGS.stopbits == 1
    assert LEGACY_SETTINGS.xonxoff is False
    assert START_DOWNLOAD == b"\xf5\xf5" and STOP_DOWNLOAD == b"\xf6\xf6\xf6"


def test_decodes_hand_written_frames() -> None:
    parser = LegacyOximeterParser()
    parser.receive_data(NORMAL + FINGER_OUT + FAST_SEARCHING)
    events, skipped = drain(parser)
    assert not skipped
    assert events == [
        OximeterFrame(97, 72, 0x40, 5, 3, False, False, False, False, True, True),
        OximeterFrame(None, None, 0, 0, 0, True, False, False, False, False, False),
        OximeterFrame(95, 200, 0x11, 4, 0, False, False, True, False, False, False),
    ]
    assert to_json(events[1]) == {
        "spo2": None,
        "pulse": None,
        "pleth": 0,
        "finger_out": True,
        "probe_error": False,
        "searching": False,
    }


def test_probe_error_and_dropping_bits() -> None:
    parser = LegacyOximeterParser()
    parser.receive_data(bytes([0xA2, 0x05, 0x10, 80, 88]))
    frame = parser.next_event()
    assert isinstance(frame, OximeterFrame)
    assert frame.probe_error and frame.dropping and not frame.valid


def test_pleth_values_0x11_and_0x13_pass() -> None:
    # The reason XON/XOFF is off: these are ordinary samples.
    parser = LegacyOximeterParser()
    parser.receive_data(bytes([0x85, 0x11, 0, 70, 98, 0x85, 0x13, 0, 70, 98]))
    events, _ = drain(parser)
    assert [e.pleth for e in events if isinstance(e, OximeterFrame)] == [0x11, 0x13]


def test_split_anywhere_gives_the_same_frames() -> None:
    data = NORMAL + FINGER_OUT + FAST_SEARCHING
    for cut in range(len(data)):
        parser = LegacyOximeterParser()
        parser.receive_data(data[:cut])
        first, _ = drain(parser)
        parser.receive_data(data[cut:])
        rest, skipped = drain(parser)
        assert len(first + rest) == 3 and not skipped


def test_garbage_is_dropped_then_resynchronised() -> None:
    parser = LegacyOximeterParser()
    parser.receive_data(b"\x01\x02" + NORMAL[:3] + NORMAL + b"\x7f")
    with_error = []
    try:
        parser.next_event()
    except RemoteProtocolError as exc:
        with_error.append(exc)
    assert with_error and with_error[0].skipped == b"\x01\x02"  # type: ignore[attr-defined]
    events, skipped = drain(parser)
    assert skipped == [NORMAL[:3], b"\x7f"]  # a byte without bit 7 cannot start a frame
    assert len(events) == 1 and isinstance(events[0], OximeterFrame) and events[0].spo2 == 97


def test_impossible_spo2_breaks_the_frame() -> None:
    parser = LegacyOximeterParser()
    parser.receive_data(bytes([0x85, 0x40, 0, 70, 110]) + NORMAL)
    events, skipped = drain(parser)
    assert skipped == [bytes([0x85, 0x40, 0, 70, 110])]
    assert len(events) == 1


def test_stored_data_download() -> None:
    header = b"\xf2\x80\x00" * 3 + bytes([0x00, 0x00, 0x03])
    records = bytes([0xF0, 0x80 | 70, 97, 0xF1, 0x80 | 2, 95, 0xF0, 0xFF, 0x7F])  # 70/97, 130/95, none
    parser = LegacyOximeterParser()
    parser.receive_data(header + records + NORMAL)
    events, skipped = drain(parser)
    assert not skipped
    assert events[:3] == [StoredRecord(70, 97), StoredRecord(130, 95), StoredRecord(None, None)]
    assert isinstance(events[3], OximeterFrame)
    assert to_json(events[0])["spo2"] == 97 and to_json(events[0])["pleth"] is None


def test_live_frame_ends_an_interrupted_download() -> None:
    header = b"\xf2\x80\x00" * 3 + bytes([0x00, 0x01, 0x00])  # 128 records announced
    parser = LegacyOximeterParser()
    parser.receive_data(header + bytes([0xF0, 0x80 | 70, 97]) + NORMAL + NORMAL)
    events, _ = drain(parser)
    assert events[0] == StoredRecord(70, 97)
    assert sum(isinstance(e, OximeterFrame) for e in events) == 2


def test_emulator_frames_decode() -> None:
    firmware = LegacyOximeterFirmware("tachycardia", seed=4)
    firmware.handle_timer(10.0)
    firmware.handle_timer(11.0)
    parser = LegacyOximeterParser()
    parser.receive_data(firmware.data_to_send())
    events, skipped = drain(parser)
    assert not skipped and len(events) >= 60
    assert all(isinstance(e, OximeterFrame) and e.pulse is not None and 115 <= e.pulse <= 140 for e in events)
    assert any(isinstance(e, OximeterFrame) and e.beep for e in events)


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    parser = LegacyOximeterParser()
    parser.receive_data(data)
    drain(parser)
    # Whatever came before, the next frames are decoded again.
    parser.receive_data(NORMAL * 3)
    events, _ = drain(parser)
    assert events[-2:] == [events[-1]] * 2 and isinstance(events[-1], OximeterFrame) and events[-1].spo2 == 97


@given(st.lists(st.tuples(st.integers(0, 49), st.integers(0, 255)), max_size=8), st.integers(1, 7))
def test_mutated_stream_resynchronises(mutations: list[tuple[int, int]], chunk: int) -> None:
    stream = bytearray(NORMAL * 10)
    for index, value in mutations:
        stream[index] = value
    parser = LegacyOximeterParser()
    data = bytes(stream) + NORMAL * 3
    for start in range(0, len(data), chunk):
        parser.receive_data(data[start : start + chunk])
        drain(parser)
    parser.receive_data(NORMAL)
    events, _ = drain(parser)
    assert events and isinstance(events[-1], OximeterFrame) and events[-1].pulse == 72
