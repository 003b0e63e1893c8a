"""The hub capacity bench's machinery at a tiny size: a real hub process, a load worker, the probe consultation.

No timing assertions: only the report's shape, and that every booth connected and every probe came back.
"""

from __future__ import annotations

import json

from bench import hub_capacity


def test_hub_capacity_bench_runs_one_tiny_step() -> None:
    report = hub_capacity.run(max_booths=20, budget_seconds=60, probes=30, workers=1, steps=(20,))

    assert json.loads(json.dumps(report)) == report  # what the bench prints
    assert report["bench"] == "hub_capacity"
    assert isinstance(report["core"], int)
    assert report["core"] not in report["load_cores"] or len(report["load_cores"]) == 1
    assert report["nofile"]["hub"] == report["nofile"]["soft"] > 0
    [step] = report["steps"]
    assert step["booths"] == step["connected"] == step["open"] == 20
    assert step["failed"] == step["disconnected"] == step["lost"] == 0
    assert step["samples"] == 30
    for key in ("connect_seconds", "p50_ms", "p90_ms", "p99_ms", "max_ms", "hub_cpu_percent", "hub_rss_mib"):
        assert isinstance(step[key], int | float), key
    assert isinstance(step["hub_full_gc"], int)
    assert report["hub_full_gc"]["count"] >= step["hub_full_gc"]
    assert 0 < step["p50_ms"] <= step["p99_ms"] <= step["max_ms"]
    assert step["hub_rss_mib"] > 0
    # Whether 20 booths count depends on the p99 alone; the bench must say so consistently.
    within = step["p99_ms"] < report["p99_limit_ms"]
    assert report["capacity_booths"] == (20 if within else 0)
    assert report["stop_reason"] == ("max_booths" if within else "p99")
