"""Emulators of both Contec CMS50D+ firmware generations.

:class:`LegacyOximeterFirmware` streams 5-byte frames from power-on, as the
older firmware does; :class:`OximeterFirmware` streams 9-byte frames once the
host sends the start command and stops when the keep-alive has been missing
for :attr:`OximeterFirmware.keep_alive_timeout`. Both send 60 frames a second
carrying a plethysmogram with a systolic upstroke and a dicrotic notch at the
simulated pulse rate. Frames are built from the layout constants of the
protocol modules, so the wire layout stays in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from devices.protocols import contec, contec_legacy
from devices.protocols.oximetry import NO_VALUE
from devices.simulators.base import Firmware

FRAME_RATE = 60.0
"""Live frames per second (PROTOCOLS.md: about 60 pleth samples a second)."""
BATCH = 3
"""Frames sent per timer tick (50 ms): a pty does not need one write per frame."""
MAX_CATCH_UP = 60
"""At most one second of frames sent at once after the firmware was starved."""

SCENARIOS: tuple[str, ...] = (
    "normal",
    "hypertension",
    "tachycardia",
    "hypoxia",
    "finger-out",
    "weak-signal",
    "probe-error",
    "searching",
)
SEARCH_SECONDS = 2.0

# (SpO2 range %, pulse range /min) per scenario; the oximeter does not see
# blood pressure, so "hypertension" gives normal oximetry.
_RANGES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "normal": ((96, 99), (62, 78)),
    "hypertension": ((96, 99), (62, 78)),
    "tachycardia": ((95, 98), (115, 140)),
    "hypoxia": ((86, 90), (80, 96)),
    "finger-out": ((96, 99), (62, 78)),
    "weak-signal": ((94, 98), (62, 78)),
    "probe-error": ((96, 99), (62, 78)),
    "searching": ((96, 99), (62, 78)),
}


def pleth_shape(phase: float) -> float:
    """Normalised finger pulse wave (0-1) over one cardiac cycle, ``phase`` in [0, 1).

    A fast systolic upstroke to the peak, an exponential run-off interrupted by
    the dicrotic notch and its small rebound (aortic valve closure), then the
    diastolic decay back to baseline.
    """
    if phase < 0.15:
        return math.sin(0.5 * math.pi * phase / 0.15) ** 2
    decay = math.exp(-(phase - 0.15) / 0.22)
    notch = 0.18 * math.exp(-(((phase - 0.42) / 0.05) ** 2))
    tail = max(0.0, 1.0 - (phase - 0.85) / 0.15) if phase > 0.85 else 1.0
    return min(1.0, (0.85 * decay + notch) * tail)


@dataclass(frozen=True)
class _Sample:
    """What the device reports on one frame; ``None`` is "no value"."""

    spo2: int | None
    pulse: int | None
    pleth: int
    signal: int
    bargraph: int
    finger_out: bool
    probe_error: bool
    searching: bool
    dropping: bool


class _Physiology:
    """The patient at the probe: SpO2, pulse and pulse-wave phase."""

    def __init__(self, firmware: Firmware) -> None:
        self.fw = firmware
        (spo2_lo, spo2_hi), (pulse_lo, pulse_hi) = _RANGES[firmware.scenario]
        self.spo2_range = (spo2_lo, spo2_hi)
        self.pulse_range = (pulse_lo, pulse_hi)
        rnd = firmware.random
        self.spo2 = rnd.uniform(spo2_lo, spo2_hi)
        self.pulse = rnd.uniform(pulse_lo, pulse_hi)
        self.phase = rnd.random()
        self.dropping = False
        self.flicker = False
        self.elapsed = 0.0

    def step(self, dt: float) -> bool:
        """Advance one frame; return True when a new beat starts."""
        self.elapsed += dt
        self.phase += self.pulse / 60.0 * dt
        if self.phase < 1.0:
            return False
        self.phase -= 1.0
        rnd = self.fw.random
        # Small beat-to-beat variation, kept inside the scenario's range.
        lo, hi = self.spo2_range
        old = self.spo2
        self.spo2 = min(hi + 0.49, max(lo - 0.49, self.spo2 + rnd.uniform(-0.4, 0.4)))
        self.dropping = self.fw.scenario == "hypoxia" and self.spo2 < old - 0.2
        lo, hi = self.pulse_range
        self.pulse = min(float(hi), max(float(lo), self.pulse + rnd.uniform(-1.5, 1.5)))
        self.flicker = self.fw.scenario == "weak-signal" and rnd.random() < 0.4
        return True

    def values(self) -> _Sample:
        """What the device would report on this frame; ``None`` = "no value"."""
        scenario = self.fw.scenario
        searching = scenario == "searching" and self.elapsed < SEARCH_SECONDS
        finger_out = scenario == "finger-out"
        probe_error = scenario == "probe-error"
        shape = pleth_shape(self.phase)
        noise = self.fw.random.uniform(-1.0, 1.0)
        if finger_out or probe_error:
            pleth, signal, bargraph = 0, 0, 0
        elif scenario == "weak-signal":
            pleth = round(50 + 12 * shape + 3 * noise)
            signal, bargraph = 1, round(3 * shape)
        else:
            pleth = round(20 + 85 * shape + noise)
            signal, bargraph = 6, round(15 * shape)
        spo2: int | None = round(self.spo2)
        pulse: int | None = round(self.pulse)
        if pulse == NO_VALUE:
            # 127 means "no value" on the wire (PROTOCOLS.md): the device
            # cannot show it, so neither does its emulator.
            pulse = NO_VALUE + 1
        if finger_out or probe_error or searching or self.flicker:
            spo2 = pulse = None
        return _Sample(
            spo2=spo2,
            pulse=pulse,
            pleth=max(0, min(127, pleth)),
            signal=signal,
            bargraph=max(0, min(15, bargraph)),
            finger_out=finger_out,
            probe_error=probe_error,
            searching=searching,
            dropping=self.dropping and spo2 is not None,
        )


class _StreamingFirmware(Firmware):
    scenarios: ClassVar[tuple[str, ...]] = SCENARIOS

    def __init__(self, scenario: str | None = None, *, seed: int = 0) -> None:
        super().__init__(scenario, seed=seed)
        self.body = _Physiology(self)
        self.streaming = False
        self._next_frame: float | None = None
        self.frames_sent = 0

    def get_timer(self) -> float | None:
        if not self.streaming:
            return None
        if self._next_frame is None:
            return 0.0  # start at once: handle_timer learns the time
        return self._next_frame + (BATCH - 1) / FRAME_RATE

    def handle_timer(self, now: float) -> None:
        if not self.streaming:
            return
        if self._next_frame is None:
            self._next_frame = now
        sent = 0
        while self._next_frame <= now and sent < MAX_CATCH_UP:
            beat = self.body.step(1.0 / FRAME_RATE)
            self._emit(self._frame(beat))
            self._next_frame += 1.0 / FRAME_RATE
            sent += 1
        self.frames_sent += sent
        if self._next_frame <= now:
            # Starved for more than a second: a UART loses what it could not send.
            self._next_frame = now + 1.0 / FRAME_RATE

    def _frame(self, beat: bool) -> bytes:
        raise NotImplementedError


class LegacyOximeterFirmware(_StreamingFirmware):
    """Older CMS50D+ firmware: 5-byte frames, streaming from power-on, ignores the host."""

    kind: ClassVar[str] = "oximeter-legacy"

    def __init__(self, scenario: str | None = None, *, seed: int = 0) -> None:
        super().__init__(scenario, seed=seed)
        self.streaming = True

    def receive_data(self, data: bytes, now: float) -> None:
        # The live stream needs no command; stored-data download is not emulated.
        return

    def _frame(self, beat: bool) -> bytes:
        v = self.body.values()
        L = contec_legacy
        pulse = NO_VALUE if v.pulse is None else v.pulse
        spo2 = NO_VALUE if v.spo2 is None else v.spo2
        b0 = (
            L.SYNC_BIT
            | v.signal
            | (L.FINGER_OUT_BIT if v.finger_out else 0)
            | (L.DROPPING_BIT if v.dropping else 0)
            | (L.BEEP_BIT if beat else 0)
        )
        b2 = (
            v.bargraph
            | (L.PROBE_ERROR_BIT if v.probe_error else 0)
            | (L.SEARCHING_BIT if v.searching else 0)
            | (L.PULSE_HIGH_BIT if pulse & 0x80 else 0)
        )
        return bytes([b0, v.pleth, b2, pulse & 0x7F, spo2 & 0x7F])


class OximeterFirmware(_StreamingFirmware):
    """Newer CMS50D+/E firmware: 9-byte frames after the start command, kept alive by the host."""

    kind: ClassVar[str] = "oximeter"
    keep_alive_timeout = 5.0
    """Seconds without a keep-alive (or start) after which the stream stops."""

    def __init__(self, scenario: str | None = None, *, seed: int = 0) -> None:
        super().__init__(scenario, seed=seed)
        self._inbox = bytearray()
        self._last_keep_alive = 0.0
        self.commands: list[int] = []
        """Opcodes received, in order (for tests)."""

    def receive_data(self, data: bytes, now: float) -> None:
        self._inbox += data
        while True:
            start = self._inbox.find(contec.COMMAND_PREFIX)
            if start < 0:
                del self._inbox[:-1]
                return
            if len(self._inbox) - start < len(contec.START_LIVE):
                del self._inbox[:start]
                return
            opcode = self._inbox[start + 2]
            del self._inbox[: start + len(contec.START_LIVE)]
            self.commands.append(opcode)
            if opcode == contec.OP_START_LIVE:
                if not self.streaming:
                    self.streaming = True
                    self._next_frame = now
                self._last_keep_alive = now
            elif opcode == contec.OP_KEEP_ALIVE:
                self._last_keep_alive = now
            elif opcode == contec.OP_STOP_LIVE:
                self.streaming = False
                self._next_frame = None

    def handle_timer(self, now: float) -> None:
        if self.streaming and now - self._last_keep_alive > self.keep_alive_timeout:
            self.streaming = False
            self._next_frame = None
            return
        super().handle_timer(now)

    def _frame(self, beat: bool) -> bytes:
        v = self.body.values()
        L = contec.LIVE_LAYOUT
        if v.finger_out or v.probe_error:
            status = L.status_no_data
        elif v.searching or v.spo2 is None or v.pulse is None:
            status = L.status_not_valid
        else:
            status = L.status_valid
        pulse = NO_VALUE if v.pulse is None else v.pulse
        spo2 = NO_VALUE if v.spo2 is None else v.spo2
        frame = bytearray(b"\x80" * L.length)
        frame[0] = L.frame_type
        frame[1] = L.status_base | status
        frame[L.pleth] = 0x80 | v.pleth
        frame[L.flags] = (
            0x80
            | v.bargraph
            | (L.probe_error_bit if v.probe_error else 0)
            | (L.searching_bit if v.searching else 0)
            | (L.beep_bit if beat else 0)
        )
        frame[L.signal] = (
            0x80
            | v.signal
            | (L.finger_out_bit if v.finger_out else 0)
            | (L.dropping_bit if v.dropping else 0)
            | (L.pulse_high_bit if pulse & 0x80 else 0)
        )
        frame[L.pulse] = 0x80 | (pulse & 0x7F)
        frame[L.spo2] = 0x80 | (spo2 & 0x7F)
        return bytes(frame)
