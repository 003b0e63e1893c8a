"""What a consultation leaves for its documents: readings, stills, who and when (no patient identity)."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

READING_KEYS = ("spo2", "pulse", "systolic", "diastolic", "celsius")
"""The readings the booth keeps for a consultation (the controller's ``View.readings`` keys)."""


@dataclass(frozen=True, repr=False)
class Still:
    """A still image captured during the consultation."""

    data: bytes
    mime: str = "image/jpeg"
    camera: str = "otoscope"
    """``booth``, ``otoscope`` or ``dermatoscope``."""
    taken: datetime.datetime | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def __repr__(self) -> str:
        return f"Still({self.camera}, {self.mime}, {len(self.data)} bytes)"


@dataclass(frozen=True, repr=False)
class ConsultationSummary:
    """A finished consultation, as the documents see it.

    ``patient_token`` is the opaque per-session token of the audit trail, never
    the patient's identity: the bundle and the report name nobody.
    """

    session_id: str
    patient_token: str
    booth_id: str
    started: datetime.datetime
    ended: datetime.datetime
    language: str = "fr"
    doctor_name: str = ""
    readings: Mapping[str, float] = field(default_factory=dict)
    """``spo2`` (%), ``pulse`` (/min), ``systolic`` and ``diastolic`` (mmHg), ``celsius``."""
    stills: tuple[Still, ...] = ()
    prescription_number: str = ""
    """Set when the doctor signed a prescription during the consultation."""
    fetch_code: str = ""
    """The code to fetch that prescription on a phone."""

    def __repr__(self) -> str:
        return f"ConsultationSummary({self.session_id}, readings={sorted(self.readings)}, stills={len(self.stills)})"
