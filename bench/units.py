"""Exposure score of each systemd unit the project ships, as ``systemd-analyze security`` rates it,
and how long kiosk-app takes from start to READY=1 (its welcome screen drawn).

    python -m bench.units          # or: python -m bench.run units

``systemd-analyze security --offline=yes`` reads the unit file alone (no
running systemd needed): 0.0 is fully locked down, 10.0 fully exposed. The
issue asks for at most 2.0 per service. ``verify`` needs the commands the
units run to exist, so :func:`stub_root` builds a throw-away root with the
host's own units, the real compositor (cage) and executable stubs where the
project would be installed (``/opt/kiosk/venv/bin``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

UNIT_DIR = Path(__file__).resolve().parent.parent / "systemd"
VENV_BIN = "/opt/kiosk/venv/bin/"
HOST_UNITS = Path("/usr/lib/systemd/system")
_OVERALL = re.compile(r"Overall exposure level for (?P<unit>\S+): (?P<score>\d+(?:\.\d+)?)")


def services(unit_dir: Path = UNIT_DIR) -> list[Path]:
    """The ``.service`` files shipped in ``unit_dir``."""
    return sorted(unit_dir.glob("*.service"))


def units(unit_dir: Path = UNIT_DIR) -> list[Path]:
    """Every unit shipped in ``unit_dir`` (services and timers)."""
    return sorted([*unit_dir.glob("*.service"), *unit_dir.glob("*.timer")])


def security(unit: Path, *, threshold: int = 100) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze security --offline=yes --threshold=THRESHOLD UNIT`` run in the unit's directory."""
    return subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--threshold={threshold}", unit.name],
        cwd=unit.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def exposure(output: str) -> float:
    """The overall exposure level in ``systemd-analyze security`` output (ValueError when there is none)."""
    match = _OVERALL.search(output)
    if match is None:
        raise ValueError("no overall exposure level in systemd-analyze output")
    return float(match["score"])


def exec_commands(unit: Path) -> list[str]:
    """The absolute program paths of every ``Exec*=`` line (continuation lines joined, prefixes like ``-`` dropped)."""
    text = unit.read_text().replace("\\\n", " ")
    programs = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().startswith("Exec") and value.strip():
            programs.append(shlex.split(value)[0].lstrip("-@:+!"))
    return programs


def stub_root(root: Path, unit_dir: Path = UNIT_DIR) -> Path:
    """A root for ``systemd-analyze verify --root=ROOT``: the host's units, ours, and every command they run.

    Commands under the project's venv become executable stubs (the project is not installed there on a
    development machine or in CI); any other command is copied from the host, so a unit naming a program
    the host lacks fails verification as it would on a booth.
    """
    shutil.copytree(HOST_UNITS, root / HOST_UNITS.relative_to("/"), symlinks=True, dirs_exist_ok=True)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True, exist_ok=True)
    for unit in units(unit_dir):
        shutil.copy2(unit, target / unit.name)
        for program in exec_commands(unit):
            destination = root / program.lstrip("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            if program.startswith(VENV_BIN):
                destination.write_text("#!/bin/sh\nexit 0\n")
                destination.chmod(0o755)
            elif Path(program).exists():
                shutil.copy2(program, destination)
    return root


def verify(root: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify --root=ROOT NAMES...``."""
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *names],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def app_ready_seconds(work: Path, *, runs: int = 3) -> list[float]:
    """Seconds from starting kiosk-app (emulated peripherals, Xvfb, no hub) to its READY=1, ``runs`` times.

    The first run also generates the emulators' media files; later runs reuse them, as a booth's restarts do.
    """
    from kiosk.demo.display import xvfb

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "HOME": str(work)}
    subprocess.run(
        [sys.executable, "-m", "hub.cli", "init", "--dev", "--state", str(work / "hub")],
        capture_output=True,
        env=env,
        cwd=root,
        timeout=120,
        check=True,
    )
    argv = [sys.executable, "-m", "kiosk.ui.main", "--hub", "wss://127.0.0.1:9/ws", "--hub-state", str(work / "hub")]
    argv += ["--emulate", str(work / "emulated"), "--state", str(work / "state")]
    timings = []
    with xvfb() as display:
        for attempt in range(runs):
            notify = work / f"notify-{attempt}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(str(notify))
                sock.settimeout(300)
                started = time.monotonic()
                app = subprocess.Popen(
                    argv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={**env, "DISPLAY": display, "NOTIFY_SOCKET": str(notify)},
                    cwd=root,
                )
                try:
                    while not sock.recv(4096).startswith(b"READY=1"):
                        pass
                    timings.append(round(time.monotonic() - started, 2))
                finally:
                    app.terminate()
                    try:
                        app.wait(30)
                    except subprocess.TimeoutExpired:
                        app.kill()
                        app.wait()
    return timings


def run() -> dict[str, Any]:
    """Every service's exposure score, whether the whole set verifies cleanly, and kiosk-app's time to ready."""
    scores = {unit.name: exposure(security(unit).stdout) for unit in services()}
    with tempfile.TemporaryDirectory(prefix="kiosk-units-") as tmp:
        result = verify(stub_root(Path(tmp)), [unit.name for unit in units()])
    with tempfile.TemporaryDirectory(prefix="kiosk-app-ready-") as tmp:
        ready = app_ready_seconds(Path(tmp))
    return {
        "bench": "units",
        "exposure": scores,
        "max_exposure": max(scores.values()),
        "verify_clean": result.returncode == 0 and not result.stderr.strip(),
        "app_ready_seconds": ready,
        "app_ready_note": "kiosk-app start to READY=1 under Xvfb on emulated peripherals; first run makes the media",
    }


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=2)
    print()
