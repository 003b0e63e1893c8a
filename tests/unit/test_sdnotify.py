"""kiosk.sdnotify against a real unix datagram socket owned by the test (what systemd listens on)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.sdnotify import Notifier, socket_address, watchdog_period


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({})

    assert not notifier.enabled
    assert notifier.watchdog is None
    assert notifier.ready() is False
    assert notifier.ping() is False


def test_ready_then_stopping_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})

    assert notifier.ready("serving")
    assert notifier.stopping()

    assert sock.recv(4096) == b"READY=1\nSTATUS=serving"
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_abstract_socket() -> None:
    name = f"kiosk-test-notify-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ping()
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()
    finally:
        sock.close()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})

    assert notifier.ready() is False
    assert notifier.ping() is False
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


async def test_keep_alive_pings_at_half_the_period(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    assert notifier.watchdog == 0.1

    task = asyncio.create_task(notifier.keep_alive())
    loop = asyncio.get_running_loop()
    pings = [await asyncio.wait_for(loop.sock_recv(sock, 4096), 5) for _ in range(3)]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert pings == [b"WATCHDOG=1"] * 3
    notifier.close()


async def test_keep_alive_returns_without_a_watchdog(listener: tuple[socket.socket, str]) -> None:
    _, path = listener

    await asyncio.wait_for(Notifier({"NOTIFY_SOCKET": path}).keep_alive(), 5)


def test_watchdog_belongs_to_the_main_process_or_its_child() -> None:
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "100"}

    assert watchdog_period(env, pid=100, parent_pid=1) == 30.0
    assert watchdog_period(env, pid=200, parent_pid=100) == 30.0  # kiosk-app under cage
    assert watchdog_period(env, pid=300, parent_pid=200) is None  # a grandchild must not ping
    assert watchdog_period({"WATCHDOG_USEC": "0"}, pid=1, parent_pid=1) is None


def test_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@sd-notify") == "\0sd-notify"
    assert socket_address("vsock:2:1234") is None
    assert socket_address("") is None
    assert socket_address(None) is None


@given(usec=st.text(max_size=30), pid=st.text(max_size=12))
def test_watchdog_environment_never_raises(usec: str, pid: str) -> None:
    period = watchdog_period({"WATCHDOG_USEC": usec, "WATCHDOG_PID": pid}, pid=42, parent_pid=1)

    assert period is None or 0 < period <= 24 * 3600


@given(value=st.text(max_size=60))
def test_any_notify_socket_value_gives_an_absolute_or_abstract_address_or_none(value: str) -> None:
    address = socket_address(value)

    assert address is None or address.startswith(("/", "\0"))
