"""Errors raised by the card reader layer.

One root, :class:`CardError`, carrying a :class:`Reason` so the session can
branch on what went wrong (ask the patient to re-insert, to use another card,
call a technician) without parsing messages. Messages are plain language for the
person at the booth and never contain card data (names, NIR, dates).
"""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """Why reading a card failed."""

    NO_READER = "no_reader"
    """No card reader is connected (or the one asked for is gone)."""
    NO_CARD = "no_card"
    """No card was inserted in time."""
    REMOVED = "removed"
    """The card was pulled out while it was being read."""
    MUTE = "mute"
    """The card does not answer (no ATR, or no answer to commands)."""
    NOT_VITALE = "not_vitale"
    """The card is not a Carte Vitale (a bank card, for instance)."""
    UNREADABLE = "unreadable"
    """The card answered, but with data that does not follow the expected layout."""
    TIMEOUT = "timeout"
    """The operation did not finish within its time limit."""
    PCSC = "pcsc"
    """The smart-card service (pcscd) is not running or failed."""


_MESSAGES: dict[Reason, str] = {
    Reason.NO_READER: "No card reader is connected.",
    Reason.NO_CARD: "No card was inserted.",
    Reason.REMOVED: "The card was removed before it could be read. Please insert it again and leave it in.",
    Reason.MUTE: "The card does not respond. Please check it is inserted the right way.",
    Reason.NOT_VITALE: "This card is not a Carte Vitale.",
    Reason.UNREADABLE: "The card could not be read: its content is not in the expected format.",
    Reason.TIMEOUT: "Reading the card took too long.",
    Reason.PCSC: "The smart-card service is not available.",
}


class CardError(Exception):
    """Root of every error raised by :mod:`kiosk.identity`.

    ``reason`` says what went wrong; ``reader`` names the reader involved (a
    hardware name, never card data). The message defaults to a plain-language
    sentence for ``reason``.
    """

    reason: Reason = Reason.UNREADABLE

    def __init__(self, message: str | None = None, *, reason: Reason | None = None, reader: str = "") -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message if message is not None else _MESSAGES[self.reason])
        self.reader = reader

    @property
    def message(self) -> str:
        """The plain-language message."""
        return str(self.args[0]) if self.args else ""


class TLVError(CardError):
    """Bytes that are not valid BER-TLV (the only error :mod:`.tlv` raises)."""

    reason = Reason.UNREADABLE

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(message)
        self.offset = offset
        """Position in the input where decoding failed."""


class CardRemoved(CardError):
    """The card was pulled out during the read."""

    reason = Reason.REMOVED


class CardMute(CardError):
    """The card gave no ATR or stopped answering."""

    reason = Reason.MUTE


class NotVitale(CardError):
    """The card has no VITALE application."""

    reason = Reason.NOT_VITALE


class CardUnreadable(CardError):
    """The card's answers do not follow ISO 7816-4 or the Vitale layout."""

    reason = Reason.UNREADABLE


class PcscUnavailable(CardError):
    """pcscd is not running or refused the request."""

    reason = Reason.PCSC
