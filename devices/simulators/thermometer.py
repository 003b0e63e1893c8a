"""Emulator of the LU90614-family infrared thermometer module (PROTOCOLS.md, "Thermometer").

The firmware answers each ``FA C5 BF`` with a 9-byte reply in the layout
chosen in :mod:`devices.protocols.lu90614`, about 20 ms later, as the module
needs a moment to sample the sensor. Other bytes are ignored, as the module
ignores what it does not understand.

Scenarios set the body temperature the sensor sees; each read varies by a
few hundredths around a value drawn once per power-up:

- ``normal`` and ``hypertension``: 36.4-37.2 °C;
- ``tachycardia`` (a fever often comes with it): 38.3-39.2 °C;
- ``fever``: 38.5-40.0 °C;
- ``out-of-range``: the sensor aimed at something hot, 65-80 °C, which the
  driver flags instead of reporting as a body temperature.
"""

from __future__ import annotations

from typing import ClassVar

from devices.protocols import lu90614 as proto
from devices.simulators.base import Firmware

REPLY_DELAY = 0.02
"""Seconds between the command and the reply."""

_RANGES: dict[str, tuple[float, float]] = {
    "normal": (36.4, 37.2),
    "hypertension": (36.4, 37.2),
    "tachycardia": (38.3, 39.2),
    "fever": (38.5, 40.0),
    "out-of-range": (65.0, 80.0),
}


class ThermometerFirmware(Firmware):
    """The thermometer module's firmware, sans-IO."""

    kind: ClassVar[str] = "thermometer"
    scenarios: ClassVar[tuple[str, ...]] = tuple(_RANGES)

    def __init__(self, scenario: str | None = None, *, seed: int = 0) -> None:
        super().__init__(scenario, seed=seed)
        low, high = _RANGES[self.scenario]
        self._low, self._high = low, high
        self.body = self.random.uniform(low, high)
        """The temperature the sensor sees, °C, drawn once per power-up."""
        self.ambient = self.random.uniform(21.0, 25.0)
        self.requests = 0
        """Read commands received."""
        self._received = bytearray()
        self._due: list[float] = []

    def receive_data(self, data: bytes, now: float) -> None:
        self._received += data
        while True:
            found = self._received.find(proto.READ_BODY_TEMPERATURE)
            if found < 0:
                # Keep only what could still begin a command.
                keep = len(proto.READ_BODY_TEMPERATURE) - 1
                del self._received[: max(0, len(self._received) - keep)]
                return
            del self._received[: found + len(proto.READ_BODY_TEMPERATURE)]
            self.requests += 1
            self._due.append(now + REPLY_DELAY)

    def get_timer(self) -> float | None:
        return self._due[0] if self._due else None

    def handle_timer(self, now: float) -> None:
        while self._due and self._due[0] <= now:
            self._due.pop(0)
            reading = min(max(self.body + self.random.gauss(0, 0.03), self._low), self._high)
            self._emit(proto.reply_frame(reading, self.ambient + self.random.gauss(0, 0.05)))
