"""SunTech-style NIBP frames: builders, both parsers, error codes, JSON."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import DeviceError, Reason, RemoteProtocolError
from devices.protocols import NEED_DATA
from devices.protocols import suntech as proto
from devices.simulators.nibp import NibpFirmware, Phase

# Module frames written by hand from PROTOCOLS.md (checksum: sum of the frame is 0 mod 256).
ACK_O = bytes.fromhex("3E 04 4F 6F")
ACK_B = bytes.fromhex("3E 04 42 7C")
CUFF_160 = bytes.fromhex("3E 05 A0 00 1D")
CUFF_291 = bytes.fromhex("3E 05 23 01 99")
# systolic 120, diastolic 80, bit test 0, status 1, 8 test codes 0, HR 70, MAP 93, error 0, 2 spare.
BP_120_80 = bytes.fromhex("3E 18 7800 5000 00 01 0000000000000000 4600 5D00 00 0000 3E")
# Cycle over with error 85 (pneumatic blockage), no values.
BP_ERROR_85 = bytes.fromhex("3E 18 0000 0000 00 01 0000000000000000 0000 0000 55 0000 54")
# Cycle still running: status 0.
BP_RUNNING = bytes.fromhex("3E 18 0000 0000 00 00 0000000000000000 0000 0000 00 0000 AA")

VALID_FRAMES = (ACK_O, ACK_B, CUFF_160, CUFF_291, BP_120_80, BP_ERROR_85, BP_RUNNING)


def drain(parser: proto.NibpParser | proto.HostCommandParser) -> tuple[list[object], list[bytes]]:
    """Every event and every skipped run until NEED_DATA, with a bound proving progress."""
    events: list[object] = []
    skipped: list[bytes] = []
    for _ in range(100_000):
        error: RemoteProtocolError | None = None
        try:
            event = parser.next_event()
        except RemoteProtocolError as exc:
            error = exc
        if error is not None:
            assert isinstance(error, proto.SuntechProtocolError)
            assert error.skipped, "an error must drop at least one byte"
            skipped.append(error.skipped)
            continue
        if event is NEED_DATA:
            return events, skipped
        events.append(event)
    raise AssertionError("parser made no progress")


def parse(data: bytes) -> tuple[list[object], list[bytes]]:
    parser = proto.NibpParser()
    parser.receive_data(data)
    return drain(parser)


def test_hand_written_frames_are_well_formed() -> None:
    for frame in VALID_FRAMES:
        assert sum(frame) % 256 == 0
        assert frame[1] == len(frame)


# -- builders ---------------------------------------------------------------
def test_builders_reproduce_the_documented_bytes() -> None:
    assert proto.start_measurement() == bytes.fromhex("3A 20 A6")
    assert proto.get_cuff_pressure() == bytes.fromhex("3A 79 05 00 48")
    assert proto.get_bp_data() == bytes.fromhex("3A 79 03 00 4A")
    assert proto.abort() == bytes.fromhex("3A 79 01 00 4C")
    assert proto.set_initial_inflate(160) == bytes.fromhex("3A 17 A0 00 0F")
    assert proto.close_valves() == bytes.fromhex("3A 0C 00 01 01 B8")


@pytest.mark.parametrize("mmhg", [79, 281, 300, 0, -1])
def test_initial_inflate_stays_far_from_the_safety_limit(mmhg: int) -> None:
    with pytest.raises(ValueError, match="initial inflation"):
        proto.set_initial_inflate(mmhg)


def test_initial_inflate_is_little_endian() -> None:
    frame = proto.set_initial_inflate(260)
    assert frame[2:4] == bytes([0x04, 0x01])
    assert sum(frame) % 256 == 0


def test_module_side_builders_match_hand_written_frames() -> None:
    assert proto.ack_frame("O") == ACK_O
    assert proto.cuff_pressure_frame(160) == CUFF_160
    assert proto.bp_data_frame(systolic=120, diastolic=80, mean=93, pulse=70, status=1) == BP_120_80
    assert proto.bp_data_frame(error_code=85, status=1) == BP_ERROR_85
    with pytest.raises(ValueError, match="letter"):
        proto.ack_frame("Z")


# -- module parser ------------------------------------------------------------
def test_parses_each_kind_of_module_frame() -> None:
    events, skipped = parse(ACK_O + CUFF_291 + BP_120_80 + ACK_B)
    assert skipped == []
    assert events == [
        proto.Ack("O"),
        proto.CuffPressure(291),
        proto.BpData(
            systolic=120,
            diastolic=80,
            mean=93,
            pulse=70,
            error_code=0,
            status=1,
            bit_test=0,
            test_codes=bytes(8),
        ),
        proto.Ack("B"),
    ]


def test_frames_split_anywhere_are_reassembled() -> None:
    data = b"".join(VALID_FRAMES)
    parser = proto.NibpParser()
    events: list[object] = []
    for byte in data:
        parser.receive_data(bytes([byte]))
        got, skipped = drain(parser)
        assert skipped == []
        events += got
    assert len(events) == len(VALID_FRAMES)


def test_bad_checksum_drops_only_up_to_the_next_start_byte() -> None:
    corrupted = bytearray(CUFF_160)
    corrupted[2] ^= 0x01
    events, skipped = parse(bytes(corrupted) + ACK_O)
    assert skipped == [bytes(corrupted)]
    assert events == [proto.Ack("O")]


def test_unknown_length_is_rejected_without_waiting() -> None:
    events, skipped = parse(b"\x3e\x07\x01\x02" + ACK_O)
    assert skipped == [b"\x3e\x07\x01\x02"]
    assert events == [proto.Ack("O")]


def test_a_bogus_long_length_does_not_swallow_the_next_frames() -> None:
    # A '>' and 0x18 in garbage announce a 24-byte frame; the real
    # acknowledgement and cuff pressure behind them must still come out, even
    # though fewer than 24 bytes follow.
    events, skipped = parse(b"\x3e\x18\x00" + ACK_O + CUFF_160)
    assert skipped == [b"\x3e\x18\x00"]
    assert events == [proto.Ack("O"), proto.CuffPressure(160)]


def test_a_bogus_long_length_is_resolved_once_enough_bytes_arrive() -> None:
    data = b"\x3e\x18" + BP_120_80 + ACK_O
    events, skipped = parse(data)
    assert skipped == [b"\x3e\x18"]
    assert events == [parse(BP_120_80)[0][0], proto.Ack("O")]


def test_unknown_ack_letter_is_a_protocol_error() -> None:
    frame = bytes([0x3E, 0x04, ord("Z")])
    frame += bytes([-sum(frame) & 0xFF])
    events, skipped = parse(frame + ACK_O)
    assert skipped == [frame]
    assert events == [proto.Ack("O")]


def test_leading_garbage_is_skipped() -> None:
    events, skipped = parse(b"\x00\xff\x12" + ACK_O)
    assert skipped == [b"\x00\xff\x12"]
    assert events == [proto.Ack("O")]


def test_incomplete_frame_waits() -> None:
    parser = proto.NibpParser()
    parser.receive_data(BP_120_80[:10])
    assert parser.next_event() is NEED_DATA
    parser.receive_data(BP_120_80[10:])
    assert isinstance(parser.next_event(), proto.BpData)


# -- host parser ------------------------------------------------------------
def test_host_parser_decodes_every_command() -> None:
    parser = proto.HostCommandParser()
    parser.receive_data(
        bytes.fromhex("3A 20 A6 3A 79 05 00 48 3A 79 03 00 4A 3A 79 01 00 4C 3A 17 A0 00 0F 3A 0C 00 01 01 B8")
    )
    events, skipped = drain(parser)
    assert skipped == []
    assert events == [
        proto.StartMeasurement(),
        proto.GetCuffPressure(),
        proto.GetBpData(),
        proto.Abort(),
        proto.SetInitialInflate(160),
        proto.CloseValves(b"\x00\x01\x01"),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        bytes.fromhex("3A 20 A7"),  # bad checksum
        bytes.fromhex("3A 55 71"),  # unknown command byte
        bytes.fromhex("3A 79 07 00 46"),  # unknown sub-command, valid checksum
    ],
)
def test_host_parser_rejects_bad_frames_and_resyncs(bad: bytes) -> None:
    parser = proto.HostCommandParser()
    parser.receive_data(bad + proto.get_bp_data())
    events, skipped = drain(parser)
    assert skipped == [bad]
    assert events == [proto.GetBpData()]


# -- error codes ------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (1, proto.WeakSignal),
        (2, proto.ErraticSignal),
        (3, proto.RetryLimitExceeded),
        (4, proto.MeasurementTimeout),
        (85, proto.PneumaticBlockage),
        (87, proto.InflateTimeout),
        (89, proto.OverPressure),
        (90, proto.PowerSupplyFault),
    ],
)
def test_each_error_code_has_its_typed_error(code: int, error_class: type[proto.NibpMeasurementError]) -> None:
    error = proto.error_for_code(code, device="nibp")
    assert type(error) is error_class
    assert isinstance(error, proto.NibpMeasurementError)
    assert isinstance(error, DeviceError)
    assert error.reason is Reason.MEASUREMENT
    assert error.code == code
    assert error.device == "nibp"
    # Plain language for the patient: whole sentences, no jargon codes.
    assert error.message.endswith(".")
    assert "error" not in error.message.lower()
    assert len(error.message) > 40


def test_weak_signal_message_is_the_plain_one() -> None:
    assert proto.error_for_code(1).message == (
        "The cuff could not detect a clear pulse. Keep your arm still and relaxed, then try again."
    )


def test_unknown_error_code_keeps_the_code() -> None:
    error = proto.error_for_code(42)
    assert type(error) is proto.NibpMeasurementError
    assert error.code == 42
    assert error.reason is Reason.MEASUREMENT
    assert error.message


def test_every_error_class_has_its_own_message() -> None:
    messages = {error_class.default_message for error_class in proto.ERROR_CLASSES.values()}
    assert len(messages) == len(proto.ERROR_CLASSES)


# -- JSON -------------------------------------------------------------------
def test_to_json() -> None:
    assert proto.to_json(proto.Ack("O")) == {"ack": "O"}
    assert proto.to_json(proto.CuffPressure(160)) == {"cuff_pressure": 160}
    (result,), _ = parse(BP_120_80)
    assert proto.to_json(result) == {"systolic": 120, "diastolic": 80, "mean": 93, "pulse": 70, "error_code": 0}
    (failed,), _ = parse(BP_ERROR_85)
    assert proto.to_json(failed) == {"systolic": None, "diastolic": None, "mean": None, "pulse": None, "error_code": 85}
    (running,), _ = parse(BP_RUNNING)
    assert proto.to_json(running) == {"systolic": None, "diastolic": None, "mean": None, "pulse": None, "error_code": 0}


def test_to_json_hides_values_of_a_failed_cycle_even_if_present() -> None:
    frame = proto.bp_data_frame(systolic=120, diastolic=80, mean=93, pulse=70, error_code=1, status=1)
    (event,), _ = parse(frame)
    assert proto.to_json(event)["systolic"] is None


# -- properties -------------------------------------------------------------
frames = st.sampled_from(VALID_FRAMES)


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    parser = proto.NibpParser()
    parser.receive_data(data)
    events, _ = drain(parser)
    assert all(isinstance(event, proto.Ack | proto.CuffPressure | proto.BpData) for event in events)


@given(st.binary(max_size=300))
def test_random_host_bytes_raise_only_protocol_errors(data: bytes) -> None:
    parser = proto.HostCommandParser()
    parser.receive_data(data)
    drain(parser)


@given(st.binary(max_size=60).map(lambda b: b.replace(b"\x3e", b"")), st.lists(frames, min_size=1, max_size=6))
def test_valid_frames_after_garbage_are_decoded(garbage: bytes, valid: list[bytes]) -> None:
    events, _ = parse(garbage + b"".join(valid))
    assert events == parse(b"".join(valid))[0]


@given(
    st.binary(min_size=1, max_size=40),
    st.lists(frames, min_size=1, max_size=6),
    st.lists(st.integers(1, 64), max_size=8),
)
def test_garbage_with_start_bytes_never_breaks_the_parser(garbage: bytes, valid: list[bytes], cuts: list[int]) -> None:
    # Garbage holding '>' may fake a frame, but the stream must still parse
    # with nothing but protocol errors, fed in arbitrary chunks.
    data = b"\x3e" + garbage + b"".join(valid)
    parser = proto.NibpParser()
    position = 0
    for cut in [*cuts, len(data)]:
        parser.receive_data(data[position : position + cut])
        position += cut
        drain(parser)
    parser.receive_data(data[position:])
    drain(parser)


@given(st.lists(frames, min_size=1, max_size=8), st.data())
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
    _, skipped = parse(bytes(stream))
    consumed = sum(len(run) for run in skipped)
    assert consumed <= len(stream)


@given(st.lists(frames, max_size=10))
def test_every_byte_is_accounted_for(valid: list[bytes]) -> None:
    events, skipped = parse(b"".join(valid))
    assert skipped == []
    assert len(events) == len(valid)


# -- the emulator, driven by hand (sans-IO) ----------------------------------
def run_firmware(firmware: NibpFirmware, until: float, now: float = 0.0) -> float:
    """Advance the firmware's clock through its timers up to ``until``."""
    while (when := firmware.get_timer()) is not None and when <= until:
        now = when
        firmware.handle_timer(now)
    return now


def replies(firmware: NibpFirmware, command: bytes, now: float) -> list[object]:
    firmware.receive_data(command, now)
    parser = proto.NibpParser()
    parser.receive_data(firmware.data_to_send())
    return drain(parser)[0]


def test_emulator_runs_a_whole_cycle() -> None:
    firmware = NibpFirmware("normal", seed=1)
    assert replies(firmware, proto.start_measurement(), 0.0) == [proto.Ack("O")]
    assert replies(firmware, proto.start_measurement(), 0.1) == [proto.Ack("B")]
    pressures = []
    now = 0.0
    while firmware.phase is not Phase.IDLE:
        now = run_firmware(firmware, now + 1.0, now)
        (cuff,) = replies(firmware, proto.get_cuff_pressure(), now)
        assert isinstance(cuff, proto.CuffPressure)
        pressures.append(cuff.mmhg)
        if firmware.phase is not Phase.IDLE:
            (running,) = replies(firmware, proto.get_bp_data(), now)
            assert isinstance(running, proto.BpData) and running.status == 0
        assert now < 120, "a cycle ends within two minutes"
    peak = pressures.index(max(pressures))
    assert 155 <= max(pressures) <= 165
    # Inflating at 20-30 mmHg/s, deflating at about 4-6 mmHg/s.
    assert 5 <= peak <= 8
    deflation = pressures[peak:]
    assert all(0 <= a - b <= 12 for a, b in itertools.pairwise(deflation) if b > 60)
    (result,) = replies(firmware, proto.get_bp_data(), now)
    assert isinstance(result, proto.BpData)
    assert result.ready and result.error_code == 0
    assert 105 <= result.systolic <= 135 and 65 <= result.diastolic <= 95 and 60 <= result.pulse <= 80


def test_emulator_never_exceeds_the_safety_limit() -> None:
    firmware = NibpFirmware("error-89")
    replies(firmware, proto.start_measurement(), 0.0)
    now = 0.0
    while firmware.phase is not Phase.IDLE:
        now = run_firmware(firmware, now + 0.5, now)
        assert firmware.cuff_pressure <= 300
    assert firmware.peak_pressure == 300
    (result,) = replies(firmware, proto.get_bp_data(), now)
    assert isinstance(result, proto.BpData) and result.error_code == 89 and result.ready


def test_emulator_abort_and_bad_frames() -> None:
    firmware = NibpFirmware("normal")
    assert replies(firmware, proto.abort(), 0.0) == [proto.Ack("A")]
    assert replies(firmware, bytes.fromhex("3A 20 A7"), 0.0) == [proto.Ack("N")]
    assert replies(firmware, proto.set_initial_inflate(80)[:-1] + b"\x00", 0.0) == [proto.Ack("N")]
    replies(firmware, proto.start_measurement(), 0.0)
    run_firmware(firmware, 3.0)
    assert firmware.cuff_pressure > 50
    assert replies(firmware, proto.abort(), 3.0) == [proto.Ack("A")]
    run_firmware(firmware, 6.0, 3.0)
    assert firmware.cuff_pressure == 0 and firmware.phase is Phase.IDLE
    (data,) = replies(firmware, proto.get_bp_data(), 6.0)
    assert isinstance(data, proto.BpData) and not data.ready


def test_emulator_speed_shortens_the_cycle() -> None:
    firmware = NibpFirmware("normal", speed=10)
    replies(firmware, proto.start_measurement(), 0.0)
    end = run_firmware(firmware, 10.0)
    assert firmware.phase is Phase.IDLE
    assert 1.5 <= end <= 5.0
