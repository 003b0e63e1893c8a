"""One bounded atheris run of a harness module's target, as the fuzz tests start it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_harness(module: str, target: str, work: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Fuzz ``target`` of ``tests.fuzz.<module>`` for about 5 s (seed 1); return the run and its corpus directory."""
    corpus = work / "corpus"
    corpus.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            f"tests.fuzz.{module}",
            target,
            "-max_total_time=5",
            "-max_len=4096",
            "-seed=1",
            f"-artifact_prefix={work}/",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, corpus
