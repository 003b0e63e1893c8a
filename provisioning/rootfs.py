"""Debian 12 root filesystems for tests and benchmarks, built once with mmdebstrap and cached.

``base_root()`` is a minimal Debian 12 (variant minbase) with systemd, the
OpenSSH server (what a technician's box has) and Lynis (the audit tool the
tests run inside it). ``packaged_root(config)`` is that root with the
``packages`` step applied (apt in a chroot), so each whole-system test starts
from the booth's packages without downloading them again. Both live under
``KIOSK_TEST_CACHE`` (default ``/var/cache/kiosk-tests``), named by a hash of
what they contain: a change of package list builds a new one. ``copy()`` gives
a test its own copy (``cp -a --reflink=auto``).

A build takes a lock, builds into a temporary directory and renames it into
place, so concurrent test runs share one build and an interrupted build leaves
nothing half made.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from provisioning import core
from provisioning.config import BoothConfig
from provisioning.errors import TargetError
from provisioning.steps import packages

SUITE: Final = "bookworm"
MIRROR: Final = "http://deb.debian.org/debian"
BASE_PACKAGES: Final = ("systemd-sysv", "openssh-server", "lynis")
BUILD_TIMEOUT: Final = 1200.0


def cache_dir() -> Path:
    return Path(os.environ.get("KIOSK_TEST_CACHE", "/var/cache/kiosk-tests"))


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def base_root() -> Path:
    """The cached minimal Debian 12 root (built on first use: about a minute with a mirror nearby)."""
    directory = cache_dir()
    final = directory / f"debian12-base-{_key(SUITE, MIRROR, BASE_PACKAGES)}"
    with _locked(directory):
        if final.is_dir():
            return final
        building = directory / f".{final.name}.building"
        shutil.rmtree(building, ignore_errors=True)
        command = ["nice", "-n", "10", "mmdebstrap", "--variant=minbase", "--quiet"]
        command += [f"--include={','.join(BASE_PACKAGES)}", SUITE, str(building), MIRROR]
        _run(command)
        building.rename(final)
    return final


def packaged_root(config: BoothConfig) -> Path:
    """The base root with the configuration's ``packages`` step applied (cached by package lists)."""
    settings = packages.parse(config)
    base = base_root()
    directory = cache_dir()
    final = directory / f"debian12-booth-{_key(base.name, settings.install, settings.remove)}"
    with _locked(directory):
        if final.is_dir():
            return final
        building = directory / f".{final.name}.building"
        shutil.rmtree(building, ignore_errors=True)
        _run(["cp", "-a", "--reflink=auto", str(base), str(building)])
        core.apply([packages.STEP], config, core.Target(building))
        building.rename(final)
    return final


EXAMPLE: Final = Path(__file__).parent / "example.toml"


def example_config(verification_key_file: Path) -> str:
    """``example.toml`` for a test root: no project wheel, the journal's verification key to a file."""
    text = EXAMPLE.read_text()
    for old, new in (
        ('verification_key_file = ""', f'verification_key_file = "{verification_key_file}"'),
        ("[project]\ninstall = true", "[project]\ninstall = false"),
    ):
        if old not in text:
            raise TargetError("example.toml", f"has no {old!r} line to adapt")
        text = text.replace(old, new)
    return text


def copy(source: Path, destination: Path) -> Path:
    """A private copy of a cached root (the destination must not exist)."""
    _run(["cp", "-a", "--reflink=auto", str(source), str(destination)])
    return destination


def remove(root: Path) -> None:
    """Delete a copied root (never a cached one)."""
    if root.parent == cache_dir() and root.name.startswith("debian12-"):
        raise TargetError("remove", f"{root} is a cached root")
    shutil.rmtree(root, ignore_errors=True)


def _run(command: list[str]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TargetError(command[0], f"took more than {BUILD_TIMEOUT:.0f} s") from exc
    if result.returncode != 0:
        raise TargetError(" ".join(command[:4]), result.stderr.strip()[-400:] or "failed", returncode=result.returncode)
