"""Contec CMS50D+ pulse oximeter, older firmware: 5-byte live frames at 19200 baud.

Rules this module keeps (PROTOCOLS.md, "Older firmware"):

- The device streams live frames without being asked, about 60 a second.
- A frame is 5 bytes and only byte 0 has bit 7 set: a reader finds the start
  of a frame by that bit, and after garbage resynchronises on the next byte
  that has it. There is no checksum, so a frame is accepted when its shape is
  right.
- ``F5 F5`` asks for the stored data. The device answers ``F2 80 00`` three
  times, a 3-byte length in 7-bit groups, then 3-byte records
  ``F0|pulse-bit-7``, ``0x80|pulse``, ``SpO2``. ``F6 F6 F6`` stops it. Neither
  the header nor a record can be mistaken for a live frame (their byte 1 has
  bit 7 set), so the parser recognises a download by its header and goes back
  to live frames by itself when the records end or a live frame shows up.

Sans-IO (h11's shape): :meth:`LegacyOximeterParser.receive_data` only buffers,
:meth:`LegacyOximeterParser.next_event` returns one event or ``NEED_DATA``, and
raises :class:`~devices.errors.RemoteProtocolError` (with ``skipped``) after
dropping bytes that break the framing; call it again to go on.
"""

from __future__ import annotations

from typing import Final

import serial

from devices.protocols import NEED_DATA, NeedData
from devices.protocols.oximetry import NO_VALUE, OximeterFrame, OximeterProtocolError, StoredRecord
from devices.protocols.oximetry import to_json as to_json
from devices.serial_link import SerialSettings

__all__ = [
    "LEGACY_SETTINGS",
    "START_DOWNLOAD",
    "STOP_DOWNLOAD",
    "LegacyOximeterParser",
    "OximeterFrame",
    "StoredRecord",
    "to_json",
]

LEGACY_SETTINGS: Final = SerialSettings(
    19200,
    bytesize=serial.EIGHTBITS,
    parity=serial.PARITY_ODD,
    stopbits=serial.STOPBITS_ONE,
    # Deliberate deviation from the port description (8O1 *with* XON/XOFF):
    # plethysmogram samples run over 0-127, so 0x11 and 0x13 are ordinary data
    # bytes; a host applying XON/XOFF would swallow them and tear frames. The
    # device never throttles the host, so nothing is lost by ignoring it.
    xonxoff=False,
)
"""Line settings of the older firmware: 19200 baud, 8 data bits, odd parity, 1 stop bit."""

START_DOWNLOAD: Final = b"\xf5\xf5"
"""Host command: send the stored data."""
STOP_DOWNLOAD: Final = b"\xf6\xf6\xf6"
"""Host command: stop sending the stored data."""

# -- Wire layout (PROTOCOLS.md). Uncertain points, to check on a real device:
#    * whether pulse "no value" is 127 on the 8-bit value (taken here, so the
#      device cannot show exactly 127 bpm) or only on the low 7 bits; 255 is
#      treated as "no value" too since it is beyond the device's range;
#    * the stored-data length: read as three 7-bit groups, most significant
#      first, counting records (not bytes);
#    * whether the device keeps streaming live frames during a download.
FRAME_LENGTH: Final = 5
SYNC_BIT: Final = 0x80  # byte 0 only
# byte 0
SIGNAL_MASK: Final = 0x0F
FINGER_OUT_BIT: Final = 0x10
DROPPING_BIT: Final = 0x20
BEEP_BIT: Final = 0x40
# byte 1: pleth sample 0-127
# byte 2
BARGRAPH_MASK: Final = 0x0F
PROBE_ERROR_BIT: Final = 0x10
SEARCHING_BIT: Final = 0x20
PULSE_HIGH_BIT: Final = 0x40  # bit 7 of the pulse rate
# byte 3: pulse rate low 7 bits; byte 4: SpO2 (low 7 bits)
PULSE_NO_VALUE: Final = frozenset({NO_VALUE, 0xFF})
MAX_SPO2: Final = 100
# stored data
DOWNLOAD_MARKER: Final = b"\xf2\x80\x00"  # sent three times
LENGTH_BYTES: Final = 3
RECORD_LENGTH: Final = 3
RECORD_HEAD_MASK: Final = 0xFE  # record byte 0 is F0 or F1 (bit 0: pulse bit 7)
RECORD_HEAD: Final = 0xF0

_LIVE, _HEADER, _RECORDS = 0, 1, 2
_COMPACT_AFTER = 4096


class LegacyOximeterParser:
    """Decodes the older firmware's byte stream into :class:`OximeterFrame` and :class:`StoredRecord`."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0
        self._mode = _LIVE
        self._records_left = 0

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes read from the port."""
        self._buffer += data

    def next_event(self) -> OximeterFrame | StoredRecord | NeedData:
        """The next decoded event, or ``NEED_DATA``; raises ``RemoteProtocolError`` after dropping bad bytes."""
        buf = self._buffer
        end = len(buf)
        while True:
            pos = self._pos
            avail = end - pos
            if avail <= 0:
                return self._need_data()
            b0 = buf[pos]
            if self._mode == _LIVE:
                if b0 == 0xF2:
                    marker = self._match_marker(pos, end)
                    if marker is None:
                        return self._need_data()
                    if marker:
                        self._pos = pos + len(DOWNLOAD_MARKER)
                        self._mode = _HEADER
                        continue
                if avail >= FRAME_LENGTH:
                    b1 = buf[pos + 1]
                    b2 = buf[pos + 2]
                    b3 = buf[pos + 3]
                    b4 = buf[pos + 4]
                    # No checksum: an SpO2 above 100 that is not "no value"
                    # can only come from a torn frame, so it breaks the frame.
                    if b0 & SYNC_BIT and not (b1 | b2 | b3 | b4) & SYNC_BIT and (b4 <= MAX_SPO2 or b4 == NO_VALUE):
                        self._pos = pos + FRAME_LENGTH
                        return _decode_live(b0, b1, b2, b3, b4)
                elif b0 & SYNC_BIT and not any(buf[i] & SYNC_BIT for i in range(pos + 1, end)):
                    return self._need_data()
                raise self._resync(pos, end, "bytes outside a 5-byte live frame")
            if self._mode == _HEADER:
                marker = self._match_marker(pos, end)
                if marker is None:
                    return self._need_data()
                if marker:
                    self._pos = pos + len(DOWNLOAD_MARKER)
                    continue
                if avail < LENGTH_BYTES:
                    return self._need_data()
                length = ((buf[pos] & 0x7F) << 14) | ((buf[pos + 1] & 0x7F) << 7) | (buf[pos + 2] & 0x7F)
                self._pos = pos + LENGTH_BYTES
                self._records_left = length
                self._mode = _RECORDS if length else _LIVE
                continue
            # _RECORDS
            if avail < RECORD_LENGTH:
                return self._need_data()
            b1 = buf[pos + 1]
            b2 = buf[pos + 2]
            if b0 & RECORD_HEAD_MASK == RECORD_HEAD and b1 & 0x80 and not b2 & 0x80:
                self._pos = pos + RECORD_LENGTH
                self._records_left -= 1
                if self._records_left <= 0:
                    self._mode = _LIVE
                pulse = ((b0 & 0x01) << 7) | (b1 & 0x7F)
                return StoredRecord(
                    pulse=None if pulse in PULSE_NO_VALUE else pulse,
                    spo2=None if b2 == NO_VALUE else b2,
                )
            if b0 & SYNC_BIT and not b1 & SYNC_BIT:
                # Maybe a live frame: the download ended early or was stopped.
                # Only a whole live frame ends the download, so a torn record
                # (whose byte 1 also has bit 7 set) does not.
                if avail < FRAME_LENGTH and not any(buf[i] & SYNC_BIT for i in range(pos + 1, end)):
                    return self._need_data()
                if avail >= FRAME_LENGTH and not (b1 | b2 | buf[pos + 3] | buf[pos + 4]) & SYNC_BIT:
                    self._mode = _LIVE
                    continue
            raise self._resync(pos, end, "bytes outside a stored-data record")

    def _match_marker(self, pos: int, end: int) -> bool | None:
        """Whether ``F2 80 00`` starts at ``pos``; ``None`` while a prefix of it is all there is."""
        size = min(end - pos, len(DOWNLOAD_MARKER))
        if self._buffer[pos : pos + size] != DOWNLOAD_MARKER[:size]:
            return False
        return True if size == len(DOWNLOAD_MARKER) else None

    def _resync(self, pos: int, end: int, what: str) -> OximeterProtocolError:
        buf = self._buffer
        cut = pos + 1
        while cut < end and not buf[cut] & SYNC_BIT:
            cut += 1
        skipped = bytes(buf[pos:cut])
        self._pos = cut
        return OximeterProtocolError(f"skipped {len(skipped)} byte(s): {what}", skipped)

    def _need_data(self) -> NeedData:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        return NEED_DATA


def _decode_live(b0: int, b1: int, b2: int, b3: int, b4: int) -> OximeterFrame:
    pulse = b3 | ((b2 & PULSE_HIGH_BIT) << 1)
    finger_out = bool(b0 & FINGER_OUT_BIT)
    probe_error = bool(b2 & PROBE_ERROR_BIT)
    searching = bool(b2 & SEARCHING_BIT)
    spo2_value = None if b4 == NO_VALUE else b4
    pulse_value = None if pulse in PULSE_NO_VALUE else pulse
    return OximeterFrame(
        spo2=spo2_value,
        pulse=pulse_value,
        pleth=b1,
        signal_strength=b0 & SIGNAL_MASK,
        bargraph=b2 & BARGRAPH_MASK,
        finger_out=finger_out,
        probe_error=probe_error,
        searching=searching,
        dropping=bool(b0 & DROPPING_BIT),
        beep=bool(b0 & BEEP_BIT),
        # This generation has no validity field: a value is valid when the
        # device reports one and flags nothing that would spoil it.
        valid=not (finger_out or probe_error or searching) and spo2_value is not None and pulse_value is not None,
    )
