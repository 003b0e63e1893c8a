"""The usbguard step: rules usbguard-rule-parser accepts; mass storage blocked first and refused in configuration."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.core import EnsurePackages, SystemdUnitState, Target, WriteFile
from provisioning.errors import ConfigError
from provisioning.steps import usbguard
from tests.provisioning.conftest import make_config
from tests.provisioning.policy_support import written

PERIPHERALS: dict[str, Any] = {
    "allow": [
        {"name": "Oximeter cable (CP2102)", "id": "10c4:ea60", "interfaces": ["ff:00:00"]},
        {"name": "NIBP module (FT232R)", "id": "0403:6001", "interfaces": ["ff:ff:ff"], "serial": "A10K1234"},
        {"name": "Otoscope (UVC)", "id": "0C45:6366", "interfaces": ["0e:01:00", "0e:02:00"]},
        {"name": "Stethoscope (USB audio)", "id": "1b3f:2008", "interfaces": ["01:01:00", "01:02:00", "03:00:00"]},
        {"name": "Card reader (CCID)", "id": "08e6:3437", "interfaces": ["0b:00:00"]},
        {"name": "Touchscreen", "id": "0eef:0001", "interfaces": ["03:*:*"]},
    ]
}


def rule_parser(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["usbguard-rule-parser", *args], capture_output=True, text=True, check=False)


def test_every_rule_and_the_whole_file_pass_the_rule_parser(tmp_path: Path) -> None:
    settings = usbguard.parse_settings(PERIPHERALS)
    rules = usbguard.rules(settings)
    assert len(rules) == 2 + len(PERIPHERALS["allow"])
    for rule in rules:
        result = rule_parser(rule)
        assert result.returncode == 0, (rule, result.stderr)
    path = tmp_path / "rules.conf"
    path.write_text(usbguard.render_rules(settings))
    result = rule_parser("-f", str(path))
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr


def test_the_parser_is_a_real_check() -> None:
    assert rule_parser("allow id 10c4:ea60 with-interface equals { ff:00 }").returncode != 0


def test_mass_storage_is_blocked_before_any_allow_rule() -> None:
    rules = usbguard.rules(usbguard.parse_settings(PERIPHERALS))
    assert rules[0] == "block with-interface one-of { 08:*:* }"
    assert all(rule.startswith("allow ") for rule in rules[1:])
    assert "allow id 0c45:6366 with-interface equals { 0e:01:00 0e:02:00 }" in rules
    assert 'allow id 0403:6001 serial "A10K1234" with-interface equals { ff:ff:ff }' in rules
    assert "allow with-interface equals { 09:00:* }" in rules
    no_hubs = usbguard.rules(usbguard.parse_settings({"allow_hubs": False}))
    assert no_hubs == ["block with-interface one-of { 08:*:* }"]


@pytest.mark.parametrize("interface", ["08:06:50", "08:*:*", "*:*:*", "*:00:00"])
def test_a_configuration_allowing_mass_storage_is_refused(interface: str) -> None:
    table = {"allow": [{"name": "USB stick", "id": "0781:5581", "interfaces": ["03:00:00", interface]}]}
    with pytest.raises(usbguard.MassStorageRefused) as raised:
        usbguard.parse_settings(table)
    assert raised.value.key == "usbguard.allow[0].interfaces[1]"
    assert isinstance(raised.value, ConfigError)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"allow": [{"id": "10c4:ea60", "interfaces": ["ff:00:00"]}]}, "usbguard.allow[0].name"),
        ({"allow": [{"name": "x", "id": "10c4", "interfaces": ["ff:00:00"]}]}, "usbguard.allow[0].id"),
        ({"allow": [{"name": "x", "id": "10c4:ea60", "interfaces": []}]}, "usbguard.allow[0].interfaces"),
        ({"allow": [{"name": "x", "id": "10c4:ea60", "interfaces": ["ff:*:00"]}]}, "usbguard.allow[0].interfaces[0]"),
        ({"allow": [{"name": "x", "id": "10c4:ea60", "interfaces": ["ff"], "hash": "y"}]}, "usbguard.allow[0].hash"),
        (
            {"allow": [{"name": 'a"b', "id": "10c4:ea60", "interfaces": ["ff:00:00"], "serial": 'x" y'}]},
            "usbguard.allow[0].serial",
        ),
        ({"allow_hub": True}, "usbguard.allow_hub"),
        ({"allow": "10c4:ea60"}, "usbguard.allow"),
    ],
)
def test_bad_values_name_their_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        usbguard.parse_settings(table)
    assert raised.value.key == key


def test_daemon_configuration() -> None:
    conf = usbguard.render_daemon_conf()
    values = dict(line.split("=", 1) for line in conf.splitlines() if line and not line.startswith("#"))
    assert values["ImplicitPolicyTarget"] == "block"
    assert values["PresentDevicePolicy"] == "apply-policy"
    assert values["InsertedDevicePolicy"] == "apply-policy"
    assert values["AuthorizedDefault"] == "none"
    assert values["RuleFile"] == usbguard.RULES
    assert values["IPCAllowedUsers"] == "root"
    assert values["IPCAllowedGroups"] == ""
    # Every key is one the installed daemon documents in its own configuration file.
    shipped = Path("/etc/usbguard/usbguard-daemon.conf").read_text()
    for key in values:
        assert f"{key}=" in shipped, key


def test_step_changes(target: Target) -> None:
    changes = usbguard.STEP.changes(make_config(usbguard=PERIPHERALS), target)
    assert changes[0] == EnsurePackages(("usbguard",))
    assert written(changes, usbguard.RULES).decode() == usbguard.render_rules(usbguard.parse_settings(PERIPHERALS))
    assert all(c.mode == 0o600 for c in changes if isinstance(c, WriteFile))
    assert SystemdUnitState("usbguard.service", "enabled") in changes
    plugdev = target.path(usbguard.PLUGDEV_ACCESS)
    plugdev.parent.mkdir(parents=True)
    plugdev.write_text("Devices=modify,list,listen\n")
    for change in changes[1:4]:
        change.apply(target)
        assert change.is_applied(target)
    assert not plugdev.exists()


_pattern = st.one_of(
    st.from_regex(r"[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{2}:[0-9a-f]{2}:\*", fullmatch=True),
    st.from_regex(r"[0-9a-f]{2}:\*:\*", fullmatch=True),
)


@settings(max_examples=25, deadline=None)
@given(
    device_id=st.from_regex(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{4}", fullmatch=True),
    interfaces=st.lists(_pattern, min_size=1, max_size=5),
    serial=st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)),
)
def test_any_accepted_entry_is_a_rule_the_parser_accepts_and_never_mass_storage(
    device_id: str, interfaces: list[str], serial: str
) -> None:
    entry: dict[str, object] = {"name": "device", "id": device_id, "interfaces": interfaces}
    if serial:
        entry["serial"] = serial
    try:
        settings = usbguard.parse_settings({"allow": [entry]})
    except usbguard.MassStorageRefused:
        assert any(i.startswith("08:") for i in interfaces)
        return
    rule = usbguard.rules(settings)[-1]
    allowed = rule.split("{")[1].split("}")[0].split()
    assert not any(interface.startswith("08:") for interface in allowed)
    result = rule_parser(rule)
    assert result.returncode == 0, (rule, result.stderr)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=12),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["name", "id", "interfaces", "serial", "allow"]), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_settings_parser_never_fails_untyped(value: object) -> None:
    with contextlib.suppress(ConfigError):
        usbguard.parse_settings(value if isinstance(value, dict) else {"allow": [value]})
