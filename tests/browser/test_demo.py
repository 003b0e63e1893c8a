"""``make demo`` end to end: the patient app driven by simulated touches, a scripted doctor, and the wipe check.

The demo runs in its own process (Kivy opens one window per process) under
its own Xvfb, with a DEMO_CARD identity of our own, so the search after the
wipe looks for names and a NIR that only this run put on the card.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.identity.virtual.cards import synthetic_nir

pytestmark = [pytest.mark.timeout(420)]

PATIENT = {"surname": "TESTQUILLARD", "first_name": "Oriabelle", "birth_date": "1958-07-19"}
EXPORT = [sys.executable, "-m", "hub.cli", "records", "export"]
STEPS = [
    "welcome",
    "language",
    "consent",
    "card",
    "beneficiary",
    "reason",
    "selfcheck",
    "doctor-login",
    "accept",
    "sas",
    "oximeter",
    "blood-pressure",
    "temperature",
    "otoscope-still",
    "chat",
    "end",
    "wipe",
    "wipe-check",
    "records-upload",
]


def test_demo_runs_a_whole_consultation_and_forgets_the_patient(tmp_path: Path) -> None:
    import datetime

    nir = synthetic_nir(2, datetime.date.fromisoformat(PATIENT["birth_date"]), 77)
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps({**PATIENT, "nir": nir}))
    out = tmp_path / "demo-out"
    environment = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environment["DEMO_CARD"] = str(card_file)
    result = subprocess.run(
        [sys.executable, "-m", "kiosk.demo", "--out", str(out)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert (out / "summary.json").exists(), (result.returncode, result.stdout[-3000:], result.stderr[-5000:])
    summary = json.loads((out / "summary.json").read_text())
    failed = [step for step in summary["steps"] if not step["ok"]]
    assert result.returncode == 0, (failed, result.stdout[-3000:], result.stderr[-3000:])
    assert summary["ok"] is True
    assert [step["name"] for step in summary["steps"]] == STEPS
    assert summary["sas_booth"] and summary["sas_booth"] == summary["sas_doctor"]
    assert summary["srtp_cipher"] == "SRTP_AEAD_AES_256_GCM"
    readings = summary["readings"]
    assert 85 <= readings["spo2"] <= 100 and 40 <= readings["pulse"] <= 140
    assert 80 <= readings["systolic"] <= 200 and 40 <= readings["diastolic"] < readings["systolic"]
    assert 35 <= readings["celsius"] <= 40
    shots = {path.name for path in out.glob("*.png")}
    assert any(name.startswith("booth-") and "sas" in name for name in shots)
    assert any(name.startswith("console-") and "end" in name for name in shots)

    # The wipe check, again from outside: nothing of the patient under the booth's state (its temporary
    # directory is inside it), whatever the demo's own check said.
    needles = [PATIENT["surname"], PATIENT["first_name"], nir, PATIENT["surname"].lower(), nir[:13]]
    booth_state = out / "state" / "booth"
    assert booth_state.is_dir() and (booth_state / "tmp").is_dir()
    holding = [
        str(path)
        for path in booth_state.rglob("*")
        if path.is_file() and any(needle.encode() in path.read_bytes() for needle in needles)
    ]
    assert holding == []
    # Nor in what it printed (its output is the kind of thing that ends up in a journal).
    for needle in needles:
        assert needle not in result.stdout and needle not in result.stderr

    # The sealed records reached the hub; the operator's export opens them, identification included.
    export = subprocess.run(
        [*EXPORT, "--state", str(out / "state" / "hub"), "--out", str(tmp_path / "records")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert export.returncode == 0, export.stderr[-2000:]
    index = json.loads((tmp_path / "records" / "index.json").read_text())["records"]
    kinds = {entry["kind"] for entry in index}
    assert {"consent", "identification", "reading", "still", "chat", "summary"} <= kinds
    identification = next(entry for entry in index if entry["kind"] == "identification")
    opened = json.loads((tmp_path / "records" / identification["file"]).read_text())
    assert opened["surname"] == PATIENT["surname"] and opened["nir"] == nir
