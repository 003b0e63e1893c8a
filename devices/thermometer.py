"""Driver of the LU90614-family serial infrared thermometer module.

The module says nothing until asked: :meth:`Thermometer.read` sends the
body-temperature command (``FA C5 BF``, PROTOCOLS.md) and waits for the 9-byte
reply. A read that gets no reply in time is sent once more, since a reading costs
the patient nothing; after that, :class:`DeviceTimeout`. A garbled reply is
asked again at once.

A value outside the body-mode range (the sensor aimed at the room or at a hot
object) is returned flagged ``OUT_OF_RANGE``, never as an error: the kiosk
decides what to tell the patient.
"""

from __future__ import annotations

import asyncio
import time

from devices.errors import DeviceDisconnected, DeviceError, DeviceTimeout
from devices.events import Quality, Reading
from devices.protocols import lu90614 as proto
from devices.serial_link import Clock, SerialDriver, SerialSettings

__all__ = ["Thermometer"]

MAX_SENDS = 4
"""Commands sent at most per read: one retry after silence, immediate ones after garbled replies."""


class _Corrupted:
    """Marker handed to a waiting read when bytes were dropped instead of its reply."""


_CORRUPTED = _Corrupted()


class Thermometer(SerialDriver):
    """An LU90614-family infrared thermometer publishing a ``celsius`` reading per read."""

    kind = "thermometer"
    # 9600 8N1: the module family's usual default (PROTOCOLS.md gives no line settings).
    settings: SerialSettings = proto.SETTINGS

    def __init__(self, path: str, *, name: str | None = None, clock: Clock = time.monotonic) -> None:
        super().__init__(path, name=name, clock=clock)
        self._parser = proto.ThermometerParser()
        self._waiter: asyncio.Future[tuple[proto.Temperature, float] | _Corrupted] | None = None
        self._lock = asyncio.Lock()

    # -- SerialDriver hooks ------------------------------------------------
    def _reset_protocol(self) -> None:
        self._parser = proto.ThermometerParser()

    def _on_data(self, data: bytes, now: float) -> None:
        events, corrupted = self._decode(self._parser, data)
        for event in events:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result((event, now))
            else:
                self.log.debug("%s: unsolicited reply", self.name)
        waiter = self._waiter
        if corrupted and waiter is not None and not waiter.done():
            # The reply may be what was dropped: ask again at once.
            waiter.set_result(_CORRUPTED)

    def _on_lost(self, error: DeviceError) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                DeviceDisconnected("The thermometer was disconnected during the reading.", device=self.name)
            )

    # -- public API ----------------------------------------------------------
    async def read(self, timeout: float = 2.0) -> Reading:
        """Take one body-temperature reading (``celsius``, unit ``Cel``).

        ``timeout`` bounds the whole read. With no reply after half of it, the
        command is sent once more; a garbled reply is asked again at once (up
        to :data:`MAX_SENDS` commands in all). Raises :class:`DeviceTimeout`
        when no valid reply comes, :class:`DeviceDisconnected` when the
        module is not connected or goes away.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            retried_silence = False
            for _send in range(MAX_SENDS):
                if self._link is None:
                    raise DeviceDisconnected("The thermometer is not connected.", device=self.name)
                waiter: asyncio.Future[tuple[proto.Temperature, float] | _Corrupted] = loop.create_future()
                self._waiter = waiter
                wait = deadline - loop.time() if retried_silence else timeout / 2
                try:
                    self._send(proto.READ_BODY_TEMPERATURE)
                    outcome = await asyncio.wait_for(waiter, max(wait, 0.0))
                except TimeoutError:
                    if retried_silence or loop.time() >= deadline:
                        break
                    self.log.debug("%s: no reply, asking again", self.name)
                    retried_silence = True
                    continue
                finally:
                    self._waiter = None
                if isinstance(outcome, _Corrupted):
                    continue
                temperature, now = outcome
                quality = frozenset() if temperature.in_range else frozenset({Quality.OUT_OF_RANGE})
                reading = Reading("celsius", temperature.celsius, "Cel", now, quality)
                self._publish(reading)
                return reading
        raise DeviceTimeout("The thermometer did not answer.", device=self.name)
