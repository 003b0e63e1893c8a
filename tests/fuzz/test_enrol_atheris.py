"""A bounded atheris run (about 5 s) of each enrolment harness (tests/fuzz/enrol_parsers.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fuzz.bounded import run_harness

pytest.importorskip("atheris")

TARGETS = ["enrol-request", "csr-der", "issued"]


@pytest.mark.parametrize("target", TARGETS)
def test_enrol_fuzz_target_finds_no_crash(target: str, tmp_path: Path) -> None:
    result, _ = run_harness("enrol_parsers", target, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    done = re.search(r"Done (\d+) runs", result.stderr)
    assert done is not None, result.stderr[-3000:]
    assert int(done.group(1)) > 1000
