"""BER-TLV (ISO/IEC 7816-4 §5.2, ISO/IEC 8825-1), sans-IO.

Rules kept here:

- A tag is one byte, or more when its low five bits are all ones; the next
  bytes continue while their top bit is set. Tags are returned as integers
  (``0x65``, ``0x7F21``). Bit 6 of the first byte marks a constructed object,
  whose value is itself a sequence of TLVs and is parsed recursively.
- A length is one byte below ``0x80``, or ``0x81``-``0x84`` followed by that
  many length bytes. The indefinite form (``0x80``) is not allowed in ISO 7816
  files and is an error.
- ``00`` and ``FF`` bytes before, between and after objects are padding
  (ISO/IEC 7816-4 §5.2.2: erased or modified data) and are skipped.
- :func:`parse` raises :class:`~kiosk.identity.errors.TLVError` and nothing
  else, whatever the input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import TLVError

MAX_DEPTH = 16
"""Nesting bound, so hostile input cannot exhaust the stack."""

_PADDING = (0x00, 0xFF)


@dataclass(frozen=True, repr=False)
class Tlv:
    """One decoded data object."""

    tag: int
    """The tag as an integer, all tag bytes included (``0x5F37``)."""
    value: bytes
    """The raw value bytes."""
    children: tuple[Tlv, ...] = ()
    """The decoded value of a constructed object; empty for a primitive one."""

    @property
    def constructed(self) -> bool:
        """True when the tag's first byte has the constructed bit (``0x20``)."""
        return _first_tag_byte(self.tag) & 0x20 != 0

    def find(self, tag: int) -> Tlv | None:
        """The first direct child with ``tag``, or None."""
        return next((c for c in self.children if c.tag == tag), None)

    def __repr__(self) -> str:
        # Values may be patient data: reprs (and so logs and tracebacks) show shapes only.
        return f"Tlv(tag=0x{self.tag:X}, length={len(self.value)}, children={len(self.children)})"


def _first_tag_byte(tag: int) -> int:
    while tag > 0xFF:
        tag >>= 8
    return tag


def parse(data: bytes, *, _depth: int = 0, _base: int = 0) -> tuple[Tlv, ...]:
    """Decode a sequence of BER-TLV objects.

    Raises :class:`TLVError` (with the failing offset) on truncated or
    malformed input.
    """
    if _depth > MAX_DEPTH:
        raise TLVError("TLV nesting too deep", offset=_base)
    out: list[Tlv] = []
    pos = 0
    n = len(data)
    while pos < n:
        if data[pos] in _PADDING:
            pos += 1
            continue
        start = pos
        first = data[pos]
        tag = first
        pos += 1
        if first & 0x1F == 0x1F:
            while True:
                if pos >= n:
                    raise TLVError("truncated TLV tag", offset=_base + start)
                b = data[pos]
                pos += 1
                tag = (tag << 8) | b
                if b & 0x80 == 0:
                    break
                if pos - start > 4:
                    raise TLVError("TLV tag longer than 4 bytes", offset=_base + start)
        if pos >= n:
            raise TLVError("missing TLV length", offset=_base + pos)
        lb = data[pos]
        pos += 1
        if lb < 0x80:
            length = lb
        elif 0x81 <= lb <= 0x84:
            count = lb - 0x80
            if pos + count > n:
                raise TLVError("truncated TLV length", offset=_base + pos)
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        else:
            raise TLVError(f"unsupported TLV length byte 0x{lb:02X}", offset=_base + pos - 1)
        if pos + length > n:
            raise TLVError("TLV value runs past the end of the data", offset=_base + pos)
        value = bytes(data[pos : pos + length])
        children: tuple[Tlv, ...] = ()
        if first & 0x20:
            children = parse(value, _depth=_depth + 1, _base=_base + pos)
        out.append(Tlv(tag, value, children))
        pos += length
    return tuple(out)


def walk(tlvs: Iterable[Tlv]) -> Iterator[Tlv]:
    """Every object in ``tlvs`` and below, depth first."""
    for t in tlvs:
        yield t
        yield from walk(t.children)


def encode(tag: int, value: bytes | Iterable[bytes] = b"") -> bytes:
    """Encode one object (definite length). ``value`` may be a list of encoded children."""
    body = value if isinstance(value, bytes) else b"".join(value)
    tag_bytes = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        size = (n.bit_length() + 7) // 8
        length = bytes([0x80 + size]) + n.to_bytes(size, "big")
    return tag_bytes + length + body
