"""A simulated blood-pressure cycle: cuff-pressure updates per second reaching the caller.

The SunTech-style module is polled for cuff pressure during inflation and
deflation (PROTOCOLS.md); the figure is how many updates a subscriber of the
production driver receives per second of cycle, over a real pseudo-terminal,
at the driver's default poll interval and at the emulator's real pace.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from devices.events import Reading
from devices.nibp import BloodPressureMonitor
from devices.simulators.base import PtyRunner
from devices.simulators.nibp import NibpFirmware

CYCLES = 2


async def _cycle(port: str) -> dict[str, Any]:
    nibp = BloodPressureMonitor(port)
    stamps: list[float] = []

    async def collect() -> None:
        async with nibp.events() as events:
            async for event in events:
                if isinstance(event, Reading) and event.kind == "cuff_pressure":
                    stamps.append(time.monotonic())

    async with nibp:
        await nibp.wait_connected(5)
        collector = asyncio.create_task(collect())
        await asyncio.sleep(0)
        started = time.monotonic()
        await nibp.measure()
        seconds = time.monotonic() - started
        collector.cancel()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "cycle_seconds": round(seconds, 2),
        "updates": len(stamps),
        "updates_per_second": round(len(stamps) / seconds, 2),
        "gap_p50_ms": round(statistics.median(gaps) * 1000, 1) if gaps else None,
        "gap_max_ms": round(max(gaps) * 1000, 1) if gaps else None,
    }


async def _measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        runner = PtyRunner(lambda: NibpFirmware("normal"), link=str(Path(tmp) / "nibp"))
        runner.plug()
        try:
            cycles = [await _cycle(runner.port) for _ in range(CYCLES)]
        finally:
            runner.close()
    return {
        "poll_interval_s": 0.2,
        "cycles": cycles,
        "updates_per_second_mean": round(statistics.fmean(c["updates_per_second"] for c in cycles), 2),
    }


def run() -> dict[str, Any]:
    return asyncio.run(_measure())
