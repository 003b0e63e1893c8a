"""The policy steps on a real Debian 12 root filesystem, then the real tools run inside it.

The root is the cached one the provisioning tests share (``provisioning.rootfs``:
mmdebstrap, then the booth's packages), copied for this test. SSH is enabled
here, so every kind of change runs: packages, the maintenance user, the host
key generated in the chroot, units enabled through ``systemctl --root``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning import core, rootfs
from provisioning.config import BoothConfig, parse_config
from provisioning.steps import apparmor, firewall, ssh, udev, usbguard

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKl6h6ep288T+sxhpozYAoz1jiCHcNnKKvpbhTdnBfze tech@laptop"
STEPS = (ssh.STEP, firewall.STEP, usbguard.STEP, udev.STEP, apparmor.STEP)


def booth() -> BoothConfig:
    return parse_config(
        {
            "booth": {"id": "booth-0001"},
            "hub": {"host": "hub.example.org"},
            "network": {"dns": ["192.0.2.53"], "ntp": ["192.0.2.123"], "turn": ["turn:turn.example.org:3478"]},
            "ssh": {"enabled": True, "authorized_keys": {"maint": [KEY]}, "allow_from": ["192.0.2.0/24"]},
            "firewall": {"addresses": {"hub.example.org": ["198.51.100.10"], "turn.example.org": ["203.0.113.5"]}},
            "usbguard": {"allow": [{"name": "Oximeter cable", "id": "10c4:ea60", "interfaces": ["ff:00:00"]}]},
            "udev": {"serial": [{"role": "nibp", "id": "0403:6001", "serial": "A10K1234"}]},
        }
    )


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[core.Pending]]]:
    config = booth()
    root = rootfs.copy(rootfs.packaged_root(config), tmp_path_factory.mktemp("chroot") / "root")
    try:
        applied = core.apply(STEPS, config, core.Target(root))
        yield root, applied
    finally:
        rootfs.remove(root)


def in_root(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.timeout(1500)
def test_second_run_changes_nothing(provisioned: tuple[Path, list[core.Pending]]) -> None:
    root, applied = provisioned
    assert {pending.step for pending in applied} == {"ssh", "firewall", "usbguard", "udev", "apparmor"}
    assert core.plan(STEPS, booth(), core.Target(root)) == []


@pytest.mark.timeout(1500)
def test_the_tools_inside_accept_what_was_written(provisioned: tuple[Path, list[core.Pending]]) -> None:
    root, _ = provisioned
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    for argv in (
        ("/usr/sbin/sshd", "-t"),
        ("nft", "-c", "-f", "/etc/nftables.conf"),
        ("usbguard-rule-parser", "-f", "/etc/usbguard/rules.conf"),
        ("apparmor_parser", "-Q", "-K", "/etc/apparmor.d/kiosk-app"),
    ):
        result = in_root(root, *argv)
        assert result.returncode == 0, (argv, result.stderr)


@pytest.mark.timeout(1500)
def test_units_users_and_keys(provisioned: tuple[Path, list[core.Pending]]) -> None:
    root, _ = provisioned
    for unit in ("ssh.service", "nftables.service", "usbguard.service", "apparmor.service"):
        state = subprocess.run(["systemctl", f"--root={root}", "is-enabled", unit], capture_output=True, text=True)
        assert state.stdout.strip() == "enabled", unit
    assert (root / "etc/systemd/system/ModemManager.service").readlink() == Path("/dev/null")
    passwd = (root / "etc/passwd").read_text()
    assert any(line.startswith("maint:") and line.endswith(":/home/maint:/bin/bash") for line in passwd.splitlines())
    assert (root / "etc/ssh/ssh_host_ed25519_key").stat().st_mode & 0o077 == 0
    assert (root / "etc/ssh/authorized_keys/maint").read_text() == KEY + "\n"
