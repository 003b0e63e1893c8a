"""ISO/IEC 7816-4 command and response APDUs, sans-IO.

Only the short form is used (Lc and Le on one byte, Le ``00`` meaning 256):
the Vitale layout never needs more (``PROTOCOLS.md``, "Carte Vitale over PC/SC").
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CardUnreadable

SW_OK = 0x9000
SW_END_OF_FILE = 0x6282
"""Warning: end of file reached before Le bytes were read (data follows)."""
SW_WRONG_P1P2_OFFSET = 0x6B00
"""Offset beyond the end of the file."""
SW_FILE_NOT_FOUND = 0x6A82
SW_SECURITY = 0x6982
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_WRONG_LENGTH = 0x6700


@dataclass(frozen=True)
class Command:
    """A short command APDU."""

    cla: int
    """Class byte."""
    ins: int
    """Instruction byte."""
    p1: int
    """Parameter 1."""
    p2: int
    """Parameter 2."""
    data: bytes = b""
    """Command data (Lc is its length)."""
    le: int | None = None
    """Expected response length, 1..256, or None for no response data expected."""
    label: str = ""
    """A name for logs (``SELECT AID``), never card data."""

    def to_bytes(self) -> bytes:
        """The APDU as sent to the card."""
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            out += bytes([len(self.data)]) + self.data
        if self.le is not None:
            out += bytes([self.le & 0xFF])
        return out

    def with_le(self, le: int) -> Command:
        """The same command with another Le (after a ``6Cxx`` answer)."""
        return Command(self.cla, self.ins, self.p1, self.p2, self.data, le, self.label)


@dataclass(frozen=True, repr=False)
class Response:
    """A response APDU: data then the two status bytes."""

    data: bytes
    """Response data (may be patient data: not shown in repr)."""
    sw: int
    """Status word, ``SW1 << 8 | SW2``."""

    @property
    def sw1(self) -> int:
        """First status byte."""
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        """Second status byte."""
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        """True for ``90 00``."""
        return self.sw == SW_OK

    @classmethod
    def parse(cls, raw: bytes) -> Response:
        """Split a raw response; fewer than two bytes is :class:`CardUnreadable`."""
        if len(raw) < 2:
            raise CardUnreadable("The card sent an incomplete answer.")
        return cls(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])

    def __repr__(self) -> str:
        return f"Response(sw={self.sw:04X}, length={len(self.data)})"


def select_aid(aid: bytes) -> Command:
    """SELECT by DF name (``00 A4 04 00 Lc AID``)."""
    return Command(0x00, 0xA4, 0x04, 0x00, aid, None, "SELECT AID")


def select_ef(fid: int) -> Command:
    """SELECT an EF under the current DF (``00 A4 02 00 02 hi lo``)."""
    return Command(0x00, 0xA4, 0x02, 0x00, fid.to_bytes(2, "big"), None, "SELECT EF")


def read_binary(offset: int, le: int = 256) -> Command:
    """READ BINARY at ``offset`` (15 bits, ``00 B0 hi lo Le``)."""
    return Command(0x00, 0xB0, (offset >> 8) & 0x7F, offset & 0xFF, b"", le, "READ BINARY")


def get_response(le: int) -> Command:
    """GET RESPONSE for the bytes a ``61xx`` announced (``00 C0 00 00 Le``)."""
    return Command(0x00, 0xC0, 0x00, 0x00, b"", le if le else 256, "GET RESPONSE")
