"""LU90614-family serial infrared thermometer module: one command, one 9-byte reply.

Rules this module keeps (PROTOCOLS.md, "Thermometer"):

- The host sends ``FA C5 BF`` to read the body temperature.
- The module answers 9 bytes; byte 8 is the low byte of the sum of bytes 0-7;
  the temperature is byte 2 + byte 3 / 100 °C (byte 3 is therefore 0-99).
- The reply's header bytes are not documented publicly: the values used here
  are our choice, kept in one block below.

Sans-IO (h11's shape): :meth:`ThermometerParser.receive_data` only buffers,
:meth:`ThermometerParser.next_event` returns a :class:`Temperature` or
``NEED_DATA``, and raises :class:`LuProtocolError` (a
:class:`~devices.errors.RemoteProtocolError` with ``skipped``) after dropping
bytes that are not a valid reply; call it again to go on. A bad reply costs
only the bytes up to the next 0xFE: the search for the next header starts
right after its first byte.

A temperature outside the body-mode range is still decoded (the bytes were
valid), and flagged by :attr:`Temperature.in_range`: the driver marks the
reading ``OUT_OF_RANGE`` instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import serial

from devices.errors import RemoteProtocolError
from devices.protocols import NEED_DATA, NeedData
from devices.serial_link import SerialSettings

__all__ = [
    "READ_BODY_TEMPERATURE",
    "REPLY_LENGTH",
    "SETTINGS",
    "LuProtocolError",
    "Temperature",
    "ThermometerParser",
    "reply_frame",
    "to_json",
]

SETTINGS: Final = SerialSettings(9600, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE, stopbits=1)
"""9600 baud 8N1: the usual default of the LU90614 module family (not stated in PROTOCOLS.md)."""

READ_BODY_TEMPERATURE: Final = b"\xfa\xc5\xbf"
"""Host command: read the body temperature (PROTOCOLS.md)."""

REPLY_LENGTH: Final = 9
"""Reply length, checksum included (PROTOCOLS.md)."""

# -- Reply layout. Bytes 2, 3 and 8 are documented (PROTOCOLS.md); the rest
#    is OUR CHOICE, undocumented publicly and to be checked on a real module:
#    * byte 0: 0xFE, the start of every reply;
#    * byte 1: 0xAC, "body temperature" (the only mode we ask for);
#    * bytes 4-5: ambient (sensor die) temperature, integer and hundredths,
#      like bytes 2-3; 0xFF 0xFF means "not reported";
#    * bytes 6-7: reserved, 0x00.
#    Only bytes 0-1 are checked on reception, besides the checksum and the
#    hundredths staying under 100: the reserved bytes are not, so a module
#    that uses them does not break the parser.
REPLY_HEADER: Final = 0xFE
BODY_MODE: Final = 0xAC
AMBIENT_NOT_REPORTED: Final = (0xFF, 0xFF)

BODY_RANGE_CELSIUS: Final = (0.0, 60.0)
"""Plausible range of a body-mode reading; outside it the value is flagged, not rejected."""


@dataclass(frozen=True)
class Temperature:
    """One reply of the module."""

    celsius: float
    """Body (object) temperature, °C, to the hundredth."""
    ambient: float | None
    """Ambient (sensor) temperature, °C, or ``None`` when the reply carries none."""

    @property
    def in_range(self) -> bool:
        """Whether :attr:`celsius` lies in the body-mode range :data:`BODY_RANGE_CELSIUS`."""
        low, high = BODY_RANGE_CELSIUS
        return low <= self.celsius <= high


class LuProtocolError(RemoteProtocolError):
    """Bytes that are not a valid reply were dropped; parsing goes on after them."""

    def __init__(self, message: str, skipped: bytes) -> None:
        super().__init__(message)
        self.skipped = skipped
        """The bytes dropped from the stream."""


def _checksum(body: bytes | bytearray) -> int:
    return sum(body) & 0xFF


def _split(celsius: float) -> tuple[int, int]:
    hundredths = round(celsius * 100)
    if not 0 <= hundredths <= 255 * 100 + 99:
        raise ValueError("temperature outside what the reply can carry")
    return divmod(hundredths, 100)


def reply_frame(celsius: float, ambient: float | None = None) -> bytes:
    """A module reply (emulator side) carrying ``celsius`` and, optionally, ``ambient``."""
    whole, hundredths = _split(celsius)
    ambient_bytes = AMBIENT_NOT_REPORTED if ambient is None else _split(ambient)
    body = bytes([REPLY_HEADER, BODY_MODE, whole, hundredths, *ambient_bytes, 0x00, 0x00])
    return body + bytes([_checksum(body)])


class ThermometerParser:
    """Decodes the module's replies into :class:`Temperature` events."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes read from the line."""
        self._buffer += data

    def next_event(self) -> Temperature | NeedData:
        """The next reply, or ``NEED_DATA``; raises ``LuProtocolError`` after dropping bad bytes."""
        buf = self._buffer
        if not buf:
            return NEED_DATA
        if buf[0] != REPLY_HEADER:
            raise self._drop_until_next_header()
        if len(buf) >= 2 and buf[1] != BODY_MODE:
            raise self._drop_until_next_header()
        if len(buf) < REPLY_LENGTH:
            return NEED_DATA
        reply = bytes(buf[:REPLY_LENGTH])
        if _checksum(reply[:8]) != reply[8] or reply[3] > 99 or not _ambient_ok(reply[4], reply[5]):
            raise self._drop_until_next_header()
        del buf[:REPLY_LENGTH]
        ambient = None if (reply[4], reply[5]) == AMBIENT_NOT_REPORTED else round(reply[4] + reply[5] / 100, 2)
        return Temperature(celsius=round(reply[2] + reply[3] / 100, 2), ambient=ambient)

    def _drop_until_next_header(self) -> LuProtocolError:
        buf = self._buffer
        cut = buf.find(REPLY_HEADER, 1)
        if cut < 0:
            cut = len(buf)
        skipped = bytes(buf[:cut])
        del buf[:cut]
        return LuProtocolError("bytes outside a valid reply", skipped)


def _ambient_ok(whole: int, hundredths: int) -> bool:
    return (whole, hundredths) == AMBIENT_NOT_REPORTED or hundredths <= 99


def to_json(event: object) -> dict[str, object]:
    """The ``decode`` CLI's JSON for a reply."""
    if isinstance(event, Temperature):
        return {"celsius": event.celsius}
    raise TypeError(f"not an LU90614 event: {type(event).__name__}")
