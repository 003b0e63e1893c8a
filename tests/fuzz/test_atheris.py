"""A bounded atheris run of each parser harness (tests/fuzz/parsers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

TARGETS = [
    "contec-cms50-legacy",
    "contec-cms50",
    "suntech-nibp",
    "suntech-host",
    "lu90614",
    "tlv",
    "vitale",
    "signalling",
    "sealed-record",
]
SLOW_TARGETS = {"sealed-record"}
"""Inputs that get past the header cost an X25519 exchange each: fewer runs keep the time bounded."""
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_finds_no_crash(target: str, tmp_path: Path) -> None:
    runs = 100_000 if os.environ.get("CI") else 200_000
    if target in SLOW_TARGETS:
        runs //= 4
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.parsers", target, f"-runs={runs}", "-max_len=512", "-seed=1", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {runs} runs" in result.stderr
