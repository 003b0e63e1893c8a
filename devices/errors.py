"""Errors raised by the peripheral drivers.

One root, :class:`DeviceError`, carrying a :class:`Reason` so callers can
branch on what went wrong without parsing messages. Messages are written for
the person at the booth or the doctor: plain language, no patient data.
"""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """Why a device operation failed."""

    DISCONNECTED = "disconnected"
    """The port went away (cable pulled, device powered off)."""
    NOT_FOUND = "not_found"
    """The configured port does not exist."""
    TIMEOUT = "timeout"
    """The device stayed silent longer than its protocol allows."""
    PROTOCOL = "protocol"
    """The device sent bytes that do not follow its protocol."""
    REFUSED = "refused"
    """The device refused a command (busy, bad parameter)."""
    MEASUREMENT = "measurement"
    """The device ran but could not produce a valid measurement."""
    ABORTED = "aborted"
    """The measurement was stopped on request."""
    UNSUPPORTED = "unsupported"
    """The device or host lacks a needed capability."""


class DeviceError(Exception):
    """Root of every error raised by :mod:`devices`."""

    reason: Reason = Reason.PROTOCOL

    def __init__(self, message: str, *, reason: Reason | None = None, device: str = "") -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.device = device

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class RemoteProtocolError(DeviceError):
    """The device sent bytes its protocol does not allow (h11's naming)."""

    reason = Reason.PROTOCOL


class LocalProtocolError(DeviceError):
    """We asked a protocol object for something its state forbids."""

    reason = Reason.PROTOCOL


class DeviceDisconnected(DeviceError):
    """The device's port disappeared or hung up."""

    reason = Reason.DISCONNECTED


class DeviceNotFound(DeviceError):
    """The configured port does not exist (yet)."""

    reason = Reason.NOT_FOUND


class DeviceTimeout(DeviceError):
    """No answer from the device within the protocol's time limit."""

    reason = Reason.TIMEOUT


class CommandRefused(DeviceError):
    """The device answered a command with a refusal (busy, bad frame)."""

    reason = Reason.REFUSED


class MeasurementAborted(DeviceError):
    """A measurement was stopped on request before it finished."""

    reason = Reason.ABORTED
