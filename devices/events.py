"""Typed readings and device states shared by every driver."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from devices.errors import DeviceError


class Quality(enum.Enum):
    """Flags a device attaches to a reading; an empty set means a clean reading."""

    FINGER_OUT = "finger_out"
    """Oximeter: no finger in the probe."""
    PROBE_ERROR = "probe_error"
    """Oximeter: probe fault reported by the device."""
    SEARCHING = "searching"
    """Oximeter: the device is still locking on to the pulse."""
    WEAK_SIGNAL = "weak_signal"
    """Low perfusion or signal strength: the value may be unreliable."""
    DROPPING = "dropping"
    """Oximeter: the device flags SpO2 as falling."""
    NOT_VALID = "not_valid"
    """The device marks the value as not yet valid."""
    OUT_OF_RANGE = "out_of_range"
    """The value lies outside the device's measurement range."""


class DeviceState(enum.Enum):
    """Where a driver is in its life; one method per driver changes it."""

    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    MEASURING = "measuring"
    ERROR = "error"


@dataclass(frozen=True)
class Reading:
    """One measured value as a device reported it."""

    kind: str
    """What was measured: ``spo2``, ``pulse``, ``pleth``, ``cuff_pressure``,
    ``systolic``, ``diastolic``, ``mean``, ``celsius``..."""
    value: float | None
    """The value, or ``None`` when the device marks it unavailable."""
    unit: str
    """UCUM unit: ``%``, ``/min``, ``mm[Hg]``, ``Cel``, ``1`` for unitless."""
    time: float
    """Host monotonic time at which the bytes carrying it arrived."""
    quality: frozenset[Quality] = field(default_factory=frozenset)
    """Quality flags; empty when the device reports nothing wrong."""


@dataclass(frozen=True)
class StateChanged:
    """A driver moved from one :class:`DeviceState` to another."""

    device: str
    """The peripheral's configured name (``oximeter``, ``nibp``...)."""
    old: DeviceState
    new: DeviceState
    time: float
    error: DeviceError | None = None
    """Why the driver entered ``ERROR`` or ``DISCONNECTED``, when known."""


DeviceEvent = Reading | StateChanged
