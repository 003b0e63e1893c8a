"""The five policy steps together, on the example configuration: they plan, apply their files once, then hold."""

from __future__ import annotations

from pathlib import Path

from provisioning import steps
from provisioning.config import BoothConfig, load_config
from provisioning.core import Change, Command, EnsurePackages, EnsureUser, Pending, SystemdUnitState, Target, plan
from provisioning.steps import apparmor, firewall, ssh, udev, usbguard

EXAMPLE = Path(__file__).parents[2] / "provisioning" / "example.toml"
POLICY_STEPS = ("ssh", "firewall", "usbguard", "udev", "apparmor")


def test_the_policy_steps_are_registered_in_order() -> None:
    names = [step.name for step in steps.STEPS]
    assert [name for name in names if name in POLICY_STEPS] == list(POLICY_STEPS)
    assert {ssh.STEP, firewall.STEP, usbguard.STEP, udev.STEP, apparmor.STEP} <= set(steps.STEPS)


def needs_a_system(change: Change) -> bool:
    """Packages, users, commands and enabling a packaged unit need apt and a chroot: the whole-system test's part."""
    if isinstance(change, SystemdUnitState):
        return change.state != "masked"
    return isinstance(change, EnsurePackages | EnsureUser | Command)


def test_example_plans_applies_once_and_then_holds(target: Target) -> None:
    config = load_config(EXAMPLE)
    policy = (ssh.STEP, firewall.STEP, usbguard.STEP, udev.STEP, apparmor.STEP)
    applied = 0
    for step in policy:
        for change in step.changes(config, target):
            assert change.describe()
            if needs_a_system(change) or change.is_applied(target):
                continue
            change.apply(target)
            applied += 1
    assert applied >= 8
    for step in policy:
        pending = [c.describe() for c in step.changes(config, target) if not needs_a_system(c)]
        assert all(c.is_applied(target) for c in step.changes(config, target) if not needs_a_system(c)), pending
    assert (target.root / "etc/nftables.conf").read_text().startswith("#!/usr/sbin/nft -f")
    assert (target.root / "etc/systemd/system/ssh.service").readlink() == Path("/dev/null")
    assert (target.root / "etc/usbguard/rules.conf").stat().st_mode & 0o777 == 0o600


def test_a_hand_edit_is_drift(target: Target) -> None:
    config = load_config(EXAMPLE)
    for change in firewall.STEP.changes(config, target) + usbguard.STEP.changes(config, target):
        if not needs_a_system(change):
            change.apply(target)
    assert [c for c in core_plan(config, target) if not needs_a_system(c.change)] == []
    ruleset = target.root / "etc/nftables.conf"
    ruleset.write_text(ruleset.read_text().replace("policy drop;", "policy accept;"))
    (target.root / "etc/usbguard/rules.conf").chmod(0o644)
    drift = [c.describe() for c in core_plan(config, target) if not needs_a_system(c.change)]
    assert drift == [
        "firewall: write /etc/nftables.conf (0755 root:root, "
        f"{len(firewall.render_ruleset(firewall.policy_for(config)))} bytes)",
        "usbguard: write /etc/usbguard/rules.conf (0600 root:root, "
        f"{len(usbguard.render_rules(usbguard.parse_settings(config.section('usbguard'))).encode())} bytes)",
    ]


def core_plan(config: BoothConfig, target: Target) -> list[Pending]:
    return plan([firewall.STEP, usbguard.STEP], config, target)
