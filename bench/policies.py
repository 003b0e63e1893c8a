"""The provisioning policy steps (ssh, firewall, usbguard, udev, apparmor): time and size figures.

- ``apply_seconds``: each step applied to a fresh copy of the cached Debian 12
  root with the booth's packages (``provisioning.rootfs``), SSH enabled so
  every kind of change runs; ``replan_seconds``: the second run's plan, which
  must find nothing to do (``pending_after``).
- ``check_seconds``: the real checkers on the rendered files (median of 5).
- sizes of what is written: ruleset lines and set elements, USBGuard rules,
  AppArmor profile lines and compiled size.

Needs root (chroot, systemctl --root) and, on first use, a Debian mirror to
build the cached root. ``python -m bench.run policies``.

``python -m bench.policies --lynis`` (slow: two Lynis audits) prints Lynis's
hardening index of the example booth provisioned with every step and without
the five policy steps.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from provisioning import core, lynis, rootfs, steps
from provisioning.config import BoothConfig, load_config, parse_config
from provisioning.steps import apparmor, firewall, ssh, udev, usbguard

REPEATS = 5
REPO = Path(__file__).parents[1]
POLICY_STEPS = ("ssh", "firewall", "usbguard", "udev", "apparmor")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKl6h6ep288T+sxhpozYAoz1jiCHcNnKKvpbhTdnBfze tech@laptop"


def config() -> BoothConfig:
    allow = [
        {"name": "Oximeter cable", "id": "10c4:ea60", "interfaces": ["ff:00:00"]},
        {"name": "NIBP module", "id": "0403:6001", "interfaces": ["ff:ff:ff"]},
        {"name": "Otoscope", "id": "0c45:6366", "interfaces": ["0e:01:00", "0e:02:00"]},
        {"name": "Card reader", "id": "08e6:3437", "interfaces": ["0b:00:00"]},
        {"name": "Touchscreen", "id": "0eef:0001", "interfaces": ["03:00:00"]},
    ]
    return parse_config(
        {
            "booth": {"id": "booth-0001"},
            "hub": {"host": "hub.example.org"},
            "network": {
                "dns": ["192.0.2.53", "192.0.2.54"],
                "ntp": ["192.0.2.123"],
                "turn": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
            },
            "ssh": {"enabled": True, "authorized_keys": {"maint": [KEY]}, "allow_from": ["192.0.2.0/24"]},
            "firewall": {
                "addresses": {"hub.example.org": ["198.51.100.10", "2001:db8::10"], "turn.example.org": ["203.0.113.5"]}
            },
            "usbguard": {"allow": allow},
            "udev": {
                "serial": [{"role": "oximeter", "id": "10c4:ea60"}],
                "camera": [{"role": "otoscope", "id": "0c45:6366"}],
            },
        }
    )


def _median(argv: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 4)


def _checks(booth: BoothConfig, directory: Path) -> dict[str, Any]:
    ruleset = firewall.render_ruleset(firewall.policy_for(booth))
    rules = usbguard.render_rules(usbguard.parse_settings(booth.section("usbguard")))
    profile = apparmor.render_profile()
    (directory / "nftables.conf").write_text(ruleset)
    (directory / "rules.conf").write_text(rules)
    (directory / "kiosk-app").write_text(profile)
    compiled = subprocess.run(
        ["apparmor_parser", "-Q", "-K", "-S", str(directory / "kiosk-app")], capture_output=True, check=True
    ).stdout
    return {
        "check_seconds": {
            "nft -c": _median(["nft", "-c", "-f", str(directory / "nftables.conf")]),
            "usbguard-rule-parser": _median(["usbguard-rule-parser", "-f", str(directory / "rules.conf")]),
            "apparmor_parser -Q": _median(["apparmor_parser", "-Q", "-K", str(directory / "kiosk-app")]),
        },
        "sizes": {
            "ruleset_lines": len(ruleset.splitlines()),
            "ruleset_set_elements": sum(1 for line in ruleset.splitlines() if line.startswith("\t\t\t")),
            "usbguard_rules": len(usbguard.rules(usbguard.parse_settings(booth.section("usbguard")))),
            "sshd_config_lines": len(ssh.render_sshd_config(ssh.parse_settings(booth.section("ssh"))).splitlines()),
            "udev_rule_lines": sum(
                1
                for line in udev.render_rules(udev.parse_settings(booth.section("udev"))).splitlines()
                if line and not line.startswith("#")
            ),
            "apparmor_profile_lines": len(profile.splitlines()),
            "apparmor_compiled_bytes": len(compiled),
        },
    }


def run() -> dict[str, Any]:
    booth = config()
    steps = (ssh.STEP, firewall.STEP, usbguard.STEP, udev.STEP, apparmor.STEP)
    with tempfile.TemporaryDirectory(prefix="bench-policies-") as scratch:
        directory = Path(scratch)
        out = _checks(booth, directory)
        source = rootfs.packaged_root(booth)
        root = rootfs.copy(source, directory / "root")
        target = core.Target(root)
        apply_seconds: dict[str, float] = {}
        changes: dict[str, int] = {}
        for step in steps:
            started = time.perf_counter()
            changes[step.name] = len(core.apply([step], booth, target))
            apply_seconds[step.name] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        pending = core.plan(steps, booth, target)
        replan = round(time.perf_counter() - started, 3)
        rootfs.remove(root)
    out.update(
        {
            "apply_seconds": apply_seconds,
            "apply_total_seconds": round(sum(apply_seconds.values()), 3),
            "changes_applied": changes,
            "replan_seconds": replan,
            "pending_after": len(pending),
        }
    )
    return out


def lynis_contribution() -> dict[str, Any]:
    """Lynis's index of the example booth provisioned with every step, and without the five policy steps."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-policies-lynis-") as scratch:
        directory = Path(scratch)
        config_file = directory / "booth.toml"
        config_file.write_text(rootfs.example_config(directory / "journal-key"))
        source = rootfs.packaged_root(load_config(config_file))
        names = [step.name for step in steps.STEPS]
        without = [name for name in names if name not in POLICY_STEPS]
        for label, only in (("all_steps", names), ("without_policy_steps", without)):
            root = rootfs.copy(source, directory / label)
            argv = [sys.executable, "-m", "provisioning.cli", "--config", str(config_file), "--root", str(root)]
            argv += ["--json", "--only", ",".join(only)]
            result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
            if result.returncode != 0:
                raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
            audit = lynis.audit(root)
            out[label] = {"hardening_index": audit.hardening_index, "tests_performed": audit.tests_performed}
            rootfs.remove(root)
    return out


if __name__ == "__main__":
    print(json.dumps(lynis_contribution() if "--lynis" in sys.argv else run(), indent=2))
