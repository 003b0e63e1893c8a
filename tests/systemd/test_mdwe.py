"""MemoryDenyWriteExecute=yes in kiosk-hub.service: the hub serves TLS and checks an argon2 password under it.

systemd enforces MemoryDenyWriteExecute with a seccomp filter; Linux 6.3+ has
the same rule as ``prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)`` (no mapping
both writable and executable, no execute permission added later), which an
unprivileged test can set on the hub process itself. The booth app is not
run this way: Mesa's software GL (llvmpipe, what a VM or Xvfb gives) JITs its
shaders, and the app dies at GL context creation under the rule (measured:
SIGSEGV as the window opens), so kiosk-app.service leaves it off.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
UNDER_MDWE = f"""
import ctypes, runpy, sys
if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    raise SystemExit("PR_SET_MDWE refused")
sys.argv[0] = "kiosk-hub"
runpy.run_module("hub.cli", run_name="__main__")
"""


def _kernel_has_mdwe() -> bool:
    # Probed in a child: the rule cannot be lifted once set.
    probe = f"import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0))"
    return subprocess.run([sys.executable, "-c", probe], check=False, timeout=30).returncode == 0


@pytest.mark.skipif(not _kernel_has_mdwe(), reason="the kernel has no PR_SET_MDWE (Linux < 6.3, e.g. Debian 12's 6.1)")
def test_hub_works_with_no_writable_executable_memory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    state = tmp_path / "state"
    subprocess.run(
        [sys.executable, "-m", "hub.cli", "init", "--dev", "--state", str(state)],
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    serve = subprocess.Popen(
        [sys.executable, "-c", UNDER_MDWE, "serve", "--state", str(state), "--port", "0", "--booth-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert line.startswith("ready doctor=https://"), line
        origin = line.split()[1].removeprefix("doctor=")
        context = ssl.create_default_context(cafile=str(state / "fleet-ca.pem"))
        with urllib.request.urlopen(origin + "/", context=context, timeout=30) as response:
            assert response.status == 200
        username = json.loads((state / "dev-credentials.json").read_text())["username"]
        login = urllib.request.Request(
            origin + "/api/login",
            data=json.dumps({"username": username, "password": "not the password"}).encode(),
            headers={"Content-Type": "application/json", "Origin": origin},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(login, context=context, timeout=60)
        refused.value.close()
        assert refused.value.code == 401  # argon2 ran and said no; the hub is still up
        assert serve.poll() is None
    finally:
        serve.terminate()
        assert serve.wait(timeout=20) == 0
        if serve.stdout is not None:
            serve.stdout.close()
