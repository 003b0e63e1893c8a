"""The booth configuration loader: typed errors naming the key, fuzzed with hypothesis."""

from __future__ import annotations

import contextlib
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.config import BoothConfig, ConfigError, Table, TurnServer, load_config, parse_config
from provisioning.errors import ProvisionError

EXAMPLE = Path(__file__).parents[2] / "provisioning" / "example.toml"


def test_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.booth_id == "booth-0001"
    assert config.hub_wss_url == "wss://hub.example.org:8444/ws"
    assert config.hub_https_url == "https://hub.example.org:8443"
    assert config.turn_servers == (
        TurnServer("turn.example.org", 3478, "udp", tls=False),
        TurnServer("turn.example.org", 5349, "tcp", tls=True),
    )
    assert config.source == EXAMPLE


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"booth": {"id": "booth-0001"}, "hub": {"host": "hub.example.org"}}
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        document.setdefault(section, {})[key] = value
    return document


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"booth__id": "Booth_1"}, "booth.id"),
        ({"booth__id": 7}, "booth.id"),
        ({"booth__name": "x"}, "booth.name"),
        ({"hub__host": "bad host"}, "hub.host"),
        ({"hub__booth_port": 0}, "hub.booth_port"),
        ({"hub__https_port": True}, "hub.https_port"),
        ({"network__dns": ["dns.example.org"]}, "network.dns"),
        ({"network__dns": "9.9.9.9"}, "network.dns"),
        ({"network__ntp": ["-bad-"]}, "network.ntp"),
        ({"network__turn": ["stun:turn.example.org"]}, "network.turn"),
        ({"network__turn": ["turns:turn.example.org?transport=udp"]}, "network.turn"),
        ({"network__turn": ["turn:turn.example.org:70000"]}, "network.turn"),
    ],
)
def test_bad_values_name_their_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_document(**changes))
    assert caught.value.key == key


def test_required_keys_and_tables() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"hub": {"host": "hub"}})
    assert caught.value.key == "booth.id"
    with pytest.raises(ConfigError) as caught:
        parse_config({"booth": {"id": "b"}})
    assert caught.value.key == "hub.host"
    with pytest.raises(ConfigError) as caught:
        parse_config({**_document(), "sysctl": 3})
    assert caught.value.key == "sysctl"


def test_steps_get_their_own_table() -> None:
    config = parse_config(_document(sysctl__extra={"kernel.x": 1}))
    assert config.section("sysctl") == {"extra": {"kernel.x": 1}}
    assert config.section("absent") == {}
    table = config.table("sysctl")
    with pytest.raises(ConfigError) as caught:
        table.done()
    assert caught.value.key == "sysctl.extra"


def test_table_accessors() -> None:
    table = Table("t", {"flag": "yes", "n": 5, "names": ["a", 1], "mode": "x"})
    with pytest.raises(ConfigError, match=r"t\.flag: must be true or false"):
        table.boolean("flag", False)
    with pytest.raises(ConfigError, match="between 0 and 3"):
        table.integer("n", 0, minimum=0, maximum=3)
    with pytest.raises(ConfigError, match="list of strings"):
        table.strings("names")
    with pytest.raises(ConfigError, match="one of a, b"):
        table.choice("mode", "a", ("a", "b"))
    assert table.string("missing", "default") == "default"


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[booth\nid=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[booth]")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(binary)


_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=30),
    st.sampled_from(["booth-0001", "hub.example.org", "192.0.2.1", "::1", "turn:t.example.org", "9.9.9.9"]),
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8)
_keys = st.sampled_from(["id", "host", "booth_port", "https_port", "dns", "ntp", "turn", "other"])
_tables = st.dictionaries(_keys, _values, max_size=5)
_documents = st.dictionaries(st.sampled_from(["booth", "hub", "network", "sysctl"]), _tables, max_size=4)


@given(_documents)
def test_any_document_gives_a_config_or_a_config_error(document: dict[str, Any]) -> None:
    try:
        config: BoothConfig | ProvisionError = parse_config(document)
    except ConfigError as exc:
        config = exc
    if isinstance(config, BoothConfig):
        assert config.hub_https_url.startswith("https://")
    else:
        assert isinstance(config, ConfigError)
        assert config.reason


@given(st.text(alphabet=string.printable + "éλ\x00", max_size=200))
def test_any_text_gives_a_config_or_a_config_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "booth.toml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(ConfigError):
        assert isinstance(load_config(path), BoothConfig)


@given(st.text(max_size=60))
def test_turn_urls_parse_or_fail_typed(url: str) -> None:
    try:
        server: TurnServer | ConfigError = TurnServer.parse("network.turn", url)
    except ConfigError as exc:
        server = exc
    if isinstance(server, ConfigError):
        assert server.key == "network.turn"
    else:
        assert 1 <= server.port <= 65535
        assert server.transport in ("udp", "tcp")
