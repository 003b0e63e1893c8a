"""The booth app under a real X server (Xvfb), driven in one subprocess (Kivy makes one window per process).

The session fixture ``ui_report`` starts ``Xvfb`` on a free display (``-displayfd``),
runs :mod:`tests.ui.driver` against it once, and hands the tests its JSON
report. Screenshots stay under ``test-artifacts/screens/<lang>/<screen>.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk.demo.display import DisplayError, xvfb

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screens"
DRIVER_TIMEOUT = 280.0


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    try:
        with xvfb((1280, 800)) as display:
            yield display
    except DisplayError as exc:
        pytest.fail(f"{exc}: the screen tests need it")


@pytest.fixture(scope="session")
def ui_report(xvfb_display: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    report = tmp_path_factory.mktemp("ui") / "report.json"
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "DISPLAY": xvfb_display, "PYTHONPATH": str(ROOT), "HOME": str(home)}
    env.pop("KIVY_HOME", None)
    env.pop("WAYLAND_DISPLAY", None)
    command = [sys.executable, "-m", "tests.ui.driver", "--out", str(ARTIFACTS), "--report", str(report)]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=DRIVER_TIMEOUT, check=False
    )
    (ARTIFACTS.parent / "driver.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not report.exists():
        pytest.fail(f"the UI driver failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    shutil.copy(report, ARTIFACTS.parent / "ui-report.json")  # timings, layout findings, flow results
    result: dict[str, Any] = json.loads(report.read_text())
    result["home_after"] = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    return result
