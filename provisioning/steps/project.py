"""The project: a wheel of this repository installed in the booth's venv, ``/opt/kiosk/venv``.

``[project] source`` is a wheel on the machine running ``kiosk-provision``
(``python -m pip wheel --no-deps -w dist .`` in the repository). It is copied
to ``/opt/kiosk/wheels/`` in the target and installed with pip into a venv
made with the target's ``python3 -m venv``; its dependencies come from PyPI,
or from a wheelhouse given in ``pip_args`` (``["--no-index", "--find-links",
"/opt/kiosk/wheels"]`` with the wheels copied there beforehand). The venv
records the wheel's SHA-256, so the same wheel is installed once and a new
one replaces it. ``install = false`` leaves the venv alone (tests, or images
that install the project themselves).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, Target
from provisioning.errors import ConfigError

VENV: Final = "/opt/kiosk/venv"
WHEELS: Final = "/opt/kiosk/wheels"
STAMP: Final = f"{VENV}/.kiosk-wheel-sha256"
WHEEL_NAME: Final = re.compile(
    r"[A-Za-z0-9_.]+-[A-Za-z0-9_.!+]+(?:-\d[A-Za-z0-9_]*)?-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl"
)
PIP_ARG: Final = re.compile(r"[A-Za-z0-9_./:=@+-]{1,200}")


@dataclass(frozen=True)
class ProjectConfig:
    install: bool
    source: Path | None
    pip_args: tuple[str, ...]
    entry_point: str
    """A command the wheel installs into the venv's bin/ (checked after installing)."""


def parse(config: BoothConfig) -> ProjectConfig:
    table = config.table("project")
    install = table.boolean("install", True)
    source = table.string("source", "")
    pip_args = table.strings("pip_args", (), pattern=PIP_ARG, what="a pip argument")
    entry = table.string("entry_point", "kiosk-app", pattern=re.compile(r"[a-z][a-z0-9-]{0,40}"), what="a command")
    table.done()
    if not install:
        return ProjectConfig(False, None, pip_args, entry)
    if not source:
        raise ConfigError("project.source", "is required when project.install is true (a wheel of the project)")
    path = Path(source)
    if config.source is not None and not path.is_absolute():
        path = config.source.parent / path
    if WHEEL_NAME.fullmatch(path.name) is None:
        raise ConfigError("project.source", f"{path.name} is not a wheel file name")
    if not path.is_file():
        raise ConfigError("project.source", f"{path} does not exist")
    return ProjectConfig(True, path, pip_args, entry)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class InstallProject:
    """The wheel installed in the venv (stamped with its SHA-256)."""

    wheel: Path
    sha256: str
    pip_args: tuple[str, ...]
    entry_point: str

    def describe(self) -> str:
        return f"install {self.wheel.name} into {VENV} (sha256 {self.sha256[:12]})"

    def is_applied(self, target: Target) -> bool:
        stamp = target.read_text(STAMP)
        return (
            stamp is not None
            and stamp.strip() == self.sha256
            and target.path(f"{VENV}/bin/{self.entry_point}").exists()
        )

    def apply(self, target: Target) -> None:
        inside = f"{WHEELS}/{self.wheel.name}"
        destination = target.path(inside)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.wheel, destination)
        if not target.path(f"{VENV}/bin/python").exists():
            target.run(["python3", "-m", "venv", VENV], system_mounts=True)
        pip = [f"{VENV}/bin/python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        target.run([*pip, "--upgrade", *self.pip_args, inside], system_mounts=True)
        target.path(STAMP).write_text(self.sha256 + "\n")


@dataclass(frozen=True)
class ProjectStep:
    name: str = "project"
    description: str = "the project's wheel installed in /opt/kiosk/venv"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse(config)
        if not settings.install or settings.source is None:
            return []
        return [InstallProject(settings.source, _sha256(settings.source), settings.pip_args, settings.entry_point)]


STEP: Final = ProjectStep()
