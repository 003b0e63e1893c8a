"""``kiosk-hub serve`` as kiosk-hub.service runs it: READY=1, then WATCHDOG=1 from its loop, STOPPING=1 on SIGTERM.

The test owns the notification socket systemd would own, and sets the variables
systemd would set (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID is left out: the
hub is the main process).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_hub_notifies_ready_then_watchdog_then_stopping(tmp_path: Path) -> None:
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
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(30)
    serve = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--state", str(state), "--port", "0", "--booth-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**env, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"},
        cwd=ROOT,
    )
    try:
        ready = _receive(sock)
        assert serve.stdout is not None
        assert serve.stdout.readline().startswith("ready doctor=https://127.0.0.1:")
        assert ready.split("\n")[0] == "READY=1"
        assert ready.split("\n")[1].startswith("STATUS=doctors on port ")
        assert [_receive(sock) for _ in range(5)] == ["WATCHDOG=1"] * 5
        serve.terminate()
        messages = [_receive(sock)]
        while messages[-1] == "WATCHDOG=1":
            messages.append(_receive(sock))
        assert messages[-1] == "STOPPING=1"
        assert serve.wait(timeout=20) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        if serve.stdout is not None:
            serve.stdout.close()
        sock.close()
