"""What a booting booth says on its serial console, as events: sans-IO.

``receive_data(bytes)`` buffers what the serial line delivered (any chunking, any garbage);
``next_event()`` returns the next event or ``None``. The line discipline follows what systemd 252
prints on the console with ``quiet`` on the kernel command line: only failures
(``[FAILED] Failed to start UNIT - Description.``, ``[DEPEND] Dependency failed for UNIT - ...``),
in colour, with carriage returns. The booth image's ``kiosk-ready-report.service`` prints
``KIOSK-READY`` once ``kiosk-app.service`` has reported ready (sd_notify READY=1), or
``KIOSK-NOT-READY STATE`` when the app's unit was skipped (a Condition failed: not enrolled).
journald forwards that to the console as ``[  363.45] kiosk-ready-report[356]: KIOSK-READY``,
possibly after a login prompt the serial getty left on the same line; a marker without the
unit's identifier counts only as a line of its own (a shell echoing it is not the unit).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

READY_MARKER = "KIOSK-READY"
NOT_READY_MARKER = "KIOSK-NOT-READY"
# A console line longer than this is cut: a runaway line must not grow the buffer without bound.
MAX_LINE = 4096
WATCHED_UNITS = frozenset({"kiosk-app.service", "kiosk-ready-report.service"})

_MARKER = re.compile(
    r"(?:^|kiosk-ready-report\[\d+\]: )(?P<marker>KIOSK-READY|KIOSK-NOT-READY)(?: (?P<state>\S{1,64}))?$"
)
# cage's own errors (cage.c, not the wlroots or EGL lines it forwards) are fatal: cage exits, or,
# as seen with a Wayland socket it could not create, hangs until the start timeout.
_CAGE_FATAL = re.compile(r"cage\[\d+\]: [\d:.]+ \[ERROR\] \[\.\./cage\.c:\d+\] (?P<message>.{1,200})$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_FAILED = re.compile(r"(?:Failed to start|Dependency failed for) (\S+\.(?:service|target|socket|mount))")
_PANIC = re.compile(r"Kernel panic - not syncing")


@dataclass(frozen=True)
class Ready:
    """The ready marker came: the booth app is up."""


@dataclass(frozen=True)
class NotReady:
    """The report ran but the app is not active (its unit was skipped): the marker will never come."""

    state: str
    """What ``systemctl is-active`` said, e.g. ``inactive``."""


@dataclass(frozen=True)
class UnitFailed:
    """A watched unit failed to start, or a unit it needs did: the marker will never come."""

    unit: str
    """The unit systemd named, e.g. ``kiosk-app.service``."""


@dataclass(frozen=True)
class CompositorFailed:
    """cage, which kiosk-app.service runs the app in, reported a fatal error (journal on the console)."""

    message: str
    """cage's message, e.g. ``Unable to open Wayland socket: Invalid argument``."""


@dataclass(frozen=True)
class KernelPanic:
    """The kernel gave up (no root file system, no init...)."""


ConsoleEvent = Ready | NotReady | UnitFailed | CompositorFailed | KernelPanic


class ConsoleWatcher:
    """Splits the console into lines and turns the lines that matter into events."""

    def __init__(self, watched_units: frozenset[str] = WATCHED_UNITS) -> None:
        self._watched = watched_units
        self._partial = bytearray()
        self._events: deque[ConsoleEvent] = deque()

    def receive_data(self, data: bytes) -> None:
        self._partial += data
        *lines, rest = self._partial.split(b"\n")
        self._partial = bytearray(rest[-MAX_LINE:])
        for line in lines:
            self._line(line[-MAX_LINE:].decode("utf-8", "replace"))

    def end_of_data(self) -> None:
        """The line closed (the machine stopped): the last, unterminated line counts too."""
        if self._partial:
            self._line(self._partial.decode("utf-8", "replace"))
            self._partial.clear()

    def next_event(self) -> ConsoleEvent | None:
        return self._events.popleft() if self._events else None

    def _line(self, raw: str) -> None:
        line = _ANSI.sub("", raw).replace("\r", "").strip()
        marker = _MARKER.search(line)
        if marker is not None and marker["marker"] == READY_MARKER and marker["state"] is None:
            self._events.append(Ready())
        elif marker is not None and marker["marker"] == NOT_READY_MARKER and marker["state"] is not None:
            self._events.append(NotReady(marker["state"]))
        elif cage := _CAGE_FATAL.search(line):
            self._events.append(CompositorFailed(cage["message"]))
        elif _PANIC.search(line):
            self._events.append(KernelPanic())
        elif (match := _FAILED.search(line)) and match.group(1) in self._watched:
            self._events.append(UnitFailed(match.group(1)))
