"""Events and errors shared by both Contec pulse-oximeter protocol modules.

Both firmware generations (:mod:`devices.protocols.contec_legacy` and
:mod:`devices.protocols.contec`) decode to the same :class:`OximeterFrame`, so
the driver and the decode CLI handle one event type whatever the device.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.errors import RemoteProtocolError

NO_VALUE = 127
"""Pulse or SpO2 value meaning "no value" on both generations (PROTOCOLS.md)."""


class OximeterProtocolError(RemoteProtocolError):
    """Bytes that do not form a frame; they were dropped before raising."""

    def __init__(self, message: str, skipped: bytes) -> None:
        super().__init__(message)
        self.skipped = skipped
        """The bytes the parser dropped to resynchronise."""


@dataclass(frozen=True, slots=True)
class OximeterFrame:
    """One live-data frame (about 60 a second) from a CMS50D+ oximeter."""

    spo2: int | None
    """Oxygen saturation in %, or ``None`` when the device sends "no value" (127)."""
    pulse: int | None
    """Pulse rate in beats per minute, or ``None`` when the device sends "no value"."""
    pleth: int | None
    """Plethysmogram sample 0-127, or ``None`` when the frame says there is no data."""
    signal_strength: int | None
    """Signal strength 0-15 as the device grades it, ``None`` if the frame lacks it."""
    bargraph: int | None
    """Pulse-intensity bar graph 0-15, ``None`` if the frame lacks it."""
    finger_out: bool
    """No finger in the probe."""
    probe_error: bool
    """The device reports a probe fault."""
    searching: bool
    """The device is still locking on to the pulse."""
    dropping: bool
    """The device flags SpO2 as dropping."""
    beep: bool
    """Set on the frame where the device would beep for a heartbeat."""
    valid: bool
    """The device considers SpO2 and pulse valid (no finger/probe/search problem)."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One stored reading (one per second of recording) from a stored-data download."""

    pulse: int | None
    """Pulse rate in beats per minute, or ``None`` for "no value"."""
    spo2: int | None
    """Oxygen saturation in %, or ``None`` for "no value"."""


def to_json(event: OximeterFrame | StoredRecord) -> dict[str, object]:
    """The decode CLI's JSON keys; what a frame does not carry is ``None``."""
    if isinstance(event, StoredRecord):
        return {
            "spo2": event.spo2,
            "pulse": event.pulse,
            "pleth": None,
            "finger_out": None,
            "probe_error": None,
            "searching": None,
        }
    return {
        "spo2": event.spo2,
        "pulse": event.pulse,
        "pleth": event.pleth,
        "finger_out": event.finger_out,
        "probe_error": event.probe_error,
        "searching": event.searching,
    }
