"""Synthetic consultations and a development PKI for the documents tests (no real person anywhere)."""

from __future__ import annotations

import datetime
from pathlib import Path

from kiosk.documents.summary import ConsultationSummary, Still

START = datetime.datetime(2026, 3, 14, 9, 30, tzinfo=datetime.UTC)
# A tiny JPEG-looking payload: the documents never decode stills, they carry and hash them.
STILL = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\xff\xd9"


def summary(**overrides: object) -> ConsultationSummary:
    values: dict[str, object] = {
        "session_id": "session-0001",
        "patient_token": "pt-5f1c2a9e",
        "booth_id": "booth-0001",
        "started": START,
        "ended": START + datetime.timedelta(minutes=12),
        "language": "fr",
        "doctor_name": "Dr Demo",
        "readings": {"spo2": 97.0, "pulse": 72.0, "systolic": 128.0, "diastolic": 84.0, "celsius": 37.4},
        "stills": (Still(STILL, camera="otoscope", taken=START + datetime.timedelta(minutes=5)),),
    }
    values.update(overrides)
    return ConsultationSummary(**values)  # type: ignore[arg-type]


def fleet_root(state: Path) -> bytes:
    return (state / "fleet-ca.pem").read_bytes()
