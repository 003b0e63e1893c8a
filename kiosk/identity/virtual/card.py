"""Sans-IO virtual card: an ISO/IEC 7816-4 file system.

Supports what the Vitale reader and real-card quirks need:

- SELECT by DF name (``P1=04``) among the card's applications; SELECT EF
  (``P1=02`` under the current DF, or ``P1=00`` by id).
- READ BINARY with a 15-bit offset (``P1 & 0x7F``, ``P2``) and Le (``00`` = 256).
  Past the end: ``6B00``; fewer bytes than Le: the bytes with ``6282``.
- Protected EFs answer ``6982`` (security status not satisfied) to READ BINARY.
- ``t0_style``: behave like a T=0 card: SELECT answers ``61xx`` (FCI waiting
  for GET RESPONSE), a READ BINARY whose Le is longer than what remains
  answers ``6Cxx`` (re-issue with Le = xx).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SW_OK = b"\x90\x00"
SW_EOF = b"\x62\x82"
SW_WRONG_LENGTH = b"\x67\x00"
SW_SECURITY = b"\x69\x82"
SW_NOT_FOUND = b"\x6a\x82"
SW_WRONG_OFFSET = b"\x6b\x00"
SW_INS = b"\x6d\x00"
SW_CLA = b"\x6e\x00"
SW_NO_CURRENT_EF = b"\x69\x86"


@dataclass
class ElementaryFile:
    """A transparent EF."""

    fid: int
    """File id (2 bytes)."""
    content: bytes
    """The file's bytes."""
    protected: bool = False
    """READ BINARY answers ``6982`` when True."""


@dataclass
class Application:
    """A DF selected by name, holding EFs."""

    aid: bytes
    """Application identifier (DF name)."""
    files: dict[int, ElementaryFile] = field(default_factory=dict)
    """EFs by file id."""


class VirtualCard:
    """A card's logic: ``process_apdu(bytes) -> bytes``; no I/O, no clock."""

    def __init__(self, atr: bytes, applications: list[Application], *, t0_style: bool = False) -> None:
        self.atr = atr
        """Answer to reset."""
        self.applications = applications
        self.t0_style = t0_style
        self.powered = False
        self.apdu_count = 0
        """APDUs processed since creation (for tests and the pulled-card fault)."""
        self._current_app: Application | None = None
        self._current_ef: ElementaryFile | None = None
        self._pending: bytes = b""

    def power_on(self) -> None:
        """Contacts powered: the card starts from its master file."""
        self.powered = True
        self.reset()

    def power_off(self) -> None:
        """Contacts unpowered."""
        self.powered = False
        self.reset()

    def reset(self) -> None:
        """Warm reset: nothing selected."""
        self._current_app = None
        self._current_ef = None
        self._pending = b""

    def process_apdu(self, apdu: bytes) -> bytes:
        """Answer one command APDU with a response APDU (data + SW)."""
        self.apdu_count += 1
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
        if cla != 0x00:
            return SW_CLA
        body = apdu[4:]
        data = b""
        le: int | None = None
        if len(body) == 1:
            le = body[0] or 256
        elif len(body) > 1:
            lc = body[0]
            data = body[1 : 1 + lc]
            if len(data) != lc:
                return SW_WRONG_LENGTH
            rest = body[1 + lc :]
            if len(rest) > 1:
                return SW_WRONG_LENGTH
            if rest:
                le = rest[0] or 256
        if ins != 0xC0:
            self._pending = b""
        if ins == 0xA4:
            return self._select(p1, data)
        if ins == 0xB0:
            return self._read_binary(((p1 & 0x7F) << 8) | p2, le or 256)
        if ins == 0xC0:
            return self._get_response(le or 256)
        return SW_INS

    def _answer_select(self, fci: bytes) -> bytes:
        if self.t0_style:
            self._pending = fci
            return bytes([0x61, len(fci) & 0xFF])
        return SW_OK

    def _select(self, p1: int, data: bytes) -> bytes:
        if p1 == 0x04:
            app = next((a for a in self.applications if a.aid == data), None)
            if app is None:
                return SW_NOT_FOUND
            self._current_app, self._current_ef = app, None
            return self._answer_select(b"\x6f" + bytes([len(app.aid) + 2, 0x84, len(app.aid)]) + app.aid)
        if p1 in (0x00, 0x02) and len(data) == 2:
            if self._current_app is None:
                return SW_NOT_FOUND
            ef = self._current_app.files.get(int.from_bytes(data, "big"))
            if ef is None:
                return SW_NOT_FOUND
            self._current_ef = ef
            return self._answer_select(b"\x62\x04\x83\x02" + data)
        return SW_NOT_FOUND

    def _read_binary(self, offset: int, le: int) -> bytes:
        ef = self._current_ef
        if ef is None:
            return SW_NO_CURRENT_EF
        if ef.protected:
            return SW_SECURITY
        if offset > len(ef.content) or (offset == len(ef.content) and offset > 0):
            return SW_WRONG_OFFSET
        chunk = ef.content[offset : offset + le]
        if len(chunk) < le:
            if self.t0_style:
                return bytes([0x6C, len(chunk) & 0xFF])
            return chunk + SW_EOF
        return chunk + SW_OK

    def _get_response(self, le: int) -> bytes:
        if not self._pending:
            return b"\x69\x85"  # conditions of use not satisfied
        out, self._pending = self._pending[:le], self._pending[le:]
        if self._pending:
            return out + bytes([0x61, len(self._pending) & 0xFF])
        return out + SW_OK


class GarbageCard(VirtualCard):
    """A card whose answers are random bytes (seeded): broken chip or contacts."""

    def __init__(self, atr: bytes, *, seed: int = 7) -> None:
        super().__init__(atr, [])
        self.random = random.Random(seed)

    def process_apdu(self, apdu: bytes) -> bytes:
        """Random bytes, 0-40 long; SW1 never a valid ISO 7816 value."""
        self.apdu_count += 1
        body = bytes(self.random.randrange(256) for _ in range(self.random.randrange(0, 38)))
        # Keep SW1 outside 0x60-0x6F/0x90 so the answer is unmistakably garbage.
        sw1 = self.random.choice([0x00, 0x13, 0x3B, 0x7E, 0xA5, 0xC3, 0xFF])
        return body + bytes([sw1, self.random.randrange(256)])
