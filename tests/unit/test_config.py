"""The peripheral configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices import config
from devices.config import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "devices" / "peripherals.example.toml"


def test_documented_example_loads_every_role() -> None:
    loaded = config.load(EXAMPLE)
    assert set(loaded.serial) == {"oximeter", "nibp", "thermometer"}
    assert set(loaded.cameras) == {"otoscope", "dermatoscope", "booth_camera"}
    assert set(loaded.audio) == {"stethoscope", "microphone"}
    assert loaded.serial["oximeter"].protocol == "contec-cms50"
    assert loaded.serial["oximeter"].port.startswith("/dev/serial/by-id/")
    assert loaded.cameras["otoscope"].stream_size == (1280, 720)
    assert loaded.audio["stethoscope"].device.startswith("hw:")


def test_protocol_defaults_to_the_roles_first() -> None:
    loaded = config.parse({"nibp": {"port": "/dev/serial/by-id/x"}})
    assert loaded.serial["nibp"].protocol == "suntech-nibp"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"toaster": {"port": "/dev/x"}}, "unknown peripheral"),
        ({"oximeter": {"protocol": "contec-cms50"}}, "'port'"),
        ({"oximeter": {"port": "/dev/x", "protocol": "nonin"}}, "protocol must be one of"),
        ({"otoscope": {"device": "/dev/v", "stream_size": [1280]}}, "stream_size"),
        ({"otoscope": {"device": "/dev/v", "fps": 0}}, "fps"),
        ({"stethoscope": {"device": "hw:0", "sample_rate": True}}, "sample_rate"),
        ({"oximeter": "port"}, "must be a table"),
    ],
)
def test_bad_configuration_is_a_clear_error(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        config.parse(raw)  # type: ignore[arg-type]


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[oximeter\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)
