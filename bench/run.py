"""Run every benchmark and print one JSON document.

    python -m bench.run [NAME ...]

NAME picks benchmarks by module name (``parsers``, ``oximeter_latency``,
``nibp_cycle``, ``card``, ``hub_capacity``, ``consultation``, ``patient_app``,
``units``, ``provision``); none means all.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from typing import Any

BENCHMARKS = (
    "parsers",
    "oximeter_latency",
    "nibp_cycle",
    "card",
    "hub_capacity",
    "consultation",
    "patient_app",
    "units",
    "provision",
)


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "machine": platform.machine()},
    }
    for name in names:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        results[name] = module.run()
        results[name]["bench_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
