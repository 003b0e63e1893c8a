"""Emulator of the SunTech Advantage-style NIBP module (PROTOCOLS.md, "Blood pressure").

The firmware answers the host's frames as the module does and runs an
oscillometric cycle with a plausible pressure curve:

- ``start`` is acknowledged ``O`` (``B`` while a cycle runs); the pump then
  inflates the cuff at about 25 mmHg/s up to the initial inflation (160 mmHg
  by default, or systolic + 30 when that is higher, as a module re-inflates
  when the first target was under the systolic pressure);
- the cuff then deflates in steps of about 5 mmHg a second, the way a
  step-deflation module looks for oscillations, until it is well under the
  diastolic pressure, then the dump valve empties it;
- the BP data block says status 0 while the cycle runs and non-zero once it
  is over, with the result or the scenario's error code;
- ``abort`` is acknowledged ``A`` and empties the cuff at once; a frame with a
  bad checksum or an unknown command gets ``N``.

The pressure never goes over the module's own 300 mmHg limit: reaching it
dumps the cuff and ends the cycle with error 89, whatever the scenario.

``speed`` runs the cycle's clock faster (10 gives a full cycle in about three
seconds) so tests need not wait for a real measurement.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from devices.errors import RemoteProtocolError
from devices.protocols import NEED_DATA
from devices.protocols import suntech as proto
from devices.simulators.base import Firmware

TICK = 0.05
"""Real seconds between two steps of the pressure model while a cycle runs."""
SAFETY_LIMIT = 300.0
"""The module's over-pressure limit, mmHg (PROTOCOLS.md)."""
DEFAULT_INITIAL_INFLATE = 160
DUMP_RATE = 60.0
"""mmHg per (device) second through the dump valve."""


@dataclass(frozen=True)
class Physiology:
    """Typical values of a scenario, before the per-cycle variation."""

    systolic: float
    diastolic: float
    pulse: float


_PHYSIOLOGY: dict[str, Physiology] = {
    "normal": Physiology(120, 80, 70),
    "hypertension": Physiology(165, 100, 78),
    "tachycardia": Physiology(122, 82, 130),
}

_ERROR_SCENARIOS: dict[str, int] = {
    "weak-signal": 1,
    "error-1": 1,
    "error-2": 2,
    "error-3": 3,
    "error-4": 4,
    "error-85": 85,
    "error-87": 87,
    "error-89": 89,
    "error-90": 90,
}


class Phase(enum.Enum):
    """Where the module is in its cycle."""

    IDLE = "idle"
    INFLATING = "inflating"
    HOLDING = "holding"
    DEFLATING = "deflating"
    DUMPING = "dumping"


class NibpFirmware(Firmware):
    """The NIBP module's firmware, sans-IO."""

    kind: ClassVar[str] = "nibp"
    scenarios: ClassVar[tuple[str, ...]] = ("normal", "hypertension", "tachycardia", *_ERROR_SCENARIOS)

    def __init__(self, scenario: str | None = None, *, seed: int = 0, speed: float = 1.0) -> None:
        super().__init__(scenario, seed=seed)
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.cuff_pressure = 0.0
        """Current cuff pressure, mmHg (tests watch it)."""
        self.peak_pressure = 0.0
        """Highest pressure of the current or last cycle, mmHg."""
        self.phase = Phase.IDLE
        self.cycles_started = 0
        self.aborts = 0
        self.commands: list[proto.HostCommand] = []
        """Every command received, in order (tests inspect it)."""
        self._parser = proto.HostCommandParser()
        self._initial_inflate = DEFAULT_INITIAL_INFLATE
        self._last: float | None = None
        self._phase_time = 0.0
        self._step_wait = 0.0
        self._target = 0.0
        self._inflate_rate = 25.0
        self._error = 0
        self._values = (0, 0, 0, 0)  # systolic, diastolic, mean, pulse
        self._status = 0
        self._result = (0, 0, 0, 0)
        self._diastolic = 0.0
        self._aborting = False

    # -- host side ----------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        self._advance(now)
        self._parser.receive_data(data)
        while True:
            try:
                command = self._parser.next_event()
            except RemoteProtocolError:
                self._emit(proto.ack_frame("N"))
                continue
            if command is NEED_DATA:
                return
            self.commands.append(command)
            self._handle(command, now)

    def _handle(self, command: proto.HostCommand, now: float) -> None:
        if isinstance(command, proto.GetCuffPressure):
            self._emit(proto.cuff_pressure_frame(round(self.cuff_pressure)))
        elif isinstance(command, proto.GetBpData):
            systolic, diastolic, mean, pulse = self._values
            self._emit(
                proto.bp_data_frame(
                    systolic=systolic,
                    diastolic=diastolic,
                    mean=mean,
                    pulse=pulse,
                    error_code=self._error if self._status else 0,
                    status=self._status,
                )
            )
        elif isinstance(command, proto.StartMeasurement):
            if self.phase is not Phase.IDLE:
                self._emit(proto.ack_frame("B"))
                return
            self._emit(proto.ack_frame("O"))
            self._start_cycle(now)
        elif isinstance(command, proto.Abort):
            self._emit(proto.ack_frame("A"))
            if self.phase is not Phase.IDLE:
                self.aborts += 1
                self._error = 0
                self._status = 0
                self._values = (0, 0, 0, 0)
                self._enter(Phase.DUMPING)
                self._aborting = True
        elif isinstance(command, proto.SetInitialInflate):
            if not proto.MIN_INITIAL_INFLATE <= command.mmhg <= proto.MAX_INITIAL_INFLATE:
                self._emit(proto.ack_frame("N"))
            elif self.phase is not Phase.IDLE:
                self._emit(proto.ack_frame("B"))
            else:
                self._initial_inflate = command.mmhg
                self._emit(proto.ack_frame("K"))
        elif isinstance(command, proto.CloseValves):
            # Pump off; the cuff keeps emptying if it was (see the
            # uncertainty note in devices/protocols/suntech.py).
            if self.phase in (Phase.INFLATING, Phase.HOLDING):
                self._enter(Phase.DUMPING)
                self._aborting = True
            self._emit(proto.ack_frame("K"))

    # -- the cycle --------------------------------------------------------
    def _start_cycle(self, now: float) -> None:
        self.cycles_started += 1
        self._aborting = False
        self._status = 0
        self._values = (0, 0, 0, 0)
        self._error = _ERROR_SCENARIOS.get(self.scenario, 0)
        base = _PHYSIOLOGY.get(self.scenario, _PHYSIOLOGY["normal"])
        gauss = self.random.gauss
        systolic = base.systolic + gauss(0, 3)
        diastolic = min(base.diastolic + gauss(0, 2.5), systolic - 25)
        pulse = base.pulse + gauss(0, 2)
        mean = diastolic + (systolic - diastolic) / 3
        self._result = (round(systolic), round(diastolic), round(mean), round(pulse))
        self._diastolic = diastolic
        self._target = min(max(self._initial_inflate, systolic + 30), proto.MAX_INITIAL_INFLATE)
        self._inflate_rate = self.random.uniform(22, 28)
        if self._error == 87:
            # A loose cuff or a leak: the pump runs but the pressure crawls.
            self._inflate_rate = 4.0
        elif self._error == 85:
            # A blocked tube: the sensor sees the pressure jump.
            self._inflate_rate = 80.0
        elif self._error == 89:
            # The pressure runs away past the target, up to the safety limit.
            self._target = SAFETY_LIMIT + 50
            self._inflate_rate = 40.0
        self.peak_pressure = 0.0
        self._last = now
        self._enter(Phase.INFLATING)

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self._phase_time = 0.0
        self._step_wait = self.random.uniform(0.8, 1.2)

    def _advance(self, now: float) -> None:
        if self._last is None or self.phase is Phase.IDLE:
            self._last = now
            return
        dt = max(0.0, now - self._last) * self.speed
        self._last = now
        self._phase_time += dt
        if self.phase is Phase.INFLATING:
            self.cuff_pressure += self._inflate_rate * dt
            if self.cuff_pressure >= SAFETY_LIMIT:
                self._finish_with_error(89)
            elif self._error == 87 and self._phase_time >= 10.0:
                self._finish_with_error(87)
            elif self._error == 90 and self.cuff_pressure >= 30:
                self._finish_with_error(90)
            elif self.cuff_pressure >= self._target:
                self.cuff_pressure = self._target
                self._enter(Phase.HOLDING if self._error == 85 else Phase.DEFLATING)
        elif self.phase is Phase.HOLDING:
            # Blocked tube: the bleed valve opens but the pressure stays.
            if self._phase_time >= 2.0:
                self._finish_with_error(85)
        elif self.phase is Phase.DEFLATING:
            self._step_wait -= dt
            while self._step_wait <= 0:
                self.cuff_pressure = max(0.0, self.cuff_pressure - self.random.uniform(4.0, 6.0))
                self._step_wait += self.random.uniform(0.8, 1.2)
            if self.cuff_pressure < self._diastolic - 15:
                self._enter(Phase.DUMPING)
        elif self.phase is Phase.DUMPING:
            self.cuff_pressure = max(0.0, self.cuff_pressure - DUMP_RATE * dt)
            if self.cuff_pressure <= 0:
                self.phase = Phase.IDLE
                if not self._aborting:
                    self._status = 1
                    if self._error == 0:
                        self._values = self._result
        self.cuff_pressure = min(self.cuff_pressure, SAFETY_LIMIT)
        self.peak_pressure = max(self.peak_pressure, self.cuff_pressure)

    def _finish_with_error(self, code: int) -> None:
        self._error = code
        self.cuff_pressure = min(self.cuff_pressure, SAFETY_LIMIT)
        self._enter(Phase.DUMPING)

    # -- timer ------------------------------------------------------------
    def get_timer(self) -> float | None:
        if self.phase is Phase.IDLE or self._last is None:
            return None
        return self._last + TICK

    def handle_timer(self, now: float) -> None:
        self._advance(now)
