"""Firmware emulators on pseudo-terminals.

An emulator is split like the drivers it tests: a sans-IO :class:`Firmware`
(bytes and ``now`` in, bytes out, one timer) and :class:`PtyRunner`, which
serves it on a real pseudo-terminal and injects the faults common to every
serial device: garbage on the line, silence, and unplug/replug (closing the
pty master, which a reader of the slave sees as a hang-up, as it sees a USB
serial adapter pulled out).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import logging
import os
import random
import tty
from collections.abc import Callable
from typing import ClassVar

logger = logging.getLogger(__name__)

COMMON_SCENARIOS: tuple[str, ...] = ("garbage", "silence", "unplug")
"""Scenarios handled by :class:`PtyRunner` on top of the firmware's normal run."""


class UnknownScenario(ValueError):
    """The scenario name is not one this emulator knows."""


class Firmware(abc.ABC):
    """A peripheral's firmware as a sans-IO state machine.

    ``receive_data`` takes what the host wrote, ``data_to_send`` returns what
    the device says, ``get_timer``/``handle_timer`` drive its own pace
    (aioquic's shape). ``now`` is a monotonic time in seconds.
    """

    kind: ClassVar[str]
    scenarios: ClassVar[tuple[str, ...]]
    """Device-specific scenarios; the first is the default."""

    def __init__(self, scenario: str | None = None, *, seed: int = 0) -> None:
        scenario = scenario or self.scenarios[0]
        if scenario not in self.scenarios:
            raise UnknownScenario(f"{self.kind} has no scenario {scenario!r}; known: {', '.join(self.scenarios)}")
        self.scenario = scenario
        self.random = random.Random(seed)
        self._out = bytearray()

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def _emit(self, data: bytes) -> None:
        self._out += data

    @abc.abstractmethod
    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes the host wrote to the device."""

    @abc.abstractmethod
    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` wants to run next, or ``None``."""

    @abc.abstractmethod
    def handle_timer(self, now: float) -> None:
        """Advance the firmware's own clock to ``now``."""


def split_scenario(scenario: str | None, firmware_scenarios: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Split a scenario name into (firmware scenario, common fault)."""
    if scenario in COMMON_SCENARIOS:
        return None, scenario
    if scenario is None or scenario in firmware_scenarios:
        return scenario, None
    raise UnknownScenario(f"unknown scenario {scenario!r}; known: {', '.join(firmware_scenarios + COMMON_SCENARIOS)}")


class PtyRunner:
    """Serves one :class:`Firmware` on a pseudo-terminal.

    ``link``, when given, is a symlink kept pointing at the current slave, as
    udev keeps ``/dev/serial/by-id/...``: it disappears on unplug and comes
    back (to a new ``/dev/pts/N``) on replug.
    """

    def __init__(
        self,
        firmware_factory: Callable[[], Firmware],
        *,
        link: str | None = None,
        fault: str | None = None,
        seed: int = 0,
        garbage_rate: float = 0.3,
        unplug_after: float = 3.0,
        unplug_for: float = 1.5,
    ) -> None:
        if fault is not None and fault not in COMMON_SCENARIOS:
            raise UnknownScenario(f"unknown fault {fault!r}")
        self._factory = firmware_factory
        self.link = link
        self.fault = fault
        self._random = random.Random(seed)
        self.garbage_rate = garbage_rate
        self.unplug_after = unplug_after
        self.unplug_for = unplug_for
        self.firmware: Firmware | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name: str | None = None
        self._pending = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._fault_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.plugged = asyncio.Event()
        self.bytes_written = 0

    @property
    def port(self) -> str:
        """The path a driver should open: the link if any, else the slave."""
        assert self.slave_name is not None
        return self.link or self.slave_name

    # -- plugging ----------------------------------------------------------
    def plug(self) -> str:
        """Power the device and attach it on a fresh pty; return its port."""
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        # Raw at once: a cooked pty would echo the firmware's own output back
        # to it and translate CR/LF inside binary frames.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        if self.link:
            tmp = f"{self.link}.new"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.slave_name, tmp)
            os.replace(tmp, self.link)
        self.firmware = self._factory()
        self._pending.clear()
        self._loop.add_reader(master, self._on_readable)
        self.plugged.set()
        self._schedule()
        if self.fault == "unplug":
            self._fault_timer = self._loop.call_later(self.unplug_after, self._timed_unplug)
        logger.info("%s emulator plugged on %s", self.firmware.kind, self.port)
        return self.port

    def unplug(self) -> None:
        """Pull the cable: close the master, remove the link."""
        if self._master is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._master)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        self.plugged.clear()
        logger.info("emulator unplugged")

    def _timed_unplug(self) -> None:
        self.unplug()
        assert self._loop is not None
        self._fault_timer = self._loop.call_later(self.unplug_for, self.plug)

    def close(self) -> None:
        if self._fault_timer is not None:
            self._fault_timer.cancel()
        self.unplug()

    # -- bytes -------------------------------------------------------------
    def _on_readable(self) -> None:
        assert self._master is not None and self.firmware is not None and self._loop is not None
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: nobody holds the slave open. Our own slave fd keeps that
            # from happening while plugged, so this is a real fault.
            if exc.errno != errno.EIO:
                raise
            return
        if self.fault == "silence":
            return
        self.firmware.receive_data(data, self._loop.time())
        self._flush()
        self._schedule()

    def _on_timer(self) -> None:
        self._timer = None
        if self.firmware is None or self._master is None:
            return
        assert self._loop is not None
        self.firmware.handle_timer(self._loop.time())
        self._flush()
        self._schedule()

    def _schedule(self) -> None:
        assert self.firmware is not None and self._loop is not None
        when = self.firmware.get_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _flush(self) -> None:
        assert self.firmware is not None
        data = self.firmware.data_to_send()
        if self.fault == "silence":
            return
        if data and self.fault == "garbage" and self._random.random() < self.garbage_rate:
            noise = bytes(self._random.randrange(256) for _ in range(self._random.randint(1, 12)))
            cut = self._random.randint(0, len(data))
            data = data[:cut] + noise + data[cut:]
        self._pending += data
        self._write_pending()

    def _write_pending(self) -> None:
        if self._master is None or not self._pending:
            return
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            written = 0
        except OSError:
            return
        self.bytes_written += written
        del self._pending[:written]
        if self._pending and self._loop is not None:
            # The reader is slow or absent: keep the newest second of output
            # at most, as a UART with nobody listening simply loses bytes.
            if len(self._pending) > 65536:
                del self._pending[:-65536]
            self._loop.call_later(0.01, self._write_pending)


async def serve_forever(runner: PtyRunner, on_ready: Callable[[str], None]) -> None:
    """Plug ``runner`` and keep it running until cancelled."""
    port = runner.plug()
    on_ready(port)
    try:
        await asyncio.Event().wait()
    finally:
        runner.close()
