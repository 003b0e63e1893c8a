"""The hub's [ice] settings and the ICE servers it hands to the console (GET /api/config)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from hub.accounts import opaque
from hub.config import ConfigError, HubConfig, load_config
from hub.doctor_api import ice_servers


def test_ice_section_of_the_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        "[ice]\n"
        'urls = ["stun:stun.example.org", "turn:turn.example.org:3478?transport=tcp", "turns:[2001:db8::1]:5349"]\n'
        'turn_secret = "s3cret"\nturn_ttl = 3600\nrelay_only = true\n'
    )
    config = load_config(path)
    assert config.ice_urls == (
        "stun:stun.example.org",
        "turn:turn.example.org:3478?transport=tcp",
        "turns:[2001:db8::1]:5349",
    )
    assert (config.turn_secret, config.turn_ttl, config.relay_only) == ("s3cret", 3600, True)
    assert "s3cret" not in repr(config)
    defaults = load_config(None)
    assert (defaults.ice_urls, defaults.turn_secret, defaults.relay_only) == ((), "", False)


@pytest.mark.parametrize(
    ("toml", "complaint"),
    [
        ('urls = ["http://turn.example.org"]', "not a stun:, turn: or turns: URL"),
        ('urls = ["stun:stun.example.org?transport=udp"]', "not a stun:"),
        ('urls = ["turn:turn.example.org:70000"]', "not a stun:"),
        ('urls = ["turn:turn example.org"]', "not a stun:"),
        ('urls = ["turn:turn.example.org"]', "turn_secret is needed"),
        ('urls = ["stun:stun.example.org"]\nrelay_only = true', "relay_only needs"),
        ('urls = ["turn:t.example.org"]\nturn_secret = "s"\nturn_ttl = 0', "turn_ttl"),
        ('relay_only = "yes"', "true or false"),
        ("turn_ttl = 1.5", "integer"),
        ("urls = 'stun:x'", "list of strings"),
        ("stun = ['stun:x']", "unknown setting ice.stun"),
    ],
)
def test_ice_settings_are_checked(tmp_path: Path, toml: str, complaint: str) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(f"[ice]\n{toml}\n")
    with pytest.raises(ConfigError, match=complaint):
        load_config(path)


def test_ice_servers_for_the_console() -> None:
    assert ice_servers(HubConfig(), "dr.a", 1_700_000_000.0) == []
    config = HubConfig(
        ice_urls=("stun:a.example.org", "turn:b.example.org", "turns:b.example.org:443?transport=tcp"),
        turn_secret="shared",
        turn_ttl=900,
    )
    stun, turn = ice_servers(config, "dr.a", 1_700_000_000.7)
    assert stun == {"urls": ["stun:a.example.org"]}
    assert turn["urls"] == ["turn:b.example.org", "turns:b.example.org:443?transport=tcp"]
    # coturn logs usernames: the account appears as its audit pseudonym only.
    assert turn["username"] == f"1700000900:{opaque('dr.a')}"
    assert "dr.a" not in turn["username"]
    digest = hmac.new(b"shared", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()
    only_stun = HubConfig(ice_urls=("stun:a.example.org",))
    assert ice_servers(only_stun, "dr.a", 0.0) == [{"urls": ["stun:a.example.org"]}]
