"""Contec CMS50D+/E pulse oximeter, newer firmware: 9-byte frames at 115200 baud.

Rules this module keeps (PROTOCOLS.md, "Newer firmware"):

- The host starts the live stream with a 9-byte command ``7D 81 A1 80 80 80
  80 80 80`` and must send the keep-alive (opcode ``AF``) about every 100
  frames, or the device stops streaming.
- Live frames are 9 bytes starting ``01 E0`` (all valid), ``01 E1`` (pulse and
  SpO2 not yet valid) or ``01 E2`` (no data). Bytes 1 to 8 have bit 7 set and
  byte 0 (the frame type) has it clear: that is what lets a reader find frames
  again after garbage. There is no checksum, so a frame is accepted when its
  shape is right; anything else is dropped up to the next ``01``.

The field layout past byte 1 is not published: it lives in the table below
(:data:`LIVE_LAYOUT`) and nowhere else. The simulator builds its frames from
the same table.

Sans-IO (h11's shape): :meth:`OximeterParser.receive_data` only buffers,
:meth:`OximeterParser.next_event` returns one event or ``NEED_DATA``, and
raises :class:`~devices.errors.RemoteProtocolError` (with ``skipped``) after
dropping bytes that break the framing; call it again to go on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from devices.protocols import NEED_DATA, NeedData
from devices.protocols.oximetry import NO_VALUE, OximeterFrame, OximeterProtocolError
from devices.protocols.oximetry import to_json as to_json
from devices.serial_link import SerialSettings

__all__ = [
    "CURRENT_SETTINGS",
    "KEEP_ALIVE",
    "LIVE_LAYOUT",
    "START_LIVE",
    "STOP_LIVE",
    "STORED_DATA",
    "OximeterFrame",
    "OximeterParser",
    "command",
    "to_json",
]

CURRENT_SETTINGS: Final = SerialSettings(115200)
"""Line settings of the newer firmware: 115200 baud, 8N1, no flow control."""

COMMAND_PREFIX: Final = b"\x7d\x81"
COMMAND_PADDING: Final = b"\x80" * 6
OP_START_LIVE: Final = 0xA1
OP_STOP_LIVE: Final = 0xA2  # not in PROTOCOLS.md: used by several public clients, unconfirmed here
OP_STORED_DATA: Final = 0xA6
OP_KEEP_ALIVE: Final = 0xAF


def command(opcode: int) -> bytes:
    """The 9-byte host command ``7D 81 <opcode>`` then six ``80`` bytes."""
    return COMMAND_PREFIX + bytes([opcode & 0xFF]) + COMMAND_PADDING


START_LIVE: Final = command(OP_START_LIVE)
"""Start streaming live frames."""
STOP_LIVE: Final = command(OP_STOP_LIVE)
"""Stop streaming live frames (opcode from public clients, not from PROTOCOLS.md)."""
STORED_DATA: Final = command(OP_STORED_DATA)
"""Download the stored data (its reply is not decoded by this module)."""
KEEP_ALIVE: Final = command(OP_KEEP_ALIVE)
"""Keep the live stream going; send about every 100 frames."""


@dataclass(frozen=True)
class LiveLayout:
    """Where each field sits in a 9-byte live frame (index = byte offset)."""

    length: int
    frame_type: int
    """Byte 0: the only byte with bit 7 clear."""
    status_base: int
    """Byte 1 is ``status_base | status``."""
    status_valid: int
    status_not_valid: int
    status_no_data: int
    pleth: int
    """Offset of the pleth sample (``0x80 | sample``)."""
    flags: int
    """Offset of ``0x80 | bar graph (bits 0-3) | probe error | searching | beep``."""
    bargraph_mask: int
    probe_error_bit: int
    searching_bit: int
    beep_bit: int
    signal: int
    """Offset of ``0x80 | signal strength (bits 0-3) | finger out | dropping | pulse bit 7``."""
    signal_mask: int
    finger_out_bit: int
    dropping_bit: int
    pulse_high_bit: int
    """In the ``signal`` byte: bit 7 of the pulse rate."""
    pulse: int
    """Offset of ``0x80 | pulse low 7 bits``."""
    spo2: int
    """Offset of ``0x80 | SpO2``."""


# UNCERTAIN, check against a real device: only bytes 0-1 (type, status) and
# the pulse/SpO2 positions (bytes 5 and 6, & 0x7F; a published capture read
# 65 bpm and 97 %) come from PROTOCOLS.md. The pleth offset and the flag bits
# are this project's choice; the flag bits mirror the older firmware's bit
# positions (PROTOCOLS.md, older firmware bytes 0 and 2), which Contec may well
# have kept. Bytes 7 and 8 are read as reserved (any value with bit 7 set).
LIVE_LAYOUT: Final = LiveLayout(
    length=9,
    frame_type=0x01,
    status_base=0xE0,
    status_valid=0,
    status_not_valid=1,
    status_no_data=2,
    pleth=2,
    flags=3,
    bargraph_mask=0x0F,
    probe_error_bit=0x10,
    searching_bit=0x20,
    beep_bit=0x40,
    signal=4,
    signal_mask=0x0F,
    finger_out_bit=0x10,
    dropping_bit=0x20,
    pulse_high_bit=0x40,
    pulse=5,
    spo2=6,
)

_L = LIVE_LAYOUT
_FRAME = struct.Struct(f"{_L.length}B")
_FRAME_LENGTH = _L.length
_TYPE = _L.frame_type
_STATUS_MIN = _L.status_base
_STATUS_MAX = _L.status_base | max(_L.status_valid, _L.status_not_valid, _L.status_no_data)
_TYPE_BYTE = bytes([_L.frame_type])
_MAX_SPO2 = 100


class OximeterParser:
    """Decodes the newer firmware's byte stream into :class:`OximeterFrame` events."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes read from the port."""
        self._buffer += data

    def next_event(self) -> OximeterFrame | NeedData:
        """The next decoded frame, or ``NEED_DATA``; raises ``RemoteProtocolError`` after dropping bad bytes."""
        buf = self._buffer
        pos = self._pos
        avail = len(buf) - pos
        if avail >= _FRAME_LENGTH:
            b = _FRAME.unpack_from(buf, pos)
            if (
                b[0] == _TYPE
                and _STATUS_MIN <= b[1] <= _STATUS_MAX
                and b[2] & b[3] & b[4] & b[5] & b[6] & b[7] & b[8] & 0x80
                # No checksum: an SpO2 above 100 that is not "no value" can
                # only come from a torn frame, so it breaks the frame.
                and ((b[_L.spo2] & 0x7F) <= _MAX_SPO2 or (b[_L.spo2] & 0x7F) == NO_VALUE)
            ):
                self._pos = pos + _FRAME_LENGTH
                return _decode(b)
        elif avail == 0 or (buf[pos] == _TYPE and (avail == 1 or _STATUS_MIN <= buf[pos + 1] <= _STATUS_MAX)):
            # Nothing yet, or the start of a frame still arriving.
            if pos:
                del buf[:pos]
                self._pos = 0
            return NEED_DATA
        cut = buf.find(_TYPE_BYTE, pos + 1)
        if cut < 0:
            cut = len(buf)
        skipped = bytes(buf[pos:cut])
        self._pos = cut
        raise OximeterProtocolError(f"skipped {len(skipped)} byte(s) outside a 9-byte live frame", skipped)


def _decode(b: tuple[int, ...]) -> OximeterFrame:
    status = b[1] & 0x0F
    flags = b[_L.flags]
    signal = b[_L.signal]
    if status == _L.status_no_data:
        spo2 = pulse = None
    else:
        spo2_raw = b[_L.spo2] & 0x7F
        pulse_raw = (b[_L.pulse] & 0x7F) | ((signal & _L.pulse_high_bit) << 1)
        spo2 = None if spo2_raw == NO_VALUE else spo2_raw
        pulse = None if pulse_raw in (NO_VALUE, 0xFF) else pulse_raw
    return OximeterFrame(
        spo2=spo2,
        pulse=pulse,
        pleth=b[_L.pleth] & 0x7F,
        signal_strength=signal & _L.signal_mask,
        bargraph=flags & _L.bargraph_mask,
        finger_out=bool(signal & _L.finger_out_bit),
        probe_error=bool(flags & _L.probe_error_bit),
        searching=bool(flags & _L.searching_bit),
        dropping=bool(signal & _L.dropping_bit),
        beep=bool(flags & _L.beep_bit),
        valid=status == _L.status_valid and spo2 is not None and pulse is not None,
    )
