"""systemd's service notification protocol (``sd_notify``): READY=1, WATCHDOG=1, STOPPING=1.

A unit with ``Type=notify`` waits for READY=1 before it counts as started; with
``WatchdogSec=`` it restarts the service when WATCHDOG=1 stops coming. systemd
passes the notification socket in ``NOTIFY_SOCKET`` (a path, or ``@name`` for
an abstract socket) and the watchdog period in ``WATCHDOG_USEC``; each message
is one datagram of newline-separated ``KEY=value`` assignments (sd_notify(3)).

The protocol is a few lines, so it is written here rather than taken from
systemd-python (an optional C extension that needs libsystemd-dev to build):
the booth's app, the uploader and the hub must keep their watchdog even in a
venv without it. Without ``NOTIFY_SOCKET`` (a developer's shell, the tests,
the demo) everything is a no-op.

:meth:`Notifier.keep_alive` sends WATCHDOG=1 from the asyncio loop the process
runs on. That is the point: the booth app runs Kivy inside that loop, so a
frozen screen or a blocked loop stops the pings, and systemd restarts the app.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)

MAX_WATCHDOG_USEC = 24 * 3600 * 1_000_000
"""Longer periods are treated as bogus (systemd's own limit is far lower in practice)."""


def socket_address(value: str | None) -> str | None:
    """The ``AF_UNIX`` address named by ``NOTIFY_SOCKET`` (``@name`` is abstract), None if unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock: and relative paths are not for us


def watchdog_period(environ: Mapping[str, str], pid: int, parent_pid: int) -> float | None:
    """The watchdog period in seconds from ``WATCHDOG_USEC``, or None when no watchdog applies to this process.

    ``WATCHDOG_PID`` names the service's main process. kiosk-app runs as the child
    of its compositor (cage), the unit's main process, so the parent's PID counts
    too (sd_watchdog_enabled(3) would accept only our own).
    """
    raw = environ.get("WATCHDOG_USEC", "")
    if not raw.isascii() or not raw.isdecimal():
        return None
    usec = int(raw)
    if not 0 < usec <= MAX_WATCHDOG_USEC:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and (not owner.isascii() or not owner.isdecimal() or int(owner) not in (pid, parent_pid)):
        return None
    return usec / 1_000_000


class Notifier:
    """Sends this process's notifications to systemd, if it is watching (see the module docstring)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.address = socket_address(environ.get("NOTIFY_SOCKET"))
        self.watchdog = watchdog_period(environ, os.getpid(), os.getppid()) if self.address else None
        """The watchdog period in seconds; None when there is no watchdog."""
        self._socket: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram; False when not under systemd or the send failed.

        A failure is logged once and never raised: a service must not die because
        its notification socket went away.
        """
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.connect(self.address)
            self._socket.send("\n".join(assignments).encode())
        except OSError as exc:
            if not self._failed:
                logger.warning("cannot notify systemd: %s", exc.strerror or exc)
            self._failed = True
            self.close()
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (and a one-line STATUS shown by ``systemctl status``)."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")

    async def keep_alive(self) -> None:
        """Send WATCHDOG=1 every half period from the running loop, until cancelled; returns at once without one."""
        if self.watchdog is None:
            return
        interval = self.watchdog / 2  # sd_watchdog_enabled(3): ping at half the period
        while True:
            self.ping()
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
