"""The ordered registry of provisioning steps.

Each step is a module ``provisioning/steps/<name>.py`` defining ``STEP`` (a
``provisioning.core.Step``). ``ORDER`` fixes the order they run in: packages
first (later steps edit files packages install), the units and enrolment last.
A module named in ``ORDER`` is picked up as soon as it exists, so a helper adds
a step by adding its module; a module missing from ``ORDER`` is an error
(``tests/provisioning/test_engine.py`` checks both ways).

Owners (issue 6 contract): packages, project, session, sysctl, mounts, hardening,
journald, auditd, upgrades, fde (provision); ssh, firewall, usbguard, udev, apparmor
(policies); units (systemd); enrol (enrol).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Final

from provisioning.core import Step

ORDER: Final = (
    "packages",
    "project",
    "session",
    "sysctl",
    "mounts",
    "hardening",
    "journald",
    "auditd",
    "upgrades",
    "ssh",
    "firewall",
    "usbguard",
    "udev",
    "apparmor",
    "fde",
    "units",
    "enrol",
)


def _load() -> tuple[Step, ...]:
    steps: list[Step] = []
    for name in ORDER:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            continue
        step: Step = importlib.import_module(f"{__name__}.{name}").STEP
        if step.name != name:
            raise ImportError(f"{__name__}.{name} defines a step named {step.name!r}")
        steps.append(step)
    return tuple(steps)


STEPS: Final[tuple[Step, ...]] = _load()


def by_name(names: list[str] | None = None) -> tuple[Step, ...]:
    """The registered steps, or those named (in registry order); ``KeyError`` names an unknown one."""
    if names is None:
        return STEPS
    known = {step.name: step for step in STEPS}
    for name in names:
        if name not in known:
            raise KeyError(name)
    return tuple(step for step in STEPS if step.name in names)
