"""SunTech Advantage-style OEM NIBP (blood-pressure) module: 9600 baud 8N1 frames.

Rules this module keeps (PROTOCOLS.md, "Blood pressure"):

- Host frames start with ``:`` (0x3A), module frames with ``>`` (0x3E).
- The last byte of every frame is a checksum making the sum of all the
  frame's bytes 0 mod 256 (``0x100 - sum(previous bytes)``).
- Module frames carry their total length in byte 1. Only three lengths
  exist: 4 (acknowledgement letter), 5 (cuff pressure), 0x18 (BP data
  block). A length byte outside that set is garbage, not a frame.
- Host frames carry no length: the command byte after ``:`` fixes it.
- The host drives a cycle: start, poll the cuff pressure a few times a
  second while the module inflates and deflates, then read the BP data
  block, whose status byte is non-zero once a result (or an error code) is
  ready.

Two sans-IO parsers (h11's shape): :class:`NibpParser` decodes what the
module says (used by the driver), :class:`HostCommandParser` decodes what the
host says (used by the emulator). ``receive_data`` only buffers;
``next_event`` returns one event or ``NEED_DATA`` and, on bytes that break
the framing, drops them and raises :class:`SuntechProtocolError` (a
:class:`~devices.errors.RemoteProtocolError` carrying ``skipped``); call it
again to go on from the next start byte.

Resynchronisation never trusts a length or a command byte further than its
checksum: a bad frame costs only its start byte, and the search for the next
frame begins right after it, so a bogus length byte cannot swallow the valid
frames that follow it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import serial

from devices.errors import DeviceError, Reason, RemoteProtocolError
from devices.protocols import NEED_DATA, NeedData
from devices.serial_link import SerialSettings

__all__ = [
    "ERROR_CLASSES",
    "SETTINGS",
    "Abort",
    "Ack",
    "BpData",
    "CloseValves",
    "CuffPressure",
    "ErraticSignal",
    "GetBpData",
    "GetCuffPressure",
    "HostCommandParser",
    "InflateTimeout",
    "MeasurementTimeout",
    "NibpMeasurementError",
    "NibpParser",
    "OverPressure",
    "PneumaticBlockage",
    "PowerSupplyFault",
    "RetryLimitExceeded",
    "SetInitialInflate",
    "StartMeasurement",
    "SuntechProtocolError",
    "WeakSignal",
    "abort",
    "ack_frame",
    "bp_data_frame",
    "checksum",
    "close_valves",
    "cuff_pressure_frame",
    "error_for_code",
    "get_bp_data",
    "get_cuff_pressure",
    "set_initial_inflate",
    "start_measurement",
    "to_json",
]

SETTINGS: Final = SerialSettings(9600, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE, stopbits=1)
"""Line settings of the module: 9600 baud, 8N1 (PROTOCOLS.md)."""

# -- Wire facts (PROTOCOLS.md). Uncertain points, to check on a real module:
#    * ``CLOSE_VALVES`` (0x0C with 00 01 01) is named "close all valves" in the
#      public notes; we read it as "pump off, pneumatics back to rest" and the
#      driver sends it only after an abort. If a real module holds the cuff
#      pressure after it, stop sending it (devices/nibp.py, CLOSE_VALVES_AFTER_ABORT).
#    * which acknowledgement a set-initial-inflate gets (``O`` received or
#      ``K`` done): the driver accepts both.
#    * whether the module clears the BP status byte when a new cycle starts:
#      the driver does not rely on it (see devices/nibp.py).
#    * the meaning of the bit-test and test-code bytes: decoded raw, not interpreted.
HOST_START: Final = 0x3A  # ':'
MODULE_START: Final = 0x3E  # '>'

CMD_START: Final = 0x20
CMD_MODULE_DATA: Final = 0x79  # followed by a sub-command and 0x00
SUB_ABORT: Final = 0x01
SUB_BP_DATA: Final = 0x03
SUB_CUFF_PRESSURE: Final = 0x05
CMD_INITIAL_INFLATE: Final = 0x17  # followed by the pressure, uint16 little-endian
CMD_PNEUMATICS: Final = 0x0C
CLOSE_VALVES_PARAMS: Final = b"\x00\x01\x01"

HOST_FRAME_LENGTHS: Final[dict[int, int]] = {
    CMD_START: 3,
    CMD_MODULE_DATA: 5,
    CMD_INITIAL_INFLATE: 5,
    CMD_PNEUMATICS: 6,
}
"""Total length (start byte and checksum included) of each host command, by command byte."""

ACK_LENGTH: Final = 4
CUFF_LENGTH: Final = 5
BP_DATA_LENGTH: Final = 0x18
MODULE_FRAME_LENGTHS: Final = frozenset({ACK_LENGTH, CUFF_LENGTH, BP_DATA_LENGTH})
ACK_LETTERS: Final = frozenset("OKBAN")
"""``O`` received, ``K`` done, ``B`` busy, ``A`` aborted, ``N`` bad frame or parameter out of range."""

# BP data payload from byte 2: systolic u16, diastolic u16, bit-test u8,
# status u8, 8 test-code bytes, heart rate u16, mean u16, error code u8, 2 spare.
_BP_LAYOUT: Final = struct.Struct("<HHBB8sHHB2s")
assert _BP_LAYOUT.size == BP_DATA_LENGTH - 3

MAX_INITIAL_INFLATE: Final = 280
"""Highest initial inflation we ever ask for: well under the module's own 300 mmHg limit."""
MIN_INITIAL_INFLATE: Final = 80


# -- checksum and builders -------------------------------------------------
def checksum(body: bytes) -> int:
    """The byte that makes ``sum(body + checksum) % 256 == 0``."""
    return -sum(body) & 0xFF


def _frame(body: bytes) -> bytes:
    return body + bytes([checksum(body)])


def start_measurement() -> bytes:
    """Start an inflation and measurement cycle (``3A 20 A6``). Tell the patient first."""
    return _frame(bytes([HOST_START, CMD_START]))


def get_cuff_pressure() -> bytes:
    """Ask for the current cuff pressure (``3A 79 05 00 48``)."""
    return _frame(bytes([HOST_START, CMD_MODULE_DATA, SUB_CUFF_PRESSURE, 0x00]))


def get_bp_data() -> bytes:
    """Ask for the BP data block (``3A 79 03 00 4A``)."""
    return _frame(bytes([HOST_START, CMD_MODULE_DATA, SUB_BP_DATA, 0x00]))


def abort() -> bytes:
    """Stop the cycle and deflate at once (``3A 79 01 00 4C``)."""
    return _frame(bytes([HOST_START, CMD_MODULE_DATA, SUB_ABORT, 0x00]))


def set_initial_inflate(mmhg: int) -> bytes:
    """Set the first inflation target (160 mmHg: ``3A 17 A0 00 0F``).

    Raises :class:`ValueError` outside 80-280 mmHg: we never ask the module
    to go near its 300 mmHg safety limit.
    """
    if not MIN_INITIAL_INFLATE <= mmhg <= MAX_INITIAL_INFLATE:
        raise ValueError(f"initial inflation must be {MIN_INITIAL_INFLATE}-{MAX_INITIAL_INFLATE} mmHg")
    return _frame(bytes([HOST_START, CMD_INITIAL_INFLATE]) + struct.pack("<H", mmhg))


def close_valves() -> bytes:
    """Pump off, valves to rest (``3A 0C 00 01 01 B8``); see the uncertainty note above."""
    return _frame(bytes([HOST_START, CMD_PNEUMATICS]) + CLOSE_VALVES_PARAMS)


def ack_frame(letter: str) -> bytes:
    """A module acknowledgement frame (emulator side): ``>``, 4, letter, checksum."""
    if letter not in ACK_LETTERS or len(letter) != 1:
        raise ValueError(f"unknown acknowledgement letter {letter!r}")
    return _frame(bytes([MODULE_START, ACK_LENGTH, ord(letter)]))


def cuff_pressure_frame(mmhg: int) -> bytes:
    """A module cuff-pressure frame (emulator side)."""
    return _frame(bytes([MODULE_START, CUFF_LENGTH]) + struct.pack("<H", mmhg))


def bp_data_frame(
    *,
    systolic: int = 0,
    diastolic: int = 0,
    mean: int = 0,
    pulse: int = 0,
    error_code: int = 0,
    status: int = 0,
    bit_test: int = 0,
    test_codes: bytes = bytes(8),
) -> bytes:
    """A module BP data block (emulator side)."""
    payload = _BP_LAYOUT.pack(systolic, diastolic, bit_test, status, test_codes, pulse, mean, error_code, bytes(2))
    return _frame(bytes([MODULE_START, BP_DATA_LENGTH]) + payload)


# -- events ----------------------------------------------------------------
@dataclass(frozen=True)
class Ack:
    """The module acknowledged a command."""

    letter: str
    """``O`` received, ``K`` done, ``B`` busy, ``A`` aborted, ``N`` bad frame or parameter."""


@dataclass(frozen=True)
class CuffPressure:
    """The cuff pressure the module measured when asked."""

    mmhg: int
    """Pressure in mmHg."""


@dataclass(frozen=True)
class BpData:
    """The module's BP data block, raw as decoded."""

    systolic: int
    """Systolic pressure, mmHg; 0 when there is no result."""
    diastolic: int
    """Diastolic pressure, mmHg; 0 when there is no result."""
    mean: int
    """Mean arterial pressure, mmHg; 0 when there is no result."""
    pulse: int
    """Heart rate, beats per minute; 0 when there is no result."""
    error_code: int
    """0 when the cycle succeeded, else a code of :data:`ERROR_CLASSES`."""
    status: int
    """Non-zero once the cycle is over and the block holds its outcome."""
    bit_test: int
    """Built-in test code (not interpreted)."""
    test_codes: bytes
    """The eight test-code bytes (not interpreted)."""

    @property
    def ready(self) -> bool:
        """Whether the block holds the outcome of a finished cycle."""
        return self.status != 0


ModuleEvent = Ack | CuffPressure | BpData


@dataclass(frozen=True)
class StartMeasurement:
    """Host asked to start a cycle."""


@dataclass(frozen=True)
class GetCuffPressure:
    """Host asked for the cuff pressure."""


@dataclass(frozen=True)
class GetBpData:
    """Host asked for the BP data block."""


@dataclass(frozen=True)
class Abort:
    """Host asked to abort the cycle."""


@dataclass(frozen=True)
class SetInitialInflate:
    """Host set the first inflation target."""

    mmhg: int
    """Target pressure in mmHg, as sent (the module judges its range)."""


@dataclass(frozen=True)
class CloseValves:
    """Host sent the pneumatics command."""

    params: bytes
    """The three parameter bytes (``00 01 01`` for "close all valves")."""


HostCommand = StartMeasurement | GetCuffPressure | GetBpData | Abort | SetInitialInflate | CloseValves


class SuntechProtocolError(RemoteProtocolError):
    """Bytes that are not a valid frame were dropped; parsing goes on after them."""

    def __init__(self, message: str, skipped: bytes) -> None:
        super().__init__(message)
        self.skipped = skipped
        """The bytes dropped from the stream."""


# -- parsers ---------------------------------------------------------------
class _FrameBuffer:
    start_byte: int

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes read from the line."""
        self._buffer += data

    def _skip_to_start(self) -> SuntechProtocolError | None:
        buf = self._buffer
        if not buf or buf[0] == self.start_byte:
            return None
        return self._drop_until_next_start(0)

    def _drop_until_next_start(self, first: int) -> SuntechProtocolError:
        """Drop ``buf[:cut]`` where ``cut`` is the next start byte after ``first``."""
        buf = self._buffer
        cut = buf.find(self.start_byte, first + 1)
        if cut < 0:
            cut = len(buf)
        skipped = bytes(buf[:cut])
        del buf[:cut]
        return SuntechProtocolError("bytes outside a valid frame", skipped)

    def _checksum_ok(self, length: int) -> bool:
        return sum(self._buffer[:length]) & 0xFF == 0


class NibpParser(_FrameBuffer):
    """Decodes the module's frames into :class:`Ack`, :class:`CuffPressure` and :class:`BpData`."""

    start_byte = MODULE_START

    def next_event(self) -> ModuleEvent | NeedData:
        """The next decoded event, or ``NEED_DATA``; raises ``SuntechProtocolError`` after dropping bad bytes."""
        error = self._skip_to_start()
        if error is not None:
            raise error
        buf = self._buffer
        if len(buf) < 2:
            return NEED_DATA
        length = buf[1]
        if length not in MODULE_FRAME_LENGTHS:
            raise self._drop_until_next_start(0)
        if len(buf) < length:
            # A start byte and a plausible length seen in garbage must not hold
            # back a real frame that is already complete behind them.
            later = self._complete_frame_after(0)
            if later is not None:
                raise self._drop_until(later)
            return NEED_DATA
        if not self._checksum_ok(length):
            raise self._drop_until_next_start(0)
        frame = bytes(buf[:length])
        event = _decode_module_frame(frame)
        if event is None:
            raise self._drop_until_next_start(0)
        del buf[:length]
        return event

    def _complete_frame_after(self, first: int) -> int | None:
        buf = self._buffer
        pos = buf.find(MODULE_START, first + 1)
        while pos >= 0:
            if pos + 1 < len(buf):
                length = buf[pos + 1]
                if (
                    length in MODULE_FRAME_LENGTHS
                    and pos + length <= len(buf)
                    and sum(buf[pos : pos + length]) & 0xFF == 0
                    and _decode_module_frame(bytes(buf[pos : pos + length])) is not None
                ):
                    return pos
            pos = buf.find(MODULE_START, pos + 1)
        return None

    def _drop_until(self, cut: int) -> SuntechProtocolError:
        skipped = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        return SuntechProtocolError("a false frame start before a valid frame", skipped)


def _decode_module_frame(frame: bytes) -> ModuleEvent | None:
    length = len(frame)
    if length == ACK_LENGTH:
        letter = chr(frame[2])
        return Ack(letter) if letter in ACK_LETTERS else None
    if length == CUFF_LENGTH:
        return CuffPressure(frame[2] | frame[3] << 8)
    systolic, diastolic, bit_test, status, test_codes, pulse, mean, error_code, _spare = _BP_LAYOUT.unpack(frame[2:-1])
    return BpData(
        systolic=systolic,
        diastolic=diastolic,
        mean=mean,
        pulse=pulse,
        error_code=error_code,
        status=status,
        bit_test=bit_test,
        test_codes=test_codes,
    )


class HostCommandParser(_FrameBuffer):
    """Decodes the host's commands (the emulator's side of the line)."""

    start_byte = HOST_START

    def next_event(self) -> HostCommand | NeedData:
        """The next decoded command, or ``NEED_DATA``; raises ``SuntechProtocolError`` after dropping bad bytes."""
        error = self._skip_to_start()
        if error is not None:
            raise error
        buf = self._buffer
        if len(buf) < 2:
            return NEED_DATA
        length = HOST_FRAME_LENGTHS.get(buf[1])
        if length is None:
            raise self._drop_until_next_start(0)
        if len(buf) < length:
            return NEED_DATA
        if not self._checksum_ok(length):
            raise self._drop_until_next_start(0)
        command = _decode_host_frame(bytes(buf[:length]))
        if command is None:
            raise self._drop_until_next_start(0)
        del buf[:length]
        return command


def _decode_host_frame(frame: bytes) -> HostCommand | None:
    command = frame[1]
    if command == CMD_START:
        return StartMeasurement()
    if command == CMD_INITIAL_INFLATE:
        return SetInitialInflate(frame[2] | frame[3] << 8)
    if command == CMD_PNEUMATICS:
        return CloseValves(frame[2:5])
    # CMD_MODULE_DATA
    if frame[3] != 0x00:
        return None
    sub: dict[int, HostCommand] = {SUB_ABORT: Abort(), SUB_BP_DATA: GetBpData(), SUB_CUFF_PRESSURE: GetCuffPressure()}
    return sub.get(frame[2])


# -- error codes -----------------------------------------------------------
class NibpMeasurementError(DeviceError):
    """The module ran its cycle but reported an error code instead of a result."""

    reason = Reason.MEASUREMENT
    default_message = (
        "The blood-pressure monitor could not finish the measurement. Please try again, or ask the pharmacist for help."
    )

    def __init__(self, message: str | None = None, *, code: int, device: str = "") -> None:
        super().__init__(message or self.default_message, device=device)
        self.code = code
        """The module's error code (PROTOCOLS.md)."""


class WeakSignal(NibpMeasurementError):
    """Code 1: the pulse signal in the cuff was too weak."""

    default_message = "The cuff could not detect a clear pulse. Keep your arm still and relaxed, then try again."


class ErraticSignal(NibpMeasurementError):
    """Code 2: the signal was erratic, usually because the arm moved."""

    default_message = (
        "The pulse signal was irregular, often because the arm moved or the patient spoke. "
        "Rest the arm on the table at heart level, stay still and silent, then try again."
    )


class RetryLimitExceeded(NibpMeasurementError):
    """Code 3: the module gave up after its allowed number of attempts."""

    default_message = (
        "The monitor tried several times without getting a reliable reading. "
        "Rest for two minutes, check that the cuff sits on the bare upper arm, then try again."
    )


class MeasurementTimeout(NibpMeasurementError):
    """Code 4: the cycle went over the module's time limit."""

    default_message = "The measurement took too long and was stopped. Rest for a minute, then try again."


class PneumaticBlockage(NibpMeasurementError):
    """Code 85: air could not flow (kinked or blocked tube)."""

    default_message = (
        "Air could not flow through the cuff tube. Check that the tube is not pinched or kinked, then try again."
    )


class InflateTimeout(NibpMeasurementError):
    """Code 87: the cuff did not reach its pressure in time (loose cuff, leak)."""

    default_message = (
        "The cuff did not inflate properly. Check that it is wrapped snugly around the upper arm "
        "and that the tube is plugged in, then try again."
    )


class OverPressure(NibpMeasurementError):
    """Code 89: the module's over-pressure safety released the cuff."""

    default_message = (
        "The cuff pressure went over the safety limit, so the monitor released it. "
        "Please ask the pharmacist to check the cuff before trying again."
    )


class PowerSupplyFault(NibpMeasurementError):
    """Code 90: the module's power supply is out of range."""

    default_message = (
        "The blood-pressure monitor has a power problem and cannot measure. "
        "Please ask the pharmacist for help; do not try again for now."
    )


ERROR_CLASSES: Final[dict[int, type[NibpMeasurementError]]] = {
    1: WeakSignal,
    2: ErraticSignal,
    3: RetryLimitExceeded,
    4: MeasurementTimeout,
    85: PneumaticBlockage,
    87: InflateTimeout,
    89: OverPressure,
    90: PowerSupplyFault,
}
"""The module's error codes (PROTOCOLS.md) and the error each becomes."""


def error_for_code(code: int, *, device: str = "") -> NibpMeasurementError:
    """The typed error for a module error code; an unknown code gives the generic error keeping it."""
    error_class = ERROR_CLASSES.get(code)
    if error_class is None:
        return NibpMeasurementError(code=code, device=device)
    return error_class(code=code, device=device)


# -- JSON ------------------------------------------------------------------
def to_json(event: object) -> dict[str, object]:
    """The ``decode`` CLI's JSON for a module event; values the module marks unavailable are ``None``."""
    if isinstance(event, Ack):
        return {"ack": event.letter}
    if isinstance(event, CuffPressure):
        return {"cuff_pressure": event.mmhg}
    if isinstance(event, BpData):
        valid = event.ready and event.error_code == 0

        def value(raw: int) -> int | None:
            return raw if valid and raw != 0 else None

        return {
            "systolic": value(event.systolic),
            "diastolic": value(event.diastolic),
            "mean": value(event.mean),
            "pulse": value(event.pulse),
            "error_code": event.error_code,
        }
    raise TypeError(f"not a SunTech module event: {type(event).__name__}")
