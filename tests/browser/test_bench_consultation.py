"""The consultation bench's machinery at a tiny size: a real hub, a real ``kiosk-booth``, the console in Chromium.

Two calls, a handful of stamped frames (at 640x360 the stamp wraps onto two rows of squares), two reads
and two camera selections. No timing assertions: only the report's shape, and that every stamped frame
the page read verified.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import consultation

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not Path(consultation.CHROMIUM).exists(), reason="Debian's chromium is not installed"),
    pytest.mark.skipif(shutil.which("certutil") is None, reason="certutil (libnss3-tools) is not installed"),
]


def _percentiles(section: dict[str, object], *names: str) -> None:
    for name in (*names, "mean_ms", "max_ms"):
        assert isinstance(section[name], int | float), name
    assert isinstance(section["samples"], int)


def test_consultation_bench_runs_tiny() -> None:
    report = consultation.run(
        calls=2,
        frames=8,
        steady_seconds=1,
        idle_seconds=0.5,
        warmup_seconds=0.5,
        reads=2,
        selects=2,
        video_size="640x360",
        fps=15,
    )

    assert json.loads(json.dumps(report)) == report  # what the bench prints
    assert report["bench"] == "consultation"
    assert report["video"] == {"size": "640x360", "fps": 15}

    setup = report["call_setup"]
    assert setup["samples"] == 2
    _percentiles(setup, "p50_ms", "p90_ms")
    _percentiles(setup["to_track"], "p50_ms", "p90_ms")
    assert setup["first_frame_sizes"] == ["640x360"]

    glass = report["glass_to_glass"]
    assert glass["samples"] == 8
    _percentiles(glass, "p50_ms", "p90_ms", "p99_ms")
    _percentiles(glass["expected_display"], "p50_ms", "p99_ms")
    assert glass["undecodable"] == 0  # every frame the page read carried a valid stamp
    assert set(glass["sizes"]) == {"640x360"}

    steady = report["steady"]
    for mid in ("mid0", "mid1"):
        stream = steady[mid]
        assert stream is not None, mid
        assert stream["resolution"] == "640x360"
        assert stream["samples"] >= 1
        assert isinstance(stream["fps_from_frames_decoded"], int | float)

    cpu = report["booth_cpu"]
    assert cpu["video_streams"] == 2
    for key in ("idle_percent", "call_percent", "per_video_stream_percent"):
        assert isinstance(cpu[key], int | float), key
    for window in ("machine_idle_window", "machine_call_window"):
        assert set(cpu[window]) == {"bench_processes", "machine", "others"}
    assert cpu["idle_percent"] > 0  # the cameras run while the patient waits

    temperature = report["commands"]["thermometer.read"]
    assert temperature["samples"] == 2
    _percentiles(temperature, "p50_ms", "p90_ms")
    _percentiles(temperature["round_trip"], "p50_ms", "p90_ms")
    assert temperature["device"]["samples"] == 2
    camera = report["commands"]["camera.select"]
    assert camera["samples"] == 2
    _percentiles(camera, "p50_ms", "p90_ms")
