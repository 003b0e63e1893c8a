"""A bounded atheris run (about 5 s) of each audit chain harness (tests/fuzz/audit_parsers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.bounded import run_harness

pytest.importorskip("atheris")


@pytest.mark.parametrize("target", ["line", "chain"])
def test_audit_fuzz_target_finds_no_crash(target: str, tmp_path: Path) -> None:
    result, corpus = run_harness("audit_parsers", target, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(corpus.iterdir())) >= 2  # seeded, and the corpus grew or at least kept its seeds
