"""kiosk-app's READY=1: sent once the welcome screen is drawn, and while it is not, the journal
says every so often what stands in the way (screen names and counts, never a patient's data)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.sdnotify import Notifier
from kiosk.ui.main import _notify_ready


class LateWelcome:
    """Stands in for BoothApp (ours): the welcome screen is drawn only at the ``late``-th wait."""

    def __init__(self, late: int) -> None:
        self.late = late
        self.waits: list[tuple[str, float]] = []

    async def wait_screen(self, name: str, timeout: float = 5.0) -> None:
        self.waits.append((name, timeout))
        if len(self.waits) < self.late:
            await asyncio.sleep(timeout)
            raise TimeoutError(f"{name!r} not shown within {timeout} s")

    def drawing_state(self) -> str:
        return "showing ['failure', 'welcome'], frames drawn 7, refresh pending True, refreshes 3"


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(tmp_path / "notify"))
        listener.settimeout(2)
        yield listener


async def test_ready_after_the_welcome_screen_with_a_line_per_late_period(
    systemd_socket: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    app = LateWelcome(late=3)
    notifier = Notifier({"NOTIFY_SOCKET": systemd_socket.getsockname()})
    with caplog.at_level(logging.WARNING, logger="kiosk.ui.main"):
        await _notify_ready(app, notifier, every=0.5)  # type: ignore[arg-type]
    assert app.waits == [("welcome", 0.5)] * 3
    late = [record.getMessage() for record in caplog.records if "welcome screen not drawn" in record.getMessage()]
    assert late == [
        "welcome screen not drawn after 0 s: showing ['failure', 'welcome'], frames drawn 7, "
        "refresh pending True, refreshes 3",
        "welcome screen not drawn after 1 s: showing ['failure', 'welcome'], frames drawn 7, "
        "refresh pending True, refreshes 3",
    ]
    assert systemd_socket.recv(4096) == b"READY=1\nSTATUS=welcome screen up"
    notifier.close()


async def test_no_ready_while_the_welcome_screen_is_not_drawn(systemd_socket: socket.socket) -> None:
    app = LateWelcome(late=10**6)
    notifier = Notifier({"NOTIFY_SOCKET": systemd_socket.getsockname()})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_notify_ready(app, notifier, every=0.01), 0.3)  # type: ignore[arg-type]
    assert len(app.waits) > 5
    systemd_socket.setblocking(False)
    with pytest.raises(BlockingIOError):
        systemd_socket.recv(4096)  # nothing was sent
    notifier.close()
