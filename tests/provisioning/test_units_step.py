"""The units step on a temporary root: unit files, kiosk.env, enable symlinks; then the real
``systemd-analyze verify`` on what it installed, and idempotence."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import units as unit_tools
from provisioning.config import ConfigError
from provisioning.core import Target, apply, plan
from provisioning.steps import by_name
from provisioning.steps.units import BOOTH_UNITS, DEFAULT_SOURCE, STEP, UnitsSettings, environment

from .conftest import make_config


@pytest.fixture
def booth_root(root: Path) -> Path:
    # The kiosk user is the session step's; the units name it.
    with (root / "etc/passwd").open("a") as handle:
        handle.write("kiosk:x:999:999::/var/lib/kiosk:/usr/sbin/nologin\n")
    with (root / "etc/group").open("a") as handle:
        handle.write("kiosk:x:999:\n")
    return root


def test_step_is_registered() -> None:
    assert by_name(["units"]) == (STEP,)


def test_installs_units_and_environment_then_enables(booth_root: Path) -> None:
    target = Target(booth_root)
    config = make_config(hub={"host": "hub.example.org", "booth_port": 9444, "https_port": 9443})

    applied = apply([STEP], config, target)

    assert [pending.change.describe() for pending in applied][-3:] == [
        "enable kiosk-app.service",
        "enable kiosk-uploader.service",
        "enable kiosk-renew.timer",
    ]
    for unit in BOOTH_UNITS:
        installed = booth_root / "etc/systemd/system" / unit
        assert installed.read_bytes() == (DEFAULT_SOURCE / unit).read_bytes()
        assert installed.stat().st_mode & 0o777 == 0o644
    assert not (booth_root / "etc/systemd/system/kiosk-hub.service").exists()  # the hub is not a booth's
    env = (booth_root / "etc/kiosk/kiosk.env").read_text().splitlines()
    assert "KIOSK_HUB=wss://hub.example.org:9444/ws" in env
    assert "KIOSK_HUB_HTTPS=https://hub.example.org:9443" in env
    assert "KIOSK_BOOTH_ID=booth-0001" in env
    assert "KIOSK_STATE=/var/lib/kiosk" in env
    wants = {
        "graphical.target.wants/kiosk-app.service",
        "multi-user.target.wants/kiosk-uploader.service",
        "timers.target.wants/kiosk-renew.timer",
    }
    for link in wants:
        path = booth_root / "etc/systemd/system" / link
        assert os.readlink(path) == "/etc/systemd/system/" + link.split("/")[1]
    assert not (booth_root / "etc/systemd/system/multi-user.target.wants/kiosk-renew.service").exists()
    assert plan([STEP], config, target) == []  # a second run changes nothing


def test_installed_units_verify_in_the_provisioned_root(booth_root: Path) -> None:
    apply([STEP], make_config(), Target(booth_root))
    # What the packages step and the image would add: systemd's own units and the commands.
    shutil.copytree(unit_tools.HOST_UNITS, booth_root / "usr/lib/systemd/system", symlinks=True)
    (booth_root / "usr/bin").mkdir()
    shutil.copy2("/usr/bin/cage", booth_root / "usr/bin/cage")
    shutil.copy2("/usr/bin/env", booth_root / "usr/bin/env")  # coreutils: kiosk-app's ExecStart sets cage's runtime dir
    for program in ("kiosk-app", "kiosk-uploader", "kiosk-enrol"):
        stub = booth_root / "opt/kiosk/venv/bin" / program
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)

    result = unit_tools.verify(booth_root, list(BOOTH_UNITS))

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_drift_is_reported_and_repaired(booth_root: Path) -> None:
    target = Target(booth_root)
    config = make_config()
    apply([STEP], config, target)
    unit = booth_root / "etc/systemd/system/kiosk-app.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivileges=no"))
    (booth_root / "etc/systemd/system/timers.target.wants/kiosk-renew.timer").unlink()

    drift = [pending.describe() for pending in plan([STEP], config, target)]

    assert drift == [
        "units: write /etc/systemd/system/kiosk-app.service (0644 root:root, "
        f"{len((DEFAULT_SOURCE / 'kiosk-app.service').read_bytes())} bytes)",
        "units: enable kiosk-renew.timer",
    ]
    apply([STEP], config, target)
    assert plan([STEP], config, target) == []


def test_hub_machine_gets_the_hub_unit(booth_root: Path) -> None:
    with (booth_root / "etc/passwd").open("a") as handle:
        handle.write("kiosk-hub:x:998:998::/var/lib/kiosk-hub:/usr/sbin/nologin\n")
    config = make_config(units={"enable": ["kiosk-hub.service"]})

    apply([STEP], config, Target(booth_root))

    assert (booth_root / "etc/systemd/system/multi-user.target.wants/kiosk-hub.service").is_symlink()
    assert not (booth_root / "etc/systemd/system/graphical.target.wants/kiosk-app.service").exists()


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"enable": ["sshd.service"]}, "units.enable"),
        ({"enable": "kiosk-app.service"}, "units.enable"),
        ({"source": "systemd"}, "units.source"),
        ({"enabled": []}, "units.enabled"),
    ],
)
def test_bad_settings_name_their_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        UnitsSettings.from_config(make_config(units=table))
    assert raised.value.key == key


def test_a_source_without_the_units_is_a_config_error(booth_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no kiosk-app\.service"):
        STEP.changes(make_config(units={"source": str(tmp_path)}), Target(booth_root))


@given(enable=st.lists(st.text(max_size=30), max_size=5))
def test_any_enable_list_is_accepted_only_with_known_units(enable: list[str]) -> None:
    known = {*BOOTH_UNITS, "kiosk-hub.service"}
    if set(enable) <= known:
        assert set(UnitsSettings.from_config(make_config(units={"enable": enable})).enable) == set(enable)
    else:
        with pytest.raises(ConfigError) as raised:
            UnitsSettings.from_config(make_config(units={"enable": enable}))
        assert raised.value.key == "units.enable"


def test_environment_file_has_no_line_a_shell_or_systemd_would_split() -> None:
    for line in environment(make_config()).decode().splitlines():
        assert line.startswith("#") or (line.count("=") == 1 and " " not in line)
