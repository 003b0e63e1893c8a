"""The apparmor step: a profile apparmor_parser compiles, in enforce mode, that denies what the app must never do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioning.core import Command, EnsurePackages, RemovePath, SystemdUnitState, Target
from provisioning.errors import ConfigError
from provisioning.steps import apparmor
from tests.provisioning.conftest import make_config
from tests.provisioning.policy_support import written


def compile_profile(text: str, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    path = tmp_path / "kiosk-app"
    path.write_text(text)
    # -Q: everything but loading into the kernel; -K: no cache; -S: emit the compiled policy,
    # so the profile is really compiled against the host's abstractions, not only parsed.
    return subprocess.run(
        ["apparmor_parser", "-Q", "-K", "-S", "--base", "/etc/apparmor.d", str(path)],
        capture_output=True,
        check=False,
    )


def test_the_profile_compiles(tmp_path: Path) -> None:
    result = compile_profile(apparmor.render_profile(), tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout) > 1000  # the compiled policy


def test_the_compile_is_a_real_check(tmp_path: Path) -> None:
    broken = apparmor.render_profile().replace("network inet stream,", "network inet stram,")
    assert compile_profile(broken, tmp_path).returncode != 0


def test_complain_mode_compiles_too(tmp_path: Path) -> None:
    profile = apparmor.render_profile(apparmor.AppArmorSettings(enforce=False))
    assert "flags=(complain)" in profile
    assert compile_profile(profile, tmp_path).returncode == 0


def test_enforce_mode_and_what_it_allows_and_denies() -> None:
    profile = apparmor.render_profile()
    header = next(line for line in profile.splitlines() if line.startswith("profile "))
    assert header == "profile kiosk-app /opt/kiosk/venv/bin/kiosk-app {"  # no flags: enforce mode
    lines = {line.strip() for line in profile.splitlines()}
    for rule in (
        "/opt/kiosk/** r,",
        "owner /var/lib/kiosk/** rwk,",
        "owner /tmp/** rwk,",
        "/dev/video[0-9]* rw,",
        "/dev/snd/* rw,",
        "/dev/ttyUSB[0-9]* rwk,",
        "/dev/ttyACM[0-9]* rwk,",
        "/run/pcscd/pcscd.comm rw,",
        "/run/systemd/notify w,",
        "network inet stream,",
        "network inet6 dgram,",
        "deny /home/** rwmklx,",
        "deny /root/** rwmklx,",
        "deny ptrace,",
        "deny mount,",
        "deny capability,",
    ):
        assert rule in lines, rule
    # Nothing grants writing the venv or the configuration.
    assert not [line for line in lines if line.startswith(("/opt/kiosk", "/etc/kiosk")) and "w" in line.split()[-1]]


def test_layout_is_a_parameter(tmp_path: Path) -> None:
    layout = apparmor.Layout(venv="/srv/k/venv", state="/srv/k/state", config="/srv/k/etc", name="kiosk-app-test")
    profile = apparmor.render_profile(layout=layout)
    assert "profile kiosk-app-test /srv/k/venv/bin/kiosk-app {" in profile
    assert "owner /srv/k/state/** rwk," in profile
    assert compile_profile(profile, tmp_path).returncode == 0


def test_bad_values_name_their_key() -> None:
    with pytest.raises(ConfigError) as raised:
        apparmor.parse_settings({"enforce": "yes"})
    assert raised.value.key == "apparmor.enforce"
    with pytest.raises(ConfigError) as raised:
        apparmor.parse_settings({"mode": "enforce"})
    assert raised.value.key == "apparmor.mode"


def test_step_changes_keep_the_profile_enforced(target: Target, root: Path) -> None:
    disabled = root / "etc/apparmor.d/disable/kiosk-app"
    disabled.parent.mkdir(parents=True)
    disabled.symlink_to("/etc/apparmor.d/kiosk-app")
    changes = apparmor.STEP.changes(make_config(), target)
    assert changes[0] == EnsurePackages(("apparmor",))
    assert written(changes, apparmor.PROFILE).decode() == apparmor.render_profile()
    assert RemovePath("/etc/apparmor.d/disable/kiosk-app") in changes
    assert RemovePath("/etc/apparmor.d/force-complain/kiosk-app") in changes
    assert SystemdUnitState("apparmor.service", "enabled") in changes
    assert not any(isinstance(change, Command) for change in changes)  # nothing to load into a root filesystem
    for change in changes[1:4]:
        change.apply(target)
        assert change.is_applied(target)
    assert not disabled.is_symlink()
