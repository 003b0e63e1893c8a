"""Typed errors of the documents package: one root, a reason enum, no patient data in any message."""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """Why a document could not be made, checked or printed."""

    INVALID_SUMMARY = "invalid_summary"
    """The consultation summary does not make a valid FHIR resource (a value out of range, a bad code)."""
    NOT_A_PDF = "not_a_pdf"
    """The bytes are not a PDF the booth can read."""
    UNSIGNED = "unsigned"
    """The PDF carries no signature."""
    TAMPERED = "tampered"
    """The signed bytes do not match the signature, or content was added after it."""
    UNTRUSTED = "untrusted"
    """The signer's certificate does not chain to the doctor CA of the fleet trust, or is not a prescriber's."""
    MALFORMED = "malformed"
    """A signed PDF without the prescription's number or fetch code."""
    PRINTER = "printer"
    """CUPS refused the job or could not be reached."""


class DocumentError(Exception):
    """A document problem; ``reason`` says which, the message never holds document content."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PrescriptionRejected(DocumentError):
    """A prescription that failed verification: it is never printed."""


class PrintError(DocumentError):
    """The print queue did not take the job."""

    def __init__(self, message: str, *, queue: str) -> None:
        super().__init__(Reason.PRINTER, message)
        self.queue = queue
