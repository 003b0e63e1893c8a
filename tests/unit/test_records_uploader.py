"""The uploader's pure parts and ``kiosk records status``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from kiosk.records.cli import add_commands, main, spool_status
from kiosk.records.spool import RecordsWriter, Spool
from kiosk.records.uploader import backoff_delay, records_url


@pytest.mark.parametrize(
    ("hub", "url"),
    [
        ("wss://localhost:8444/ws", "https://localhost:8444"),
        ("https://127.0.0.1:9000", "https://127.0.0.1:9000"),
        ("wss://[::1]:8444/ws", "https://[::1]:8444"),
    ],
)
def test_records_url(hub: str, url: str) -> None:
    assert records_url(hub) == url


@pytest.mark.parametrize("hub", ["ws://localhost:8444/ws", "http://x", "localhost:8444", "https://"])
def test_records_url_wants_tls(hub: str) -> None:
    with pytest.raises(ValueError, match="wss"):
        records_url(hub)


@given(st.integers(min_value=1, max_value=10_000))
def test_backoff_grows_is_capped_and_jittered(failures: int) -> None:
    delay = backoff_delay(failures, first=0.5, cap=60)
    base = min(60, 0.5 * 2 ** min(30, failures - 1))
    assert base / 2 <= delay <= base


def test_backoff_spreads_booths_apart() -> None:
    assert len({backoff_delay(6) for _ in range(20)}) > 10


def test_status_counts_without_opening(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    writer = RecordsWriter(
        Spool(tmp_path / "records"), X25519PrivateKey.generate().public_key(), "booth-0001", clock=lambda: 1000.0
    )
    writer.write("reading", b"x" * 10, {})
    writer.write("still", b"y" * 5000, {})
    writer.spool.reject(writer.spool.pending()[0])
    status = spool_status(tmp_path, now=1060.0)
    assert status["pending"] == 1 and status["rejected"] == 1 and status["kinds"] == {"still": 1}
    assert status["oldest_age_s"] == 60.0 and int(str(status["pending_bytes"])) > 5000
    assert main(["status", "--state", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == 1
    parser = argparse.ArgumentParser(prog="kiosk")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["records", "status", "--state", str(tmp_path / "empty")])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == {
        "pending": 0,
        "pending_bytes": 0,
        "kinds": {},
        "oldest_age_s": None,
        "rejected": 0,
    }
