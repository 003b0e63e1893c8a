"""The enrolment bench at a tiny size: a real hub process, real enrolments and renewals. No timing assertions."""

from __future__ import annotations

import json

import pytest

from bench import enrolment


@pytest.mark.timeout(180)
def test_enrolment_bench_runs() -> None:
    report = enrolment.run(samples=3)
    assert json.loads(json.dumps(report)) == report
    assert report["bench"] == "enrolment"
    assert report["enrol"]["samples"] == report["renew"]["samples"] == 3
    assert report["cli_enrol"]["samples"] == enrolment.CLI_SAMPLES
    for part in ("enrol", "renew", "cli_enrol"):
        assert 0 < report[part]["p50_ms"] <= report[part]["max_ms"]
