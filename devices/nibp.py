"""Driver of the SunTech Advantage-style NIBP (blood-pressure) module.

A measurement inflates a cuff around the patient's arm. **The kiosk must tell
the patient, and have them ready, before calling** :meth:`BloodPressureMonitor.measure`;
this driver never starts an inflation by itself and never retries one: after
any failure, a new measurement is the caller's (and the patient's) decision.

How a cycle is followed (PROTOCOLS.md, "A measurement cycle"): the driver
sends start and waits for the ``O`` acknowledgement, then polls the cuff
pressure every ``poll_interval`` seconds, publishing each value as a
``cuff_pressure`` reading. Once the cuff has been inflated and is back near
empty, it reads the BP data block; a non-zero status byte means the cycle is
over, and the block then holds either the result or an error code.

Whether a real module clears the status byte when a new cycle starts is not
documented, so a status read right after start could be the previous
measurement's. The driver therefore only asks for the BP data once the cuff
has been seen inflated (over :data:`INFLATED_MMHG`) and emptied again, or,
for a module that fails before inflating at all, after
:attr:`BloodPressureMonitor.no_inflation_grace` seconds with an empty cuff.

Safety: :meth:`BloodPressureMonitor.abort` writes the abort command at once,
whatever is in flight, and any failure of a running cycle (time-out, lost
reply, cancellation) sends abort too, so the cuff is never left inflated by
the kiosk. A corrupted reply to a read (cuff pressure, BP data) is asked
again; start is never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Final, TypeVar

from devices.errors import (
    CommandRefused,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    LocalProtocolError,
    MeasurementAborted,
    RemoteProtocolError,
)
from devices.events import DeviceState, Quality, Reading
from devices.protocols import suntech as proto
from devices.protocols.suntech import (
    ErraticSignal,
    InflateTimeout,
    MeasurementTimeout,
    NibpMeasurementError,
    OverPressure,
    PneumaticBlockage,
    PowerSupplyFault,
    RetryLimitExceeded,
    WeakSignal,
)
from devices.serial_link import Clock, FrameParser, SerialDriver, SerialSettings

__all__ = [
    "BloodPressureMonitor",
    "BloodPressureResult",
    "ErraticSignal",
    "InflateTimeout",
    "MeasurementTimeout",
    "NibpMeasurementError",
    "OverPressure",
    "PneumaticBlockage",
    "PowerSupplyFault",
    "RetryLimitExceeded",
    "WeakSignal",
]

INFLATED_MMHG: Final = 20
"""A cuff over this pressure has been inflated by the cycle."""
DEFLATED_MMHG: Final = 10
"""A cuff under this pressure is considered empty."""
MAX_PLAUSIBLE_MMHG: Final = 320
"""Cuff pressures over this cannot come from a module limited to 300 mmHg: a corrupted frame."""
READ_ATTEMPTS: Final = 5
"""How many times a read whose reply was corrupted is sent before giving up."""
PULSE_RANGE: Final = (20, 300)
"""Heart rates a module can report; a result outside it is treated as a corrupted block and read again."""
CLOSE_VALVES_AFTER_ABORT: Final = False
"""Send ``close_valves`` after ``abort``. Off: the module's own abort stops the
pump and dumps the cuff, and "close all valves" may mean holding air in the
cuff on an arm (PROTOCOLS.md does not say). Until a real module shows the
command is harmless after an abort, the safe choice is not to send it; see
the note in :mod:`devices.protocols.suntech`."""

_E = TypeVar("_E", proto.Ack, proto.CuffPressure, proto.BpData)


class _Corrupted:
    """Marker handed to a waiting request when bytes were dropped instead of its reply."""


_CORRUPTED: Final = _Corrupted()


@dataclass(frozen=True)
class BloodPressureResult:
    """The outcome of a successful measurement."""

    systolic: Reading
    """Systolic pressure, ``mm[Hg]``."""
    diastolic: Reading
    """Diastolic pressure, ``mm[Hg]``."""
    mean: Reading
    """Mean arterial pressure, ``mm[Hg]``."""
    pulse: Reading
    """Heart rate measured during the cycle, ``/min``."""
    time: float
    """Host monotonic time at which the BP data block arrived."""


class BloodPressureMonitor(SerialDriver):
    """A SunTech-style NIBP module: one measurement at a time, abortable at any moment."""

    kind = "nibp"
    settings: SerialSettings = proto.SETTINGS
    command_timeout = 1.0
    """Seconds the module has to answer a command."""
    no_inflation_grace = 3.0
    """Seconds after start with an empty cuff after which the BP data may be read (a module that failed early)."""

    def __init__(self, path: str, *, name: str | None = None, clock: Clock = time.monotonic) -> None:
        super().__init__(path, name=name, clock=clock)
        self._parser = proto.NibpParser()
        self._waiter: asyncio.Future[tuple[proto.ModuleEvent, float] | _Corrupted] | None = None
        self._waiting_for: type[proto.ModuleEvent] = proto.Ack
        self._lock = asyncio.Lock()
        self._cycle: asyncio.Task[BloodPressureResult] | None = None
        self._stop_reason: DeviceError | None = None
        self._abort_acked = asyncio.Event()
        self._valves_acked = asyncio.Event()
        self._expect_valves_ack = False

    # -- SerialDriver hooks ------------------------------------------------
    def _reset_protocol(self) -> None:
        self._parser = proto.NibpParser()
        self._expect_valves_ack = False

    def _on_data(self, data: bytes, now: float) -> None:
        parser: FrameParser[proto.ModuleEvent] = self._parser
        events, corrupted = self._decode(parser, data)
        for event in events:
            self._on_event(event, now)
        waiter = self._waiter
        if corrupted and waiter is not None and not waiter.done():
            # The reply we wait for may be what was dropped: ask again now
            # rather than after a time-out.
            waiter.set_result(_CORRUPTED)

    def _on_event(self, event: proto.ModuleEvent, now: float) -> None:
        if isinstance(event, proto.Ack) and event.letter == "A":
            self._abort_acked.set()
            return
        if isinstance(event, proto.Ack) and event.letter == "K" and self._expect_valves_ack:
            # The answer to close_valves sent with an abort: nobody's reply.
            self._expect_valves_ack = False
            self._valves_acked.set()
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.log.debug("%s: unsolicited %s", self.name, type(event).__name__)
            return
        if isinstance(event, self._waiting_for) or (isinstance(event, proto.Ack) and event.letter in "BN"):
            waiter.set_result((event, now))
        else:
            # A late reply to an earlier, re-sent request.
            self.log.debug("%s: ignored a late %s", self.name, type(event).__name__)

    def _on_lost(self, error: DeviceError) -> None:
        cycle = self._cycle
        if cycle is not None and not cycle.done() and self._stop_reason is None:
            self._stop_reason = self._disconnected()
            cycle.cancel()

    # -- public API ----------------------------------------------------------
    @property
    def measuring(self) -> bool:
        """Whether a measurement is running."""
        return self._cycle is not None

    async def measure(
        self,
        *,
        initial_inflate: int | None = None,
        poll_interval: float = 0.2,
        timeout: float = 150.0,
    ) -> BloodPressureResult:
        """Run one measurement cycle and return its result.

        The kiosk must have told the patient before calling: this inflates
        the cuff. ``initial_inflate`` (80-280 mmHg) sets the first inflation
        target; the module's default otherwise. Cuff pressures are published
        as ``cuff_pressure`` readings while the cycle runs, and the result as
        ``systolic``, ``diastolic``, ``mean`` and ``pulse`` readings.

        Raises :class:`CommandRefused` when a measurement is already running
        or the module refuses to start, :class:`NibpMeasurementError` (a
        subclass per error code) when the module reports an error,
        :class:`MeasurementAborted` after :meth:`abort`,
        :class:`DeviceDisconnected` when the module goes away,
        :class:`DeviceTimeout` when it stops answering or the cycle outlasts
        ``timeout`` seconds. Never retried by itself.
        """
        if self._cycle is not None:
            raise CommandRefused("A blood-pressure measurement is already running.", device=self.name)
        if (
            initial_inflate is not None
            and not proto.MIN_INITIAL_INFLATE <= initial_inflate <= proto.MAX_INITIAL_INFLATE
        ):
            raise LocalProtocolError(
                f"initial inflation must be {proto.MIN_INITIAL_INFLATE}-{proto.MAX_INITIAL_INFLATE} mmHg",
                device=self.name,
            )
        if self._link is None:
            raise DeviceDisconnected("The blood-pressure monitor is not connected.", device=self.name)
        if self._expect_valves_ack:
            # Let the answer to an earlier close_valves go by before talking.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._valves_acked.wait(), self.command_timeout)
            self._expect_valves_ack = False
        if self._cycle is not None:
            raise CommandRefused("A blood-pressure measurement is already running.", device=self.name)
        self._stop_reason = None
        cycle = asyncio.create_task(self._run_cycle(initial_inflate, poll_interval), name=f"{self.name}-cycle")
        self._cycle = cycle
        try:
            async with asyncio.timeout(timeout):
                return await cycle
        except asyncio.CancelledError:
            reason = self._stop_reason
            current = asyncio.current_task()
            if reason is not None and (current is None or current.cancelling() == 0):
                raise reason from None
            # Our caller gave up on the measurement: never leave the cuff inflated.
            self._release_cuff()
            raise
        except TimeoutError:
            self._release_cuff()
            raise DeviceTimeout(
                "The blood-pressure measurement took too long and was stopped.", device=self.name
            ) from None
        except NibpMeasurementError:
            # The module finished its cycle and emptied the cuff itself.
            raise
        except DeviceDisconnected as exc:
            raise self._disconnected() from exc
        except DeviceError:
            self._release_cuff()
            raise
        finally:
            if not cycle.done():
                cycle.cancel()
                with contextlib.suppress(BaseException):
                    await cycle
            self._cycle = None
            if self.state is DeviceState.MEASURING:
                self._set_state(DeviceState.CONNECTED)

    async def abort(self) -> None:
        """Stop the running measurement, if any, and deflate the cuff at once.

        Works at any moment, even while a command is in flight: the abort
        command is written first, then the pending :meth:`measure` raises
        :class:`MeasurementAborted`. Harmless when nothing runs. Raises
        :class:`DeviceDisconnected` when the module cannot be reached, and
        :class:`DeviceTimeout` when it does not confirm the abort: the cuff
        may then need loosening by hand.
        """
        self._abort_acked.clear()
        sent_error: DeviceError | None = None
        try:
            self._send_abort()
        except DeviceError as exc:
            sent_error = exc
        cycle = self._cycle
        if cycle is not None and not cycle.done() and self._stop_reason is None:
            self._stop_reason = MeasurementAborted("The blood-pressure measurement was stopped.", device=self.name)
            cycle.cancel()
        self.log.info("%s: abort requested", self.name)
        if sent_error is not None:
            raise DeviceDisconnected(
                "The blood-pressure monitor cannot be reached to release the cuff: loosen the cuff by hand.",
                device=self.name,
            ) from sent_error
        try:
            await asyncio.wait_for(self._abort_acked.wait(), self.command_timeout)
        except TimeoutError:
            raise DeviceTimeout(
                "The blood-pressure monitor did not confirm the stop: loosen the cuff by hand.", device=self.name
            ) from None
        if self._expect_valves_ack:
            # Wait for the pump-off answer too, so it cannot be taken for the
            # answer to the next command.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._valves_acked.wait(), self.command_timeout)

    # -- the cycle -----------------------------------------------------------
    async def _run_cycle(self, initial_inflate: int | None, poll_interval: float) -> BloodPressureResult:
        loop = asyncio.get_running_loop()
        if initial_inflate is not None:
            ack, _ = await self._request(proto.set_initial_inflate(initial_inflate), proto.Ack)
            if ack.letter not in "OK":
                raise self._refusal(ack.letter, "the initial inflation setting")
        ack, _ = await self._request(proto.start_measurement(), proto.Ack, resend=False)
        if ack.letter != "O":
            raise self._refusal(ack.letter, "the start of the measurement")
        self.log.info("%s: measurement started", self.name)
        self._set_state(DeviceState.MEASURING)
        started = loop.time()
        peak = 0
        while True:
            await asyncio.sleep(poll_interval)
            cuff, now = await self._request(proto.get_cuff_pressure(), proto.CuffPressure)
            if cuff.mmhg > MAX_PLAUSIBLE_MMHG:
                self.protocol_errors += 1
                continue
            self._publish(Reading("cuff_pressure", float(cuff.mmhg), "mm[Hg]", now))
            peak = max(peak, cuff.mmhg)
            emptied = cuff.mmhg <= DEFLATED_MMHG
            if emptied and (peak >= INFLATED_MMHG or loop.time() - started >= self.no_inflation_grace):
                data, now = await self._request(proto.get_bp_data(), proto.BpData)
                if data.ready and (data.error_code != 0 or _plausible(data)):
                    break
                if data.ready:
                    # An 8-bit checksum lets a garbled block through now and
                    # then; a real result is never shaped like this.
                    self.protocol_errors += 1
        if data.error_code != 0:
            self.log.info("%s: module reported error code %d", self.name, data.error_code)
            raise proto.error_for_code(data.error_code, device=self.name)
        result = BloodPressureResult(
            systolic=_reading("systolic", data.systolic, "mm[Hg]", now),
            diastolic=_reading("diastolic", data.diastolic, "mm[Hg]", now),
            mean=_reading("mean", data.mean, "mm[Hg]", now),
            pulse=_reading("pulse", data.pulse, "/min", now),
            time=now,
        )
        for reading in (result.systolic, result.diastolic, result.mean, result.pulse):
            self._publish(reading)
        self.log.info("%s: measurement finished", self.name)
        return result

    async def _request(self, command: bytes, expect: type[_E], *, resend: bool = True) -> tuple[_E, float]:
        """Send ``command`` and return the reply of type ``expect`` and its arrival time.

        An ``N``/``B`` acknowledgement instead of the reply raises
        :class:`CommandRefused`. When ``resend``, a reply lost to corruption is
        asked again, up to :data:`READ_ATTEMPTS` times.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            for attempt in range(1, READ_ATTEMPTS + 1):
                waiter: asyncio.Future[tuple[proto.ModuleEvent, float] | _Corrupted] = loop.create_future()
                self._waiter = waiter
                self._waiting_for = expect
                try:
                    self._send(command)
                    async with asyncio.timeout(self.command_timeout):
                        outcome = await waiter
                except TimeoutError:
                    raise DeviceTimeout("The blood-pressure monitor stopped answering.", device=self.name) from None
                finally:
                    self._waiter = None
                if isinstance(outcome, _Corrupted):
                    if resend and attempt < READ_ATTEMPTS:
                        continue
                    raise RemoteProtocolError(
                        "The blood-pressure monitor's answer was garbled on the line.", device=self.name
                    )
                event, now = outcome
                if isinstance(event, expect):
                    return event, now
                assert isinstance(event, proto.Ack)
                raise self._refusal(event.letter, "a command")
            raise AssertionError("unreachable")

    def _refusal(self, letter: str, what: str) -> CommandRefused:
        if letter == "B":
            return CommandRefused(f"The blood-pressure monitor is busy and refused {what}.", device=self.name)
        return CommandRefused(f"The blood-pressure monitor refused {what} (answer {letter!r}).", device=self.name)

    def _disconnected(self) -> DeviceDisconnected:
        return DeviceDisconnected(
            "The blood-pressure monitor was disconnected during the measurement. "
            "If the cuff is still tight, loosen it; the measurement can be taken again once it is reconnected.",
            device=self.name,
        )

    def _release_cuff(self) -> None:
        """Best effort: tell the module to abort and deflate (a failed cycle must not leave the cuff inflated)."""
        with contextlib.suppress(DeviceError):
            self._send_abort()

    def _send_abort(self) -> None:
        self._send(proto.abort())
        if CLOSE_VALVES_AFTER_ABORT:
            self._valves_acked.clear()
            self._expect_valves_ack = True
            self._send(proto.close_valves())


def _plausible(data: proto.BpData) -> bool:
    low, high = PULSE_RANGE
    # Mean and pulse may be 0 ("not reported", a None reading); the rest must hold.
    return (
        0 < data.diastolic < data.systolic <= MAX_PLAUSIBLE_MMHG
        and (data.mean == 0 or data.diastolic <= data.mean <= data.systolic)
        and (data.pulse == 0 or low <= data.pulse <= high)
    )


def _reading(kind: str, raw: int, unit: str, now: float) -> Reading:
    if raw == 0:
        return Reading(kind, None, unit, now, frozenset({Quality.NOT_VALID}))
    return Reading(kind, float(raw), unit, now)
