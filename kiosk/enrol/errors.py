"""Errors of booth enrolment: one root, :class:`EnrolError`, with a :class:`Reason`.

Messages name files and hub error codes, never a token or a key.
"""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """Why enrolling or renewing failed."""

    USAGE = "usage"
    """A bad argument: hub URL, booth id, token shape."""
    IDENTITY = "identity"
    """The identity directory or its files cannot be read, written or trusted (permissions, format)."""
    NOT_ENROLLED = "not_enrolled"
    """Renewal without a certificate and key to renew."""
    UNREACHABLE = "unreachable"
    """The hub could not be reached, or the TLS handshake failed (wrong fleet CA, expired certificate)."""
    REFUSED = "refused"
    """The hub answered with a refusal; ``hub_code`` holds its error code (``token_used``...)."""
    BAD_RESPONSE = "bad_response"
    """The hub's answer is not the expected JSON."""
    BAD_CERTIFICATE = "bad_certificate"
    """The certificate returned is not for this key, booth or fleet CA."""


class EnrolError(Exception):
    """Root of every error raised by :mod:`kiosk.enrol`."""

    def __init__(self, reason: Reason, message: str, *, hub_code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.hub_code = hub_code
        """The hub's ``error`` field when ``reason`` is REFUSED (see ``hub.enrolment.EnrolReason``)."""
        self.status = status
        """The HTTP status of a refusal (0 otherwise)."""

    def as_json(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {"status": "error", "error": self.reason.value, "message": str(self)}
        if self.hub_code:
            out["hub_error"] = self.hub_code
            out["http_status"] = self.status
        return out
