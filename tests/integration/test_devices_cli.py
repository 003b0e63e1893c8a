"""``kiosk-devices``: the stable command line, run as a separate process."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.parsers import captures
from devices import cli
from devices.protocols import lu90614, suntech

KIOSK_DEVICES = [sys.executable, "-m", "devices.cli"]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KIOSK_DEVICES, *args], capture_output=True, text=True, timeout=timeout, check=False)


@contextmanager
def simulator(kind: str, link: Path, *extra: str) -> Iterator[str]:
    with subprocess.Popen(
        [*KIOSK_DEVICES, "simulate", kind, "--link", str(link), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            port = proc.stdout.readline().strip()
            assert port == str(link), proc.stderr.read() if proc.stderr else ""
            yield port
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    assert proc.returncode == 0
    assert not link.exists()


# -- decode ------------------------------------------------------------------
@pytest.mark.parametrize("protocol", sorted(cli.PROTOCOLS))
def test_decode_keys_per_protocol(protocol: str) -> None:
    _, data = captures()[protocol]
    out, err = io.StringIO(), io.StringIO()
    frames, skipped = cli.decode(protocol, data[:4000], out, err)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert frames == len(lines) > 10
    # A clean capture cut anywhere: the cut tail waits for more bytes, nothing is skipped.
    assert skipped == 0
    keys = {
        "contec-cms50-legacy": {"spo2", "pulse", "pleth", "finger_out", "probe_error", "searching"},
        "contec-cms50": {"spo2", "pulse", "pleth", "finger_out", "probe_error", "searching"},
        "lu90614": {"celsius"},
    }.get(protocol)
    if keys is not None:
        assert all(set(line) == keys for line in lines)
    else:
        kinds = {frozenset(line) for line in lines}
        assert frozenset({"ack"}) in kinds
        assert frozenset({"cuff_pressure"}) in kinds
        assert frozenset({"systolic", "diastolic", "mean", "pulse", "error_code"}) in kinds


def test_decode_spec_frames_in_order_and_reports_skips(tmp_path: Path) -> None:
    # PROTOCOLS.md: legacy frame, byte 0 only has bit 7; 127 means no value.
    good = bytes([0x85, 0x40, 0x05, 72, 97])
    no_value = bytes([0x90, 0x00, 0x20, 127, 127])
    capture = tmp_path / "capture.bin"
    capture.write_bytes(good + b"\x01\x02" + no_value)
    result = run_cli("decode", "contec-cms50-legacy", str(capture))
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0] == {
        "spo2": 97,
        "pulse": 72,
        "pleth": 64,
        "finger_out": False,
        "probe_error": False,
        "searching": False,
    }
    assert lines[1]["spo2"] is None
    assert lines[1]["pulse"] is None
    assert lines[1]["finger_out"] is True
    assert lines[1]["searching"] is True
    assert "skipped 2 byte(s)" in result.stderr


def test_decode_nibp_and_thermometer_spec_bytes(tmp_path: Path) -> None:
    capture = tmp_path / "nibp.bin"
    capture.write_bytes(suntech.ack_frame("O") + suntech.cuff_pressure_frame(142) + b"\xff")
    result = run_cli("decode", "suntech-nibp", str(capture))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [{"ack": "O"}, {"cuff_pressure": 142}]
    assert "skipped" in result.stderr
    capture.write_bytes(lu90614.reply_frame(36.75))
    result = run_cli("decode", "lu90614", str(capture))
    assert json.loads(result.stdout) == {"celsius": 36.75}


def test_decode_usage_errors(tmp_path: Path) -> None:
    assert run_cli("decode", "nonin", str(tmp_path / "x")).returncode == 2
    missing = run_cli("decode", "lu90614", str(tmp_path / "absent.bin"))
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr


# -- simulate + read / watch ---------------------------------------------------
def test_simulate_then_read_oximeter_both_generations(tmp_path: Path) -> None:
    for kind in ("oximeter", "oximeter-legacy"):
        with simulator(kind, tmp_path / kind) as port:
            result = run_cli("read", "oximeter", "--port", port, "--json", "--timeout", "20")
        assert result.returncode == 0, result.stderr
        reading = json.loads(result.stdout)
        assert 94 <= reading["spo2"] <= 100
        assert 55 <= reading["pulse"] <= 90


def test_simulate_then_read_a_whole_bp_cycle(tmp_path: Path) -> None:
    with simulator("nibp", tmp_path / "nibp", "--scenario", "hypertension", "--speed", "10") as port:
        result = run_cli("read", "nibp", "--port", port, "--json", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    bp = json.loads(result.stdout)
    assert bp["systolic"] >= 140
    assert bp["diastolic"] >= 90
    progress = [json.loads(line)["cuff_pressure"] for line in result.stderr.splitlines()]
    assert max(progress) > bp["systolic"]


def test_nibp_error_code_is_one_line(tmp_path: Path) -> None:
    with simulator("nibp", tmp_path / "nibp", "--scenario", "error-85", "--speed", "10") as port:
        result = run_cli("read", "nibp", "--port", port, "--timeout", "60")
    assert result.returncode == 1
    message = [line for line in result.stderr.splitlines() if line.startswith("kiosk-devices:")]
    assert len(message) == 1
    assert "measurement" in message[0]
    assert "Traceback" not in result.stderr


def test_watch_streams_json_lines(tmp_path: Path) -> None:
    with simulator("thermometer", tmp_path / "thermo", "--scenario", "fever") as port:
        result = run_cli("read", "thermometer", "--port", port, "--json")
        assert result.returncode == 0
        assert json.loads(result.stdout)["celsius"] >= 38.0
    with simulator("oximeter-legacy", tmp_path / "oxi") as port:
        result = run_cli("watch", "oximeter", "--protocol", "contec-cms50-legacy", "--port", port, "--count", "40")
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 40
    assert lines[0] == {**lines[0], "state": "connected"}
    kinds = {line["kind"] for line in lines if "kind" in line}
    assert kinds == {"pleth", "spo2", "pulse"}
    assert {line["state"] for line in lines if "state" in line} <= {"connected", "measuring"}


def test_read_missing_port_and_unknown_scenario(tmp_path: Path) -> None:
    result = run_cli("read", "thermometer", "--port", str(tmp_path / "absent"), "--timeout", "30")
    assert result.returncode == 1
    assert result.stderr.strip() == f"kiosk-devices: not_found: no device at {tmp_path / 'absent'}"
    bad = run_cli("simulate", "nibp", "--scenario", "volcano")
    assert bad.returncode == 2
    assert "volcano" in bad.stderr


def test_simulate_camera_and_stethoscope_then_read(tmp_path: Path) -> None:
    with simulator("otoscope", tmp_path / "otoscope.avi") as path:
        result = run_cli("read", "otoscope", "--port", path, "--json", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    still = json.loads(result.stdout)
    assert (still["width"], still["height"]) == (1920, 1080)
    assert os.path.getsize(still["path"]) > 10_000
    with simulator("stethoscope", tmp_path / "heart.wav") as path:
        result = run_cli("read", "stethoscope", "--port", path, "--json", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    sound = json.loads(result.stdout)
    assert sound["samples"] >= sound["sample_rate"] > 0
