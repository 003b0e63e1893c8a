"""Exposure score of each systemd unit the project ships, as ``systemd-analyze security`` rates it.

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
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
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


def run() -> dict[str, Any]:
    """Every service's exposure score and whether the whole set verifies cleanly."""
    scores = {unit.name: exposure(security(unit).stdout) for unit in services()}
    with tempfile.TemporaryDirectory(prefix="kiosk-units-") as tmp:
        result = verify(stub_root(Path(tmp)), [unit.name for unit in units()])
    return {
        "bench": "units",
        "exposure": scores,
        "max_exposure": max(scores.values()),
        "verify_clean": result.returncode == 0 and not result.stderr.strip(),
    }


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=2)
    print()
