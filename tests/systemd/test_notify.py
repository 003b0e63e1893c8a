"""``kiosk-hub serve`` as kiosk-hub.service runs it: READY=1, then WATCHDOG=1 from its loop, STOPPING=1 on SIGTERM.

The test owns the notification socket systemd would own, and sets the variables
systemd would set (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID is left out: the
hub is the main process).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.demo.display import xvfb
from tests.support_peripherals import media_files, peripherals_toml, serial_emulators

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hub_state(tmp_path: Path) -> Path:
    """A development hub state: the booth's certificate and key come from it (no hub needs to run)."""
    state = tmp_path / "hub"
    subprocess.run(
        [sys.executable, "-m", "hub.cli", "init", "--dev", "--state", str(state)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return state


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


@pytest.mark.timeout(300)
@pytest.mark.parametrize("pcscd", ["host", "starting"])  # host: whatever this machine runs, or no pcscd
async def test_app_on_a_peripherals_file_notifies_ready_once_the_welcome_screen_is_up(
    tmp_path: Path, hub_state: Path, pcscd: str
) -> None:
    # kiosk-app as kiosk-app.service runs it (--peripherals, a watchdog), the peripherals being the firmware
    # emulators' ptys and media files named in a peripherals.toml, the screen an Xvfb display.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    held: list[asyncio.StreamWriter] = []
    if pcscd == "starting":
        # pcscd as socket activation leaves it while it starts (a minute on a slow boot): its socket takes
        # the connection, nothing answers yet. The welcome screen and READY=1 must not wait for the card reader.
        async def take_and_hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)

        silent = await asyncio.start_unix_server(take_and_hold, str(tmp_path / "pcscd.comm"))
        env["PCSCLITE_CSOCK_NAME"] = str(tmp_path / "pcscd.comm")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()

    async def receive() -> str:
        # The app starts in seconds; a 2-core machine shared by the whole suite needs more.
        return (await asyncio.wait_for(loop.sock_recv(sock, 4096), 240)).decode()

    # No hub listens on port 9: the welcome screen does not wait for the hub (the link retries behind it).
    argv = [sys.executable, "-m", "kiosk.ui.main", "--hub", "wss://127.0.0.1:9/ws", "--hub-state", str(hub_state)]
    argv += ["--peripherals", str(tmp_path / "peripherals.toml"), "--state", str(tmp_path / "state")]
    async with serial_emulators(tmp_path / "dev") as ports:
        (tmp_path / "peripherals.toml").write_text(peripherals_toml(ports, await media_files(tmp_path / "media")))
        with xvfb() as display, (tmp_path / "app.log").open("wb") as log:
            app = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env={**env, "DISPLAY": display, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"},
                cwd=ROOT,
            )
            try:
                messages = [await receive()]
                while messages[-1] == "WATCHDOG=1":  # the loop pings while the booth starts, before READY
                    messages.append(await receive())
                assert messages[-1] == "READY=1\nSTATUS=welcome screen up"
                assert [await receive() for _ in range(3)] == ["WATCHDOG=1"] * 3
            finally:
                if app.returncode is None:
                    app.terminate()
                try:
                    await asyncio.wait_for(app.wait(), 30)
                except TimeoutError:
                    app.kill()
                    await app.wait()
                sock.close()
                if pcscd == "starting":
                    assert held, "the app never asked pcscd"
                    for writer in held:
                        writer.close()
                    silent.close()
    assert "oximeter: disconnected -> connected" in (tmp_path / "app.log").read_text()


def test_app_refuses_a_peripherals_file_without_the_booth_camera(tmp_path: Path, hub_state: Path) -> None:
    peripherals = tmp_path / "peripherals.toml"
    peripherals.write_text('[microphone]\ndevice = "hw:CARD=Booth,DEV=0"\n')
    argv = [sys.executable, "-m", "kiosk.ui.main", "--hub", "wss://127.0.0.1:9/ws", "--hub-state", str(hub_state)]
    argv += ["--peripherals", str(peripherals), "--state", str(tmp_path / "state")]

    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        cwd=ROOT,
        timeout=120,
        check=False,
    )

    assert result.returncode != 0
    assert "lacks [booth_camera], [stethoscope]" in result.stderr
    assert "Traceback" not in result.stderr
