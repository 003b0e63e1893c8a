"""Provisioning: a fresh Debian 12 root filesystem to a hardened booth, and Lynis before and after.

    python -m bench.provision          (or python -m bench.run provision)

A minimal Debian 12 (mmdebstrap minbase + OpenSSH + Lynis, cached by
``provisioning.rootfs``) is copied and audited by Lynis (``before``); another
copy is provisioned with ``provisioning/example.toml`` through the CLI, apt
downloading and installing the booth's packages in the chroot (``fresh``),
then provisioned again (``second_run``, nothing to do) and checked
(``check``), and audited (``after``). ``config_only`` provisions a copy that
already has the packages (what a re-provisioning costs). Lynis runs as
``provisioning.lynis`` describes: kernel sysctls are the host's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from provisioning import lynis, rootfs
from provisioning.config import load_config

REPO = Path(__file__).parents[1]


def _provision(config: Path, root: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    argv = ["nice", "-n", "10", sys.executable, "-m", "provisioning.cli", "--config", str(config)]
    argv += ["--root", str(root), "--json", *extra]
    started = time.perf_counter()
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    elapsed = time.perf_counter() - started
    document: dict[str, Any] = json.loads(result.stdout)
    return round(elapsed, 1), document


def _lynis(root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    result = lynis.audit(root)
    return {
        "hardening_index": result.hardening_index,
        "tests_performed": result.tests_performed,
        "warnings": list(result.warnings),
        "suggestions": sorted(set(result.suggestions)),
        "seconds": round(time.perf_counter() - started, 1),
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="kiosk-bench-provision-") as tmp:
        work = Path(tmp)
        config = work / "booth.toml"
        config.write_text(rootfs.example_config(work / "fss-key"))
        started = time.perf_counter()
        base = rootfs.base_root()
        base_seconds = round(time.perf_counter() - started, 1)
        before = _lynis(rootfs.copy(base, work / "before"))
        rootfs.remove(work / "before")
        fresh = rootfs.copy(base, work / "fresh")
        fresh_seconds, first = _provision(config, fresh)
        second_seconds, second = _provision(config, fresh)
        check_seconds, check = _provision(config, fresh, "--check")
        after = _lynis(fresh)
        rootfs.remove(fresh)
        packaged = rootfs.copy(rootfs.packaged_root(load_config(config)), work / "packaged")
        config_seconds, config_only = _provision(config, packaged)
        rootfs.remove(packaged)
    return {
        "base_root": {"cached_or_built_seconds": base_seconds},
        "fresh": {"seconds": fresh_seconds, "changes": len(first["changes"]), "ok": first["ok"]},
        "second_run": {"seconds": second_seconds, "changes": len(second["changes"])},
        "check": {"seconds": check_seconds, "drift": check["drift"]},
        "config_only": {"seconds": config_seconds, "changes": len(config_only["changes"])},
        "lynis_before": before,
        "lynis_after": after,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
