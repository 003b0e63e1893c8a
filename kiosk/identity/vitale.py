"""The public-layout Carte Vitale reader, as a sans-IO state machine.

The layout is cardpeek's (``vitale_2.lua``), summarised in ``PROTOCOLS.md``
("Carte Vitale over PC/SC"):

1. SELECT the VITALE application by AID; a card without it is not a Vitale.
2. SELECT EF ``2001`` (the map) and READ BINARY it in 256-byte chunks until a
   chunk is short or the status word is not ``90 00``.
3. The map is ``E0 { A0 { 82 entries } 80 entries }``: ``82`` = entry id (2),
   reserved (2), AID; ``80`` = file name (8, ASCII), entry id (2), EF id (2).
4. For each application, SELECT it, then SELECT and read each of its files. A
   file answering a status word other than ``90 00`` is *inaccessible*
   (protected), never an error of the whole card. A content starting with
   ``00`` or ``04 00`` is not TLV and is skipped.
5. Identity tags: ``65`` holder with ``80`` surname, ``81`` first name,
   ``82`` birth date (ASCII YYYYMMDD), ``93`` NIR; ``66/80`` validity start.
   Several ``65`` groups mean several beneficiaries (parent and children).

Transport rules kept in :meth:`VitaleReadout._exchange` (ISO/IEC 7816-3/-4,
needed with T=0 cards): ``61xx`` means xx more bytes wait for a GET RESPONSE;
``6Cxx`` means "wrong Le, re-issue with Le = xx".

:class:`VitaleReadout` does no I/O: :meth:`~VitaleReadout.next_command` gives
the APDU to send, :meth:`~VitaleReadout.receive_response` takes the card's
answer. :func:`drive` and :func:`drive_sync` run it over a transmit function;
:class:`PublicVitaleReader` is the :class:`~.identity.IdentityReader`.
Logs name commands, file ids and status words, never file contents.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass

from . import apdu, tlv
from .apdu import Command, Response
from .errors import CardError, CardUnreadable, NotVitale, TLVError
from .identity import Beneficiary, CardChannel, CardIdentity, IdentityReader, Nir

logger = logging.getLogger(__name__)

# --- Layout facts (PROTOCOLS.md, from cardpeek's vitale_2.lua). -------------
# Uncertain: the layout is reverse-engineered from Vitale 2 cards; text
# encoding of names is assumed ISO 8859-1 (cards seen carry upper-case ASCII).
AID_VITALE = bytes.fromhex("D250000002564954414C45")
AID_MF_VITALE = bytes.fromhex("D2500000024D465F564954414C45")
EF_MAP = 0x2001
TAG_MAP = 0xE0
TAG_MAP_APPS = 0xA0
TAG_MAP_APP = 0x82
TAG_MAP_FILE = 0x80
TAG_HOLDER = 0x65
TAG_SURNAME = 0x80
TAG_FIRST_NAME = 0x81
TAG_BIRTH_DATE = 0x82
TAG_NIR = 0x93
TAG_CARD = 0x66
TAG_VALID_FROM = 0x80
TEXT_ENCODING = "latin-1"
# ---------------------------------------------------------------------------

CHUNK = 256
MAX_OFFSET = 0x7FFF
"""READ BINARY's P1-P2 offset has 15 bits (bit 8 of P1 must stay 0)."""
MAX_EXCHANGES = 2000
"""A card answering ``61xx`` or full chunks forever is cut off here."""

# Status words whose SW1 is an ISO 7816-4 error or warning: a card that answers
# SELECT VITALE with one of these is a sane card without the application.
_ISO_SW1 = frozenset({0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6D, 0x6E, 0x6F})

_Flow = Generator[bytes, bytes, CardIdentity]


@dataclass(frozen=True)
class _FileEntry:
    name: str
    ef: int


class VitaleReadout:
    """One read of one card, as a sans-IO state machine.

    Call :meth:`next_command`, send the bytes, give the answer to
    :meth:`receive_response`; repeat until :meth:`next_command` returns None,
    then take :meth:`result`. :class:`~.errors.CardError` is raised from
    :meth:`receive_response` when the card is not a Vitale or is unreadable;
    the readout is then finished.
    """

    def __init__(self, *, reader: str = "", atr: bytes = b"") -> None:
        self._reader = reader
        self._atr = atr
        self._gen: _Flow = self._flow()
        self._pending: bytes | None = None
        self._started = False
        self._finished = False
        self._result: CardIdentity | None = None
        self._exchanges = 0

    @property
    def finished(self) -> bool:
        """True once a result or an error was produced."""
        return self._finished

    def next_command(self) -> bytes | None:
        """The command APDU to send now, or None when the readout is finished."""
        if not self._started:
            self._started = True
            self._advance(None)
        return self._pending

    def receive_response(self, raw: bytes) -> None:
        """Feed the card's answer (data + SW) to the command last returned."""
        if self._pending is None:
            raise RuntimeError("receive_response() called with no command outstanding")
        self._exchanges += 1
        if self._exchanges > MAX_EXCHANGES:
            self._finish()
            raise CardUnreadable("The card keeps answering without end.", reader=self._reader)
        self._advance(bytes(raw))

    def result(self) -> CardIdentity:
        """The identity read; only valid once :meth:`next_command` returned None."""
        if self._result is None:
            raise RuntimeError("the readout has no result (not finished, or failed)")
        return self._result

    def _finish(self) -> None:
        self._finished = True
        self._pending = None
        self._gen.close()

    def _advance(self, value: bytes | None) -> None:
        try:
            self._pending = self._gen.send(value)  # type: ignore[arg-type]  # first send is None
        except StopIteration as stop:
            self._result = stop.value
            self._finish()
        except CardError as exc:
            exc.reader = exc.reader or self._reader
            self._finish()
            raise

    # -- transport ---------------------------------------------------------

    def _exchange(self, cmd: Command) -> Generator[bytes, bytes, Response]:
        raw = yield cmd.to_bytes()
        resp = Response.parse(raw)
        if resp.sw1 == 0x6C:
            # Wrong Le; SW2 is the exact length available (00 = 256).
            logger.debug("%s: 6Cxx, re-issuing with Le=%d", cmd.label, resp.sw2 or 256)
            resp = Response.parse((yield cmd.with_le(resp.sw2 or 256).to_bytes()))
        data = resp.data
        while resp.sw1 == 0x61:
            resp = Response.parse((yield apdu.get_response(resp.sw2).to_bytes()))
            data += resp.data
        logger.debug("%s -> SW %04X, %d bytes", cmd.label, resp.sw, len(data))
        return Response(data, resp.sw)

    def _read_file(self) -> Generator[bytes, bytes, tuple[int, bytes]]:
        content = b""
        offset = 0
        sw = apdu.SW_OK
        while offset <= MAX_OFFSET:
            resp = yield from self._exchange(apdu.read_binary(offset, CHUNK))
            sw = resp.sw
            if resp.ok or resp.sw == apdu.SW_END_OF_FILE:
                content += resp.data
            if not resp.ok or len(resp.data) != CHUNK:
                break
            offset += CHUNK
        # As cardpeek does: whatever was read counts, even if the last chunk
        # ended on an error (a file whose size is a multiple of 256 ends on 6B00).
        return (apdu.SW_OK if content else sw), content

    # -- the flow ----------------------------------------------------------

    def _flow(self) -> _Flow:
        resp = yield from self._exchange(apdu.select_aid(AID_VITALE))
        if not resp.ok:
            if resp.sw1 in _ISO_SW1:
                raise NotVitale(reader=self._reader)
            raise CardUnreadable(reader=self._reader)
        resp = yield from self._exchange(apdu.select_ef(EF_MAP))
        if not resp.ok:
            raise CardUnreadable("The card's directory could not be opened.")
        sw, content = yield from self._read_file()
        if sw != apdu.SW_OK:
            raise CardUnreadable("The card's directory could not be read.")
        apps = _parse_map(content)

        inaccessible: list[str] = []
        flags: list[str] = []
        objects: list[tlv.Tlv] = []
        for aid, files in apps:
            resp = yield from self._exchange(apdu.select_aid(aid))
            if not resp.ok:
                logger.debug("application %s not selectable (SW %04X)", aid.hex().upper(), resp.sw)
                inaccessible.extend(f"{f.ef:04X} {f.name}" for f in files)
                continue
            for f in files:
                label = f"{f.ef:04X} {f.name}"
                resp = yield from self._exchange(apdu.select_ef(f.ef))
                if not resp.ok:
                    inaccessible.append(label)
                    continue
                sw, data = yield from self._read_file()
                if sw != apdu.SW_OK:
                    logger.debug("file %04X not accessible (SW %04X)", f.ef, sw)
                    inaccessible.append(label)
                    continue
                if not data or data[0] == 0x00 or data[:2] == b"\x04\x00":
                    continue  # not TLV (PROTOCOLS.md)
                try:
                    objects.extend(tlv.parse(data))
                except TLVError as exc:
                    logger.debug("file %04X is not valid TLV at offset %d", f.ef, exc.offset)
                    flags.append(f"file-not-tlv:{f.ef:04X}")
        return self._identity(objects, inaccessible, flags)

    def _identity(self, objects: list[tlv.Tlv], inaccessible: list[str], flags: list[str]) -> CardIdentity:
        beneficiaries: list[Beneficiary] = []
        valid_from: datetime.date | None = None
        for obj in tlv.walk(objects):
            if obj.tag == TAG_HOLDER:
                b = _beneficiary(obj)
                if b is None:
                    flags.append("holder-incomplete")
                    continue
                if not b.nir.key_valid:
                    flags.append("nir-key-invalid")
                if b.birth_date is None:
                    flags.append("birth-date-not-calendar")
                beneficiaries.append(b)
            elif obj.tag == TAG_CARD and valid_from is None:
                v = obj.find(TAG_VALID_FROM)
                if v is not None:
                    valid_from = _date(_text(v.value))
        if not beneficiaries and not inaccessible:
            raise CardUnreadable("The card holds no identity data.")
        logger.info(
            "card read: %d beneficiaries, %d inaccessible files, flags=%s",
            len(beneficiaries),
            len(inaccessible),
            ",".join(sorted(set(flags))) or "-",
        )
        return CardIdentity(
            beneficiaries=tuple(beneficiaries),
            inaccessible_files=tuple(inaccessible),
            valid_from=valid_from,
            reader=self._reader,
            atr=self._atr,
            flags=tuple(flags),
        )


def _parse_map(content: bytes) -> list[tuple[bytes, list[_FileEntry]]]:
    try:
        objects = tlv.parse(content)
    except TLVError as exc:
        raise CardUnreadable("The card's directory is not in the expected format.") from exc
    e0 = next((o for o in objects if o.tag == TAG_MAP), None)
    if e0 is None:
        raise CardUnreadable("The card's directory is not in the expected format.")
    a0 = e0.find(TAG_MAP_APPS)
    apps: dict[bytes, tuple[bytes, list[_FileEntry]]] = {}
    for entry in a0.children if a0 else ():
        if entry.tag == TAG_MAP_APP and len(entry.value) > 4:
            apps[entry.value[0:2]] = (entry.value[4:], [])
    # cardpeek reads the 80 entries after A0 inside E0; accept them inside A0 too.
    file_entries = [c for c in e0.children if c.tag == TAG_MAP_FILE]
    if a0 is not None:
        file_entries += [c for c in a0.children if c.tag == TAG_MAP_FILE]
    for entry in file_entries:
        v = entry.value
        if len(v) < 12 or v[8:10] not in apps:
            continue
        name = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in v[0:8]).strip()
        apps[v[8:10]][1].append(_FileEntry(name, int.from_bytes(v[10:12], "big")))
    if not apps:
        raise CardUnreadable("The card's directory lists no application.")
    return list(apps.values())


def _text(raw: bytes) -> str:
    return raw.decode(TEXT_ENCODING).strip(" \x00")


def _date(text: str) -> datetime.date | None:
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return datetime.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _beneficiary(holder: tlv.Tlv) -> Beneficiary | None:
    fields = {c.tag: _text(c.value) for c in holder.children if not c.children}
    if TAG_NIR not in fields and TAG_SURNAME not in fields:
        return None
    birth = fields.get(TAG_BIRTH_DATE, "")
    return Beneficiary(
        surname=fields.get(TAG_SURNAME, ""),
        first_name=fields.get(TAG_FIRST_NAME, ""),
        birth_date=_date(birth),
        nir=Nir(fields.get(TAG_NIR, "")),
        birth_date_text=birth,
    )


def drive_sync(readout: VitaleReadout, transmit: Callable[[bytes], bytes]) -> CardIdentity:
    """Run ``readout`` to the end over a blocking ``transmit``."""
    while (cmd := readout.next_command()) is not None:
        readout.receive_response(transmit(cmd))
    return readout.result()


async def drive(readout: VitaleReadout, transmit: Callable[[bytes], Awaitable[bytes]]) -> CardIdentity:
    """Run ``readout`` to the end over an async ``transmit``."""
    while (cmd := readout.next_command()) is not None:
        readout.receive_response(await transmit(cmd))
    return readout.result()


class PublicVitaleReader(IdentityReader):
    """Reads the publicly documented part of a Carte Vitale (no licence needed)."""

    async def read(self, card: CardChannel) -> CardIdentity:
        """Read the beneficiaries of ``card``."""
        return await drive(VitaleReadout(reader=card.reader, atr=card.atr), card.transmit)
