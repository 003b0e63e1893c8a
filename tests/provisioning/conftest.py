"""Fixtures for the provisioning tests: temporary root filesystems and booth configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.config import BoothConfig, parse_config
from provisioning.core import Target

MINIMAL_ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "etc/group": "root:x:0:\nvideo:x:44:\naudio:x:29:\ndialout:x:20:\nplugdev:x:46:\nnogroup:x:65534:\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
    "etc/gshadow": "root:*::\nvideo:*::\naudio:*::\ndialout:*::\nplugdev:*::\nnogroup:*::\n",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty root filesystem with just the user databases (no binaries: steps' files only)."""
    base = tmp_path / "root"
    for name, content in MINIMAL_ETC.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (base / "etc/shadow").chmod(0o640)
    return base


@pytest.fixture
def target(root: Path) -> Target:
    return Target(root)


def make_config(**tables: dict[str, object]) -> BoothConfig:
    document: dict[str, dict[str, object]] = {"booth": {"id": "booth-0001"}, "hub": {"host": "hub.example.org"}}
    document["network"] = {"dns": ["192.0.2.53"], "ntp": ["ntp.example.org"]}
    document.update(tables)
    return parse_config(document)


@pytest.fixture
def config() -> BoothConfig:
    return make_config()
