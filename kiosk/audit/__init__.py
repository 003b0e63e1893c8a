"""The booth's hash-chained audit trail (:class:`AuditLog`); the hub uses the same code (:mod:`hub.audit`)."""

from kiosk.audit.chain import BreakReason, ChainError, FieldError, Head, Verdict, verify
from kiosk.audit.events import CATALOG, EventType
from kiosk.audit.log import AuditError, AuditLog, JournalSender, verify_directory

__all__ = [
    "CATALOG",
    "AuditError",
    "AuditLog",
    "BreakReason",
    "ChainError",
    "EventType",
    "FieldError",
    "Head",
    "JournalSender",
    "Verdict",
    "verify",
    "verify_directory",
]
