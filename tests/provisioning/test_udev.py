"""The udev step: rules udevadm reads without a complaint, roles set before they are used, the repo copy in sync."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.core import SystemdUnitState, Target
from provisioning.errors import ConfigError
from provisioning.steps import udev
from tests.provisioning.conftest import make_config
from tests.provisioning.policy_support import private_mounts, quote, written

REPO_RULES = Path(__file__).parents[2] / "systemd" / "70-kiosk-peripherals.rules"

ROLES: dict[str, Any] = {
    "serial": [
        {"role": "oximeter", "id": "10c4:ea60"},
        {"role": "nibp", "id": "0403:6001", "serial": "A10K1234"},
        {"role": "thermometer", "id": "2341:8036"},
    ],
    "camera": [{"role": "otoscope", "id": "0c45:6366"}, {"role": "booth_camera", "id": "046d:0825"}],
    "sound": [{"role": "stethoscope", "id": "1b3f:2008"}, {"role": "microphone", "id": "0d8c:0014", "card": "Mic"}],
}


def udevadm_complaints(rules: str, tmp_path: Path) -> list[str]:
    """What ``udevadm test`` says about these rules, read as the only rules on a scratch /dev and /run."""
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    (rules_dir / "70-kiosk-peripherals.rules").write_text(rules)
    group = tmp_path / "group"
    group.write_text(Path("/etc/group").read_text() + "kiosk:x:990:\n")
    script = (
        f"mount --bind {quote(rules_dir)} /etc/udev/rules.d && mount --bind {quote(group)} /etc/group && "
        "mount -t tmpfs none /usr/lib/udev/rules.d && mount -t tmpfs none /dev && "
        "udevadm test --action=add /sys/class/tty/tty0"
    )
    result = private_mounts(script)
    assert "Reading rules file: /etc/udev/rules.d/70-kiosk-peripherals.rules" in result.stdout + result.stderr
    return [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "70-kiosk-peripherals.rules" in line and not line.startswith("Reading rules file")
    ]


def test_udevadm_reads_the_rules_without_a_complaint(tmp_path: Path) -> None:
    rules = udev.render_rules(udev.parse_settings(ROLES))
    assert udevadm_complaints(rules, tmp_path) == []


def test_udevadm_check_is_a_real_check(tmp_path: Path) -> None:
    assert udevadm_complaints('SUBSYSTEM=="tty", ATTRX{idVendor}=="10c4"\n', tmp_path) != []


def test_the_repository_copy_is_the_rendering_of_an_empty_table() -> None:
    assert REPO_RULES.read_text() == udev.render_rules(udev.UdevSettings())


def test_roles_are_set_before_the_rules_that_use_them() -> None:
    lines = udev.render_rules(udev.parse_settings(ROLES)).splitlines()
    setting = [i for i, line in enumerate(lines) if re.search(r'ENV\{KIOSK_ROLE\}="[a-z]', line)]
    using = [i for i, line in enumerate(lines) if 'ENV{KIOSK_ROLE}=="?*"' in line]
    assert len(setting) == 7
    assert max(setting) < min(using)
    text = "\n".join(lines)
    assert (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", ATTRS{serial}=="A10K1234", '
        'ENV{KIOSK_ROLE}="nibp"'
    ) in text
    assert 'ATTRS{idProduct}=="6366", ATTR{index}=="0", ENV{KIOSK_ROLE}="otoscope"' in text
    assert 'ATTR{id}="Stethoscope", ENV{KIOSK_ROLE}="stethoscope"' in text
    assert 'ATTR{id}="Mic", ENV{KIOSK_ROLE}="microphone"' in text
    # A serial adapter the project does not know yet still gets ModemManager kept off it.
    assert re.search(r'ATTRS\{idVendor\}=="2341", ATTRS\{idProduct\}=="8036", ENV\{ID_MM_DEVICE_IGNORE\}="1"', text)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"serial": [{"role": "otoscope", "id": "0c45:6366"}]}, "udev.serial[0].role"),
        ({"camera": [{"role": "otoscope", "id": "0c45"}]}, "udev.camera[0].id"),
        ({"serial": [{"role": "nibp", "id": "0403:6001", "serial": 'x", RUN+="/bin/sh'}]}, "udev.serial[0].serial"),
        ({"sound": [{"role": "stethoscope", "id": "1b3f:2008", "card": "9lives"}]}, "udev.sound[0].card"),
        ({"camera": [{"role": "otoscope", "id": "0c45:6366", "card": "X"}]}, "udev.camera[0].card"),
        ({"usb": []}, "udev.usb"),
        (
            {"camera": [{"role": "otoscope", "id": "0c45:6366"}, {"role": "otoscope", "id": "0c45:6367"}]},
            "udev",
        ),
    ],
)
def test_bad_values_name_their_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        udev.parse_settings(table)
    assert raised.value.key == key


def test_step_changes(target: Target) -> None:
    changes = udev.STEP.changes(make_config(udev=ROLES), target)
    assert written(changes, udev.RULES).decode() == udev.render_rules(udev.parse_settings(ROLES))
    assert SystemdUnitState("ModemManager.service", "masked") in changes
    for change in changes:
        change.apply(target)
    assert all(change.is_applied(target) for change in udev.STEP.changes(make_config(udev=ROLES), target))


_value = st.none() | st.booleans() | st.integers() | st.text(max_size=20)


@given(
    st.dictionaries(
        st.sampled_from(["serial", "camera", "sound", "x"]),
        st.lists(st.dictionaries(st.sampled_from(["role", "id", "serial", "card"]), _value, max_size=4), max_size=3)
        | _value,
        max_size=3,
    )
)
def test_settings_parser_never_fails_untyped_and_quotes_nothing_it_did_not_check(table: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        rules = udev.render_rules(udev.parse_settings(table))
        for line in rules.splitlines():
            if line and not line.startswith("#"):
                # Every value sits inside one pair of quotes: no configured text can add a key (RUN+=...).
                assert line.count('"') % 2 == 0
                assert "RUN" not in line
