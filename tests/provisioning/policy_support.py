"""Helpers for the policy steps' tests: real tools, run where they cannot touch the host.

sshd and udevadm want /run (sshd's privilege-separation directory, udev's
database); they run in a private mount namespace with a tmpfs over /run (and,
for udevadm, over /dev and the rule directories), so nothing they write
outlives the test. These tests run as root, as ``make test`` does.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from provisioning.core import Change, Target


def private_mounts(script: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a private mount namespace with a fresh tmpfs on /run."""
    wrapped = "mount -t tmpfs -o mode=0755 none /run && mkdir -m 0755 /run/sshd && " + script
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", wrapped],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def quote(*args: str | Path) -> str:
    return shlex.join(str(a) for a in args)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def written(changes: Sequence[Change], path: str) -> bytes:
    """The content a step's ``WriteFile`` change puts at ``path``."""
    for change in changes:
        if getattr(change, "path", None) == path and hasattr(change, "content"):
            content: bytes = change.content
            return content
    raise AssertionError(f"no change writes {path}")


def apply_all(changes: Sequence[Change], target: Target) -> None:
    for change in changes:
        if not change.is_applied(target):
            change.apply(target)
        assert change.is_applied(target), change.describe()
