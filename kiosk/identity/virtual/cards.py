"""The test cards. Every identity here is SYNTHETIC.

Synthetic NIRs are built to be obviously fake yet have valid keys: born abroad
(department ``99``) in country code ``999``, which no country has, with order
numbers ``001``-``009``. Names are invented.

Card kinds (the CLI's ``emulate CARD`` names): ``vitale``, ``family``, ``bank``,
``protected``, ``garbage``, ``mute`` (ATR, then silence), ``mute-atr``
(silent from the start: vpcd then reports no card at all), ``pulled``.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..identity import Nir, nir_key
from ..tlv import encode
from ..vitale import AID_MF_VITALE, AID_VITALE, TEXT_ENCODING
from .card import Application, ElementaryFile, GarbageCard, VirtualCard

# Synthetic ATRs (shapes only, not copied from real cards).
ATR_VITALE = bytes.fromhex("3B8F8001804F0CA0000003060300030000000068")
ATR_BANK = bytes.fromhex("3B6E00008031806643B0840C016E0183009000")
"""EMV-like: T=0, historical bytes, no VITALE application."""


@dataclass(frozen=True)
class SyntheticPerson:
    """A made-up beneficiary."""

    surname: str
    """Invented family name."""
    first_name: str
    """Invented first name."""
    birth_date: datetime.date
    """Invented birth date."""
    nir: str
    """15-character NIR with a valid key."""


def synthetic_nir(sex: int, birth: datetime.date, order: int) -> str:
    """A fake-but-valid NIR: born in "country 999" abroad (department 99)."""
    first13 = f"{sex}{birth.year % 100:02d}{birth.month:02d}99999{order:03d}"
    return f"{first13}{nir_key(first13):02d}"


def person(surname: str, first_name: str, birth: str, sex: int, order: int) -> SyntheticPerson:
    """Build a :class:`SyntheticPerson` from an ISO date."""
    d = datetime.date.fromisoformat(birth)
    return SyntheticPerson(surname, first_name, d, synthetic_nir(sex, d, order))


SINGLE = person("TESTELLI", "ZORAN", "1984-12-03", 1, 1)
PARENT = person("FICTIVAZ", "ORIANE", "1979-05-21", 2, 2)
CHILD_1 = person("FICTIVAZ", "NILO", "2011-09-14", 1, 3)
CHILD_2 = person("FICTIVAZ", "YSALINE", "2015-02-27", 2, 4)

# Map entry ids and EF ids of our test layout (the real ids vary by card
# generation; the reader takes them from the map, so they are arbitrary here).
_ENTRY_MF = b"\x00\x01"
_ENTRY_VITALE = b"\x00\x02"
EF_HOLDER = 0x2004
EF_DEPENDANTS = 0x2005
EF_CARD = 0x2002
EF_RIGHTS = 0x2006
EF_HISTORY = 0x2007
EF_CERT = 0x2F10


def holder_group(p: SyntheticPerson) -> bytes:
    """One ``65`` group (PROTOCOLS.md identity tags)."""
    return encode(
        0x65,
        [
            encode(0x80, p.surname.encode(TEXT_ENCODING)),
            encode(0x81, p.first_name.encode(TEXT_ENCODING)),
            encode(0x82, p.birth_date.strftime("%Y%m%d").encode()),
            encode(0x90, b"FRA"),
            encode(0x93, p.nir.encode()),
        ],
    )


def card_map(files: list[tuple[str, bytes, int]]) -> bytes:
    """EF 2001: ``E0 { A0 { 82... } 80... }``, files as (name, entry id, EF id)."""
    apps = encode(
        0xA0,
        [encode(0x82, _ENTRY_MF + b"\x00\x00" + AID_MF_VITALE), encode(0x82, _ENTRY_VITALE + b"\x00\x00" + AID_VITALE)],
    )
    entries = [encode(0x80, name.ljust(8).encode() + entry + ef.to_bytes(2, "big")) for name, entry, ef in files]
    return encode(0xE0, [apps, *entries])


def vitale_card(
    holders: list[SyntheticPerson],
    dependants: list[SyntheticPerson] | None = None,
    *,
    protect: frozenset[int] = frozenset({EF_RIGHTS}),
    t0_style: bool = False,
) -> VirtualCard:
    """A Vitale card: holders in EF 2004, dependants in EF 2005 (padded past 256 bytes)."""
    listed: list[tuple[str, bytes, int]] = [
        ("CERTIF", _ENTRY_MF, EF_CERT),
        ("HOLDER", _ENTRY_VITALE, EF_HOLDER),
        ("CARD", _ENTRY_VITALE, EF_CARD),
        ("RIGHTS", _ENTRY_VITALE, EF_RIGHTS),
        ("HISTORY", _ENTRY_VITALE, EF_HISTORY),
    ]
    vitale_files = {
        EF_HOLDER: b"".join(holder_group(p) for p in holders),
        EF_CARD: encode(0x66, [encode(0x80, b"20240115")]),
        EF_RIGHTS: encode(0x67, b"\x01" * 40),
        EF_HISTORY: b"\x04\x00" + bytes(30),  # not TLV (PROTOCOLS.md)
    }
    if dependants:
        listed.insert(2, ("DEPEND", _ENTRY_VITALE, EF_DEPENDANTS))
        body = b"".join(holder_group(p) for p in dependants)
        vitale_files[EF_DEPENDANTS] = body + b"\xff" * max(0, 300 - len(body))
    mf_files = {
        EF_CERT: encode(0x7F21, [encode(0x5F37, bytes(range(64))), encode(0x5F38, bytes(16))]),
        0x2F00: bytes(16),
        0x2F02: bytes(10),
    }
    vitale = Application(AID_VITALE, {0x2001: ElementaryFile(0x2001, card_map(listed))})
    for fid, content in vitale_files.items():
        vitale.files[fid] = ElementaryFile(fid, content, protected=fid in protect)
    mf = Application(AID_MF_VITALE, {fid: ElementaryFile(fid, c, fid in protect) for fid, c in mf_files.items()})
    return VirtualCard(ATR_VITALE, [mf, vitale], t0_style=t0_style)


def bank_card() -> VirtualCard:
    """An EMV-like card: its own payment application, no VITALE AID."""
    pse = Application(b"1PAY.SYS.DDF01", {0x0001: ElementaryFile(0x0001, encode(0x70, [encode(0x61, b"\x4f\x00")]))})
    emv = Application(bytes.fromhex("A0000000421010"), {})
    return VirtualCard(ATR_BANK, [pse, emv], t0_style=True)


@dataclass(frozen=True)
class CardSpec:
    """A card plus how its transport behaves (faults the socket adapter plays)."""

    card: VirtualCard
    """The card's logic."""
    mute: str = ""
    """``"all"``: connect, then never answer anything (not even the ATR
    request); ``"apdu"``: give the ATR, then never answer a command."""
    pull_after: int | None = None
    """Close the connection (card pulled) after this many APDUs."""


class IdentityFileReason(enum.Enum):
    """Why an identity file was refused."""

    UNREADABLE = "unreadable"
    """The file could not be read (missing, unreadable, not UTF-8)."""
    NOT_JSON = "not_json"
    """The text is not JSON."""
    BAD_SHAPE = "bad_shape"
    """Not an object, a list of objects or ``{"beneficiaries": [...]}``, or no beneficiary at all."""
    MISSING_KEYS = "missing_keys"
    """A beneficiary lacks one of :data:`IDENTITY_KEYS`."""
    BAD_VALUE = "bad_value"
    """A name that is not a non-empty string (or too long)."""
    BAD_DATE = "bad_date"
    """``birth_date`` is not an ISO 8601 date (YYYY-MM-DD) in the past."""
    BAD_NIR = "bad_nir"
    """``nir`` is not a well-formed NIR, or its key does not match."""


class IdentityFileError(ValueError):
    """An identity file (``DEMO_CARD``, ``emulate --identity``) was refused. The message names the field and
    the beneficiary's position, never a value from the file."""

    def __init__(self, reason: IdentityFileReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


IDENTITY_KEYS = ("surname", "first_name", "birth_date", "nir")
"""The keys of one beneficiary in an identity file."""
MAX_NAME = 64
MAX_BENEFICIARIES = 16
MIN_BIRTH_DATE = datetime.date(1900, 1, 1)


def parse_identity(text: str) -> list[SyntheticPerson]:
    """Beneficiaries from JSON text: one object, a list of objects or ``{"beneficiaries": [...]}``, each with
    keys surname, first_name, birth_date (ISO 8601), nir (15 characters, or 13 and the key is added).
    Raises :class:`IdentityFileError`."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise IdentityFileError(IdentityFileReason.NOT_JSON, "the identity file is not valid JSON") from exc
    if isinstance(raw, dict) and "beneficiaries" in raw:
        raw = raw["beneficiaries"]
    items = raw if isinstance(raw, list) else [raw]
    if not items or len(items) > MAX_BENEFICIARIES:
        raise IdentityFileError(
            IdentityFileReason.BAD_SHAPE, f"the identity file must hold 1 to {MAX_BENEFICIARIES} beneficiaries"
        )
    return [_beneficiary(item, index) for index, item in enumerate(items, 1)]


def _beneficiary(item: object, index: int) -> SyntheticPerson:
    where = f"beneficiary {index}"
    if not isinstance(item, dict):
        raise IdentityFileError(IdentityFileReason.BAD_SHAPE, f"{where} is not a JSON object")
    missing = [key for key in IDENTITY_KEYS if key not in item]
    if missing:
        raise IdentityFileError(IdentityFileReason.MISSING_KEYS, f"{where} lacks {', '.join(missing)}")
    names = []
    for key in ("surname", "first_name"):
        value = item[key]
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME or not value.isprintable():
            raise IdentityFileError(
                IdentityFileReason.BAD_VALUE, f"{where}: {key} must be a printable string of 1 to {MAX_NAME}"
            )
        try:
            value.encode(TEXT_ENCODING)  # what the card's files hold
        except UnicodeEncodeError as exc:
            raise IdentityFileError(
                IdentityFileReason.BAD_VALUE, f"{where}: {key} has characters a Carte Vitale cannot hold"
            ) from exc
        names.append(value.strip())
    birth = item["birth_date"]
    try:
        if not isinstance(birth, str):
            raise ValueError("not a string")
        birth_date = datetime.date.fromisoformat(birth.strip())
    except ValueError as exc:
        raise IdentityFileError(IdentityFileReason.BAD_DATE, f"{where}: birth_date must be YYYY-MM-DD") from exc
    if not MIN_BIRTH_DATE <= birth_date <= datetime.date.today():
        raise IdentityFileError(
            IdentityFileReason.BAD_DATE, f"{where}: birth_date must be from {MIN_BIRTH_DATE.year} to today"
        )
    value = item["nir"]
    nir = "".join(value.split()).upper() if isinstance(value, str) else ""
    if len(nir) == 13 and Nir(nir).well_formed:
        nir += f"{nir_key(nir):02d}"
    if not Nir(nir).key_valid:
        reason = "its key does not match" if Nir(nir).well_formed else "it is not 13 or 15 NIR characters"
        raise IdentityFileError(IdentityFileReason.BAD_NIR, f"{where}: nir refused ({reason})")
    return SyntheticPerson(names[0], names[1], birth_date, nir)


def load_identity(path: str | Path) -> list[SyntheticPerson]:
    """Beneficiaries from a JSON file (see :func:`parse_identity`). Raises :class:`IdentityFileError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise IdentityFileError(
            IdentityFileReason.UNREADABLE, f"cannot read the identity file: {exc.__class__.__name__}"
        ) from exc
    return parse_identity(text)


def make_card(kind: str, identity: list[SyntheticPerson] | None = None) -> CardSpec:
    """The named test card; ``identity`` replaces the default holders of Vitale kinds."""
    holders = identity or [SINGLE]
    factories: dict[str, Callable[[], CardSpec]] = {
        "vitale": lambda: CardSpec(vitale_card(holders)),
        "family": lambda: CardSpec(
            vitale_card(identity[:1] if identity else [PARENT], identity[1:] if identity else [CHILD_1, CHILD_2])
        ),
        "bank": lambda: CardSpec(bank_card()),
        "protected": lambda: CardSpec(
            vitale_card(holders, [CHILD_1], protect=frozenset({EF_RIGHTS, EF_DEPENDANTS, EF_CERT}))
        ),
        "garbage": lambda: CardSpec(GarbageCard(ATR_VITALE)),
        "mute": lambda: CardSpec(vitale_card(holders), mute="apdu"),
        "mute-atr": lambda: CardSpec(vitale_card(holders), mute="all"),
        "pulled": lambda: CardSpec(vitale_card(holders), pull_after=4),
    }
    if kind not in factories:
        raise ValueError(f"unknown card kind {kind!r}; one of {', '.join(CARD_KINDS)}")
    return factories[kind]()


CARD_KINDS = ("vitale", "family", "bank", "protected", "garbage", "mute", "mute-atr", "pulled")
