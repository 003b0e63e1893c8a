"""Booth enrolment and renewal latency against a real hub process.

A throwaway development hub (``kiosk-hub serve`` through ``kiosk.demo.hub.DevHub``, enrolment rate limit
relaxed) and the booth's real client (:mod:`kiosk.enrol.client`): each sample makes a key, sends a CSR over a
fresh TLS 1.3 connection, checks and installs the certificate. ``enrol`` is one one-time token each;
``renew`` is mutual TLS with the pair just installed. ``cli_enrol`` is the whole ``kiosk-enrol enrol``
command (interpreter start included), what provisioning waits for.

    python -m bench.enrolment [--samples N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench.stats import summary_ms
from hub.enrolment import issue_token
from hub.store import Store
from kiosk.demo.hub import DevHub
from kiosk.enrol.client import enrol, renew

RELAXED: Final = "[enrolment]\nburst = 100000\nper_minute = 100000\n"
CLI_SAMPLES: Final = 5


def _tokens(hub: DevHub, count: int) -> list[str]:
    store = Store(hub.paths.database)
    try:
        return [
            issue_token(store, f"booth-{9000 + i:04d}", now=time.time(), audit=lambda *_: None) for i in range(count)
        ]
    finally:
        store.close()


def run(samples: int = 50) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, DevHub(Path(tmp) / "hub", settings=RELAXED) as hub:
        tokens = _tokens(hub, samples + CLI_SAMPLES)
        fleet_ca = hub.paths.fleet_ca
        enrol_s: list[float] = []
        renew_s: list[float] = []
        for i in range(samples):
            identity = Path(tmp) / f"booth-{i}"
            started = time.perf_counter()
            enrol(
                hub=hub.origin,
                token=tokens[i],
                booth_id=f"booth-{9000 + i:04d}",
                fleet_ca=fleet_ca,
                identity_dir=identity,
            )
            enrol_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = renew(
                hub=hub.booth_url, fleet_ca=fleet_ca, identity_dir=identity, window=datetime.timedelta(days=4000)
            )
            renew_s.append(time.perf_counter() - started)
            if result["status"] != "renewed":
                raise RuntimeError(f"renewal said {result['status']}")
        cli_s: list[float] = []
        for j in range(CLI_SAMPLES):
            i = samples + j
            command = [sys.executable, "-m", "kiosk.enrol.cli", "enrol", "--hub", hub.origin, "--token-file", "-"]
            command += ["--booth-id", f"booth-{9000 + i:04d}", "--fleet-ca", str(fleet_ca)]
            command += ["--identity-dir", str(Path(tmp) / f"booth-{i}")]
            started = time.perf_counter()
            done = subprocess.run(command, input=tokens[i], capture_output=True, text=True, timeout=60, check=False)
            cli_s.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise RuntimeError(f"kiosk-enrol failed: {done.stdout.strip()}")
    return {
        "bench": "enrolment",
        "enrol": summary_ms(enrol_s),
        "renew": summary_ms(renew_s),
        "cli_enrol": summary_ms(cli_s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enrolment", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.samples), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
