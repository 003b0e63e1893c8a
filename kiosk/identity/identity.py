"""The identity interface: what the session gets from a patient's card.

:class:`IdentityReader` is the seam between the session and the way a card is
read. Today's implementation is the public-layout reader
(:class:`kiosk.identity.vitale.PublicVitaleReader`); production will add one
backed by the licensed SESAM-Vitale library, which alone may read protected
data and obtain the INS (``PROTOCOLS.md``: the kiosk never derives the INS).

Privacy: :class:`Nir` never shows itself in clear in ``str``/``repr``/f-strings;
:class:`Beneficiary` and :class:`CardIdentity` reprs hide names and dates too,
so a stray log line or traceback carries no patient data.
"""

from __future__ import annotations

import abc
import datetime
import re
from dataclasses import dataclass, field
from typing import Protocol

_NIR_RE = re.compile(r"^[12378][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?$")


class Nir:
    """A French social-security number (NIR): 13 characters and a 2-digit key.

    ``str()``/``repr()`` give the masked form (sex, birth year and month only,
    e.g. ``1 84 12 ** *** *** **``). :meth:`reveal` returns the full number
    for the session's own use (display to the patient, the licensed library);
    callers must not log it.

    The key is checked (97 - number mod 97, Corsica's ``2A``/``2B`` counted as
    19/18); a bad or missing key sets :attr:`key_valid` to False rather than
    raising, because a card is what it is and the session decides.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = "".join(value.split()).upper()

    def reveal(self) -> str:
        """The full NIR, key included, without spaces."""
        return self._value

    @property
    def well_formed(self) -> bool:
        """True when the shape is 13 characters (+ optional 2-digit key) of a NIR."""
        return bool(_NIR_RE.match(self._value))

    @property
    def key_valid(self) -> bool:
        """True when a key is present and matches the first 13 characters."""
        if not self.well_formed or len(self._value) != 15:
            return False
        return int(self._value[13:]) == nir_key(self._value[:13])

    def masked(self) -> str:
        """Sex, birth year and month kept, the rest as stars: ``1 84 12 ** *** *** **``."""
        v = self._value
        if len(v) < 5:
            return "*" * len(v)
        return f"{v[0]} {v[1:3]} {v[3:5]} ** *** *** **"

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"Nir({self.masked()!r})"

    def __format__(self, spec: str) -> str:
        return format(self.masked(), spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Nir) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Nir", self._value))


def nir_key(first13: str) -> int:
    """The NIR key of 13 characters: 97 - (n mod 97), with 2A -> 19 and 2B -> 18."""
    s = first13.upper()
    if s[5:7] == "2A":
        s = s[:5] + "19" + s[7:]
    elif s[5:7] == "2B":
        s = s[:5] + "18" + s[7:]
    return 97 - int(s) % 97


@dataclass(frozen=True, repr=False)
class Beneficiary:
    """One person covered by the card (the insured person or a dependant)."""

    surname: str
    """Family name as printed on the card."""
    first_name: str
    """First name."""
    birth_date: datetime.date | None
    """Birth date; None when the card's date is not a calendar date (Vitale
    cards can carry "lunar" dates such as day 00 or month 00 or above 12)."""
    nir: Nir
    """Social-security number, masked unless revealed."""
    birth_date_text: str = ""
    """The card's raw YYYYMMDD birth date, kept for lunar dates."""

    def __repr__(self) -> str:
        return f"Beneficiary(nir={self.nir!r}, surname=<hidden>, first_name=<hidden>, birth_date=<hidden>)"

    def to_json(self, *, reveal: bool = False) -> dict[str, object]:
        """The CLI's keys; the NIR is masked unless ``reveal``."""
        return {
            "surname": self.surname,
            "first_name": self.first_name,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "nir": self.nir.reveal() if reveal else self.nir.masked(),
        }


@dataclass(frozen=True, repr=False)
class CardIdentity:
    """What a card says about who it covers."""

    beneficiaries: tuple[Beneficiary, ...]
    """Everyone on the card, the insured person first, in card order."""
    inaccessible_files: tuple[str, ...] = ()
    """Files the card refused to give (protected), as ``APPID/EFID name``."""
    valid_from: datetime.date | None = None
    """Validity start of the card (``66/80``), if readable."""
    reader: str = ""
    """The reader the card was in."""
    atr: bytes = b""
    """The card's answer to reset."""
    flags: tuple[str, ...] = field(default_factory=tuple)
    """Non-fatal anomalies, e.g. ``nir-key-invalid``, ``file-not-tlv:...``."""

    def __repr__(self) -> str:
        return (
            f"CardIdentity(beneficiaries={len(self.beneficiaries)}, "
            f"inaccessible_files={self.inaccessible_files!r}, flags={self.flags!r}, reader={self.reader!r})"
        )

    def to_json(self, *, reveal: bool = False) -> dict[str, object]:
        """``{"beneficiaries": [...]}`` as the CLI prints it."""
        return {
            "beneficiaries": [b.to_json(reveal=reveal) for b in self.beneficiaries],
            "inaccessible_files": list(self.inaccessible_files),
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "flags": list(self.flags),
        }


class CardChannel(Protocol):
    """A connected card, whatever carries the APDUs (pcscd, a test double)."""

    @property
    def reader(self) -> str:
        """The reader's name."""
        ...

    @property
    def atr(self) -> bytes:
        """The card's answer to reset."""
        ...

    async def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU and return the response APDU (data + SW)."""
        ...


class IdentityReader(abc.ABC):
    """Turns a connected card into a :class:`CardIdentity`.

    Implementations: :class:`kiosk.identity.vitale.PublicVitaleReader` (the
    publicly documented layout, no protected data); later, one wrapping the
    licensed SESAM-Vitale reading library, which needs a professional card and
    is the only path to protected data, billing and the INS.
    """

    @abc.abstractmethod
    async def read(self, card: CardChannel) -> CardIdentity:
        """Read ``card``; raises :class:`~kiosk.identity.errors.CardError` when it cannot."""
