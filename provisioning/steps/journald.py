"""Journald: persistent, sealed with forward-secure sealing (FSS), bounded in size.

``journalctl --setup-keys`` (run in the target: it ignores ``--root``) writes
the sealing key to ``/var/log/journal/<machine-id>/fss`` and prints the
verification key. The verification key regenerates every sealing key, so it
must never stay on the booth: it goes to ``[journald] verification_key_file``
on the machine running ``kiosk-provision`` (mode 0600) or, without one, to
standard error, for the technician to file away. ``journalctl --verify
--verify-key=KEY`` on a booth's journal then detects edits older than the
sealing interval.

The key belongs to the machine id: a root without one gets one first
(``systemd-machine-id-setup``). An image built once for many booths must run
this step on first boot, not at build time, or every booth would share a key.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, EnsureDirectory, Target, WriteFile
from provisioning.errors import TargetError

logger = logging.getLogger(__name__)

MACHINE_ID: Final = re.compile(r"[0-9a-f]{32}")
SIZE: Final = re.compile(r"\d{1,6}[KMG]")
INTERVAL: Final = re.compile(r"\d{1,4}(?:s|min|h|d)")


@dataclass(frozen=True)
class JournaldConfig:
    max_use: str
    seal_interval: str
    verification_key_file: str
    forward_to_console: bool


def parse(config: BoothConfig) -> JournaldConfig:
    table = config.table("journald")
    max_use = table.string("system_max_use", "512M", pattern=SIZE, what="a size like 512M")
    interval = table.string("seal_interval", "15min", pattern=INTERVAL, what="a duration like 15min")
    key_file = table.string("verification_key_file", "")
    console = table.boolean("forward_to_console", False)
    table.done()
    return JournaldConfig(max_use, interval, key_file, console)


def render(settings: JournaldConfig) -> bytes:
    return f"""\
# kiosk-provision (journald): persistent and sealed (FSS); edit [journald] in the booth configuration.
[Journal]
Storage=persistent
Seal=yes
Compress=yes
SystemMaxUse={settings.max_use}
ForwardToSyslog=no
ForwardToConsole={"yes" if settings.forward_to_console else "no"}
""".encode()


def machine_id(target: Target) -> str | None:
    text = (target.read_text("/etc/machine-id") or "").strip()
    return text if MACHINE_ID.fullmatch(text) else None


@dataclass(frozen=True)
class SealingKeys:
    """The FSS sealing key of the target's machine id; the verification key handed to the technician."""

    interval: str
    verification_key_file: str

    def describe(self) -> str:
        where = self.verification_key_file or "standard error"
        return f"journal sealing key (journalctl --setup-keys, interval {self.interval}; verification key to {where})"

    def is_applied(self, target: Target) -> bool:
        identifier = machine_id(target)
        return identifier is not None and target.path(f"/var/log/journal/{identifier}/fss").is_file()

    def apply(self, target: Target) -> None:
        if machine_id(target) is None:
            root = [f"--root={target.root}"] if target.is_chroot else []
            target.run_host(["systemd-machine-id-setup", *root])
        identifier = machine_id(target)
        if identifier is None:
            raise TargetError("machine id", "systemd-machine-id-setup wrote no machine id")
        target.path(f"/var/log/journal/{identifier}").mkdir(parents=True, exist_ok=True)
        # journalctl reads the boot id from /proc even to make keys.
        argv = ["journalctl", "--setup-keys", "--quiet", f"--interval={self.interval}"]
        result = target.run(argv, system_mounts=True)
        key = result.stdout.strip()
        if not key:
            raise TargetError("journalctl --setup-keys", "printed no verification key")
        if self.verification_key_file:
            destination = Path(self.verification_key_file)
            destination.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"{identifier} {key}\n")
            logger.warning("journald: verification key of machine %s written to %s", identifier, destination)
        else:
            logger.warning("journald: verification key of machine %s (keep it OFF the booth): %s", identifier, key)


@dataclass(frozen=True)
class JournaldStep:
    name: str = "journald"
    description: str = "persistent journal with forward-secure sealing"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse(config)
        return [
            WriteFile("/etc/systemd/journald.conf.d/50-kiosk.conf", render(settings)),
            EnsureDirectory("/var/log/journal", mode=0o2755, owner="root", group="systemd-journal"),
            SealingKeys(settings.seal_interval, settings.verification_key_file),
        ]


STEP: Final = JournaldStep()
