"""Provision a real Debian 12 root filesystem (mmdebstrap, cached) and check it from the inside.

The root starts from ``provisioning.rootfs.packaged_root`` (minimal Debian 12
+ OpenSSH + the booth's packages, built once and cached outside the repo:
about 4 minutes the first time on a 2-core machine, a copy afterwards).
``kiosk-provision --root`` runs on a private copy; then the real tools check
what it wrote, a second run must change nothing and ``--check`` must report
no drift, and Lynis's hardening index must reach 85. The policies steps
(firewall, USBGuard, SSH, AppArmor) are checked with their tools once they are
in the registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioning import lynis, rootfs, steps
from provisioning.config import load_config

pytestmark = pytest.mark.timeout(2400)

REPO = Path(__file__).parents[2]
LYNIS_TARGET = 85


@dataclass(frozen=True)
class Provisioned:
    root: Path
    config: Path
    key_file: Path
    first: dict[str, Any]


def provision(config: Path, root: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "provisioning.cli", "--config", str(config), "--root", str(root), "--json", *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=1800,
        check=False,
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def in_root(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    work = tmp_path_factory.mktemp("provision")
    key_file = work / "journal-verification-key"
    config = work / "booth.toml"
    config.write_text(rootfs.example_config(key_file))
    root = rootfs.copy(rootfs.packaged_root(load_config(config)), work / "root")
    try:
        status, first = provision(config, root)
        assert status == 0, first
        yield Provisioned(root, config, key_file, first)
    finally:
        rootfs.remove(root)


def test_first_run_applies_every_step(provisioned: Provisioned) -> None:
    assert provisioned.first["ok"] is True
    touched = {change["step"] for change in provisioned.first["changes"]}
    assert {"session", "sysctl", "mounts", "journald", "upgrades"} <= touched


def test_second_run_changes_nothing_and_check_reports_no_drift(provisioned: Provisioned) -> None:
    status, second = provision(provisioned.config, provisioned.root)
    assert (status, second["changes"]) == (0, [])
    status, check = provision(provisioned.config, provisioned.root, "--check")
    assert (status, check["drift"]) == (0, False)
    # Drift: someone loosens a sysctl; --check lists it and exits 1, a run repairs it.
    path = provisioned.root / "etc/sysctl.d/60-kiosk-hardening.conf"
    original = path.read_bytes()
    path.write_bytes(original.replace(b"kernel.kptr_restrict = 2", b"kernel.kptr_restrict = 0"))
    status, check = provision(provisioned.config, provisioned.root, "--check")
    assert status == 1
    assert check["changes"] == [
        {
            "step": "sysctl",
            "change": f"write /etc/sysctl.d/60-kiosk-hardening.conf (0644 root:root, {len(original)} bytes)",
        }
    ]
    status, repair = provision(provisioned.config, provisioned.root)
    assert (status, len(repair["changes"])) == (0, 1)
    assert path.read_bytes() == original


def test_kiosk_user_and_session(provisioned: Provisioned) -> None:
    root = provisioned.root
    identity = in_root(root, "id", "kiosk")
    assert identity.returncode == 0
    assert "video" in identity.stdout
    assert in_root(root, "getent", "passwd", "kiosk").stdout.strip().endswith(":/usr/sbin/nologin")
    assert in_root(root, "passwd", "--status", "kiosk").stdout.split()[1] == "L"
    for unit in ("getty@tty1.service", "getty@tty2.service", "getty@tty6.service", "autovt@.service"):
        state = subprocess.run(
            ["systemctl", f"--root={root}", "is-enabled", unit], capture_output=True, text=True, check=False
        )
        assert state.stdout.strip() == "masked", unit
    assert os.readlink(root / "etc/systemd/system/ctrl-alt-del.target") == "/dev/null"


def test_sysctl_values_as_systemd_sysctl_would_apply_them(provisioned: Provisioned) -> None:
    values: dict[str, str] = {}
    for path in sorted((provisioned.root / "etc/sysctl.d").glob("*.conf")):
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith(("#", ";")):
                values[key.strip()] = value.strip()
    expected = {
        "kernel.sysrq": "0",
        "kernel.kptr_restrict": "2",
        "kernel.dmesg_restrict": "1",
        "kernel.unprivileged_bpf_disabled": "1",
        "net.core.bpf_jit_harden": "2",
        "fs.protected_fifos": "2",
        "fs.suid_dumpable": "0",
        "net.ipv4.conf.all.rp_filter": "1",
        "net.ipv4.tcp_syncookies": "1",
    }
    assert {key: values.get(key) for key in expected} == expected


def test_journal_sealing_key_made_in_the_root(provisioned: Provisioned) -> None:
    machine_id = (provisioned.root / "etc/machine-id").read_text().strip()
    assert (provisioned.root / f"var/log/journal/{machine_id}/fss").is_file()
    recorded_id, key = provisioned.key_file.read_text().split()
    assert recorded_id == machine_id
    assert "/" in key and "-" in key
    assert provisioned.key_file.stat().st_mode & 0o777 == 0o600
    assert key.encode() not in b"".join(
        path.read_bytes() for path in (provisioned.root / "etc").rglob("*") if path.is_file() and not path.is_symlink()
    ), "the verification key must not stay on the booth"


def test_apt_configuration_in_the_root(provisioned: Provisioned) -> None:
    dump = in_root(provisioned.root, "apt-config", "dump", "Unattended-Upgrade")
    assert dump.returncode == 0, dump.stderr
    origins = [line for line in dump.stdout.splitlines() if "Origins-Pattern::" in line]
    assert len(origins) == 1
    assert "-security" in origins[0]
    recommends = in_root(provisioned.root, "apt-config", "dump", "APT::Install-Recommends")
    assert 'APT::Install-Recommends "false";' in recommends.stdout


def test_sshd_configuration_is_valid(provisioned: Provisioned) -> None:
    # systemd makes the privilege separation directory at boot (RuntimeDirectory=sshd).
    (provisioned.root / "run/sshd").mkdir(mode=0o755, exist_ok=True)
    result = in_root(provisioned.root, "/usr/sbin/sshd", "-t")
    assert result.returncode == 0, result.stderr


def _registered(name: str) -> bool:
    return any(step.name == name for step in steps.STEPS)


@pytest.mark.skipif(not _registered("firewall"), reason="the firewall step is not in the registry yet")
def test_nftables_ruleset_checks(provisioned: Provisioned) -> None:
    result = in_root(provisioned.root, "nft", "-c", "-f", "/etc/nftables.conf")
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not _registered("usbguard"), reason="the usbguard step is not in the registry yet")
def test_usbguard_policy_parses(provisioned: Provisioned) -> None:
    rules = provisioned.root / "etc/usbguard/rules.conf"
    result = subprocess.run(["usbguard-rule-parser", "-f", str(rules)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not _registered("apparmor"), reason="the apparmor step is not in the registry yet")
def test_apparmor_profiles_parse(provisioned: Provisioned) -> None:
    profiles = [p for p in (provisioned.root / "etc/apparmor.d").glob("*kiosk*") if p.is_file()]
    assert profiles
    for profile in profiles:
        result = subprocess.run(
            ["apparmor_parser", "-Q", "--base", str(provisioned.root / "etc/apparmor.d"), str(profile)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr


def test_lynis_hardening_index(provisioned: Provisioned) -> None:
    result = lynis.audit(provisioned.root)
    assert result.hardening_index >= LYNIS_TARGET, result


def _tiny_wheel(directory: Path) -> Path:
    """A wheel with one console script, ``kiosk-app``: what the project step needs, offline."""
    wheel = directory / "kiosk_dummy-0.1.0-py3-none-any.whl"
    info = "kiosk_dummy-0.1.0.dist-info"
    files = {
        "kiosk_dummy/__init__.py": "def main() -> None:\n    print('kiosk-dummy ok')\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: kiosk-dummy\nVersion: 0.1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\nkiosk-app = kiosk_dummy:main\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return wheel


def test_project_wheel_installed_in_the_venv_once(provisioned: Provisioned, tmp_path: Path) -> None:
    wheel = _tiny_wheel(tmp_path)
    config = tmp_path / "booth.toml"
    text = provisioned.config.read_text()
    for old, new in (
        ("[project]\ninstall = false", "[project]\ninstall = true"),
        ('source = "dist/teleconsult_kiosk-0.1.0-py3-none-any.whl"', f'source = "{wheel}"'),
        ("pip_args = []", 'pip_args = ["--no-index"]'),
    ):
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)
    status, first = provision(config, provisioned.root, "--only", "project")
    assert status == 0, first
    assert [change["step"] for change in first["changes"]] == ["project"]
    result = in_root(provisioned.root, "/opt/kiosk/venv/bin/kiosk-app")
    assert result.stdout.strip() == "kiosk-dummy ok"
    status, again = provision(config, provisioned.root, "--only", "project", "--check")
    assert (status, again["changes"]) == (0, [])
