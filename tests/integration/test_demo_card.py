"""The demo's virtual Carte Vitale: inserted into a private pcscd and read back through pyscard.

Each case runs ``python -m kiosk.demo.card`` in its own process: libpcsclite reads the private socket's
path once per process, and test_card.py's daemon owns this one's. Synthetic identities only.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kiosk.identity.virtual import pcscd as pcscd_support
from kiosk.identity.virtual.cards import synthetic_nir

pytestmark = [
    pytest.mark.pcscd,
    pytest.mark.skipif(pcscd_support.available() is not None, reason=str(pcscd_support.available())),
]

ROOT = Path(__file__).resolve().parents[2]


def run_card(workdir: Path, demo_card: Path | None = None) -> tuple[int, dict[str, Any], str]:
    env = {key: value for key, value in os.environ.items() if key not in ("DEMO_CARD", pcscd_support.SOCKET_ENV)}
    if demo_card is not None:
        env["DEMO_CARD"] = str(demo_card)
    out = subprocess.run(
        [sys.executable, "-m", "kiosk.demo.card", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, json.loads(out.stdout), out.stderr


def test_synthetic_family_card(tmp_path: Path) -> None:
    code, report, _ = run_card(tmp_path / "pcscd")
    assert code == 0, report
    assert report["kind"] == "family" and report["beneficiaries"] == 3
    assert report["identity_matches"] is True
    assert report["reader"] == "Virtual PCD 00 00"
    assert 0 < report["insertion_to_identity_ms"] < 5000


def test_demo_card_file(tmp_path: Path) -> None:
    demo_card = tmp_path / "card.json"
    nir = synthetic_nir(2, datetime.date(1990, 7, 14), 5)
    document = {"surname": "ESSAIVAL", "first_name": "Léonie", "birth_date": "1990-07-14", "nir": nir}
    demo_card.write_text(json.dumps(document), encoding="utf-8")
    code, report, stderr = run_card(tmp_path / "pcscd", demo_card)
    assert code == 0, report
    assert (report["kind"], report["beneficiaries"], report["identity_matches"]) == ("vitale", 1, True)
    # The card's content reaches no output.
    assert "ESSAIVAL" not in json.dumps(report) + stderr and nir not in json.dumps(report) + stderr


def test_bad_demo_card_file_is_refused_before_anything_starts(tmp_path: Path) -> None:
    demo_card = tmp_path / "card.json"
    demo_card.write_text('{"surname": "ESSAIVAL", "first_name": "Léonie", "birth_date": "1990-07-14"}')
    code, report, stderr = run_card(tmp_path / "pcscd", demo_card)
    assert code == 2
    assert report == {"ok": False, "error": "missing_keys", "detail": "beneficiary 1 lacks nir"}
    assert stderr.strip() == "DEMO_CARD: beneficiary 1 lacks nir"
    assert not (tmp_path / "pcscd").exists()
