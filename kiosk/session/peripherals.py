"""The booth's peripherals as the consultation uses them: measure, stream, capture, stop.

The session never talks to a driver directly; it asks this service, which
turns driver readings into what the data channel carries
(:class:`~kiosk.session.datachannel.Measurement`, oximeter slices, JPEG stills)
and driver errors into one :class:`PeripheralError` with a plain message.
Every peripheral is optional: a booth without a thermometer answers
``thermometer.read`` with a clear refusal rather than a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from devices.camera import UvcCamera
from devices.errors import DeviceError
from devices.events import DeviceState, Reading, StateChanged
from devices.nibp import BloodPressureMonitor
from devices.oximeter import Oximeter
from devices.thermometer import Thermometer
from kiosk.session.datachannel import MAX_PLETH_SAMPLES, Measurement
from kiosk.session.tracks import StethoscopeTrack, SwitchableVideoTrack

logger = logging.getLogger(__name__)

SLICE_SECONDS: Final = 0.1
"""The oximeter stream goes out in slices this long: 10 messages a second, ~6 pleth samples each at 60 Hz."""
PLETH_MAX: Final = 255
_T = TypeVar("_T")


class PeripheralError(Exception):
    """A peripheral command that could not be carried out; the message is for the doctor's screen."""


@dataclass(frozen=True)
class OximeterSlice:
    """A slice of the oximeter stream: the latest values and the pleth samples since the last slice."""

    spo2: int | None
    pulse: int | None
    pleth: tuple[int, ...]


@dataclass(frozen=True)
class StillImage:
    """A full-resolution still, JPEG-encoded."""

    camera: str
    jpeg: bytes
    width: int
    height: int


class Peripherals:
    """The peripherals of one booth; ``None`` for a peripheral the booth lacks."""

    def __init__(
        self,
        *,
        oximeter: Oximeter | None = None,
        nibp: BloodPressureMonitor | None = None,
        thermometer: Thermometer | None = None,
        examination: SwitchableVideoTrack | None = None,
        stethoscope: StethoscopeTrack | None = None,
    ) -> None:
        self.oximeter = oximeter
        self.nibp = nibp
        self.thermometer = thermometer
        self.examination = examination
        self.stethoscope = stethoscope
        if stethoscope is not None:
            # The stethoscope is silent until the doctor asks for it.
            stethoscope.muted = True

    # -- oximeter -------------------------------------------------------------------------
    async def oximeter_slices(self) -> AsyncIterator[OximeterSlice]:
        """The live oximeter stream in :data:`SLICE_SECONDS` slices, until the caller stops iterating."""
        oximeter = self._need(self.oximeter, "pulse oximeter")
        if oximeter.state is DeviceState.DISCONNECTED:
            raise PeripheralError("The pulse oximeter is not connected.")
        spo2: int | None = None
        pulse: int | None = None
        pleth: list[int] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SLICE_SECONDS
        events = oximeter.events()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events)
                except TimeoutError:
                    yield OximeterSlice(spo2, pulse, tuple(pleth))
                    pleth = []
                    deadline = loop.time() + SLICE_SECONDS
                    continue
                if not isinstance(event, Reading):
                    continue
                if event.kind == "pleth" and event.value is not None:
                    pleth.append(max(0, min(PLETH_MAX, round(event.value))))
                elif event.kind == "spo2":
                    spo2 = _int_or_none(event.value, 100)
                elif event.kind == "pulse":
                    pulse = _int_or_none(event.value, 300)
                if len(pleth) >= MAX_PLETH_SAMPLES:
                    yield OximeterSlice(spo2, pulse, tuple(pleth))
                    pleth = []
        finally:
            await events.aclose()

    # -- blood pressure -------------------------------------------------------------------------
    async def measure_blood_pressure(self, on_pressure: Callable[[float], None]) -> tuple[Measurement, ...]:
        """One BP cycle; ``on_pressure`` gets each cuff pressure (mmHg) while it runs."""
        nibp = self._need(self.nibp, "blood-pressure monitor")
        events = nibp.events()

        async def relay_pressure() -> None:
            async for event in events:
                if isinstance(event, Reading) and event.kind == "cuff_pressure" and event.value is not None:
                    on_pressure(max(0.0, min(400.0, float(event.value))))

        relay = asyncio.create_task(relay_pressure())
        try:
            result = await nibp.measure()
        except DeviceError as exc:
            raise PeripheralError(exc.message) from exc
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
            await events.aclose()
        return tuple(
            _measurement(reading) for reading in (result.systolic, result.diastolic, result.mean, result.pulse)
        )

    async def abort_blood_pressure(self) -> None:
        """Deflate now; harmless when nothing runs."""
        if self.nibp is None:
            return
        try:
            await self.nibp.abort()
        except DeviceError as exc:
            raise PeripheralError(exc.message) from exc

    @property
    def measuring_blood_pressure(self) -> bool:
        """Whether a BP cycle runs (the cuff may be inflated)."""
        return self.nibp is not None and self.nibp.measuring

    # -- thermometer -------------------------------------------------------------------------
    async def read_temperature(self) -> tuple[Measurement, ...]:
        """One body temperature reading."""
        thermometer = self._need(self.thermometer, "thermometer")
        try:
            reading = await thermometer.read()
        except DeviceError as exc:
            raise PeripheralError(exc.message) from exc
        return (_measurement(reading),)

    # -- cameras and stethoscope ---------------------------------------------------------------
    def select_camera(self, name: str) -> None:
        """Feed the examination video from camera ``name``."""
        examination = self._need(self.examination, "examination camera")
        if name not in examination.choices:
            raise PeripheralError(f"This booth has no {name} camera.")
        examination.select(name)

    @property
    def selected_camera(self) -> str | None:
        """The camera feeding the examination video."""
        return self.examination.selected if self.examination is not None else None

    async def capture_still(self) -> StillImage:
        """A full-resolution still of the selected examination camera, as JPEG."""
        examination = self._need(self.examination, "examination camera")
        camera: UvcCamera = examination.camera
        try:
            still = await camera.capture_still()
        except DeviceError as exc:
            raise PeripheralError(exc.message) from exc
        jpeg = await asyncio.to_thread(still.encode_jpeg)
        height, width = still.image.shape[:2]
        return StillImage(examination.selected, jpeg, width, height)

    def set_stethoscope(self, on: bool) -> None:
        """Let the stethoscope's sound through to the doctor, or send silence."""
        stethoscope = self._need(self.stethoscope, "stethoscope")
        stethoscope.muted = not on

    # -- status -----------------------------------------------------------------------------
    def states(self) -> Mapping[str, str]:
        """Each present peripheral's state, for the doctor's panel."""
        found: dict[str, str] = {}
        for name, driver in (("oximeter", self.oximeter), ("nibp", self.nibp), ("thermometer", self.thermometer)):
            if driver is not None:
                found[name] = driver.state.value
        return found

    async def state_changes(self) -> AsyncIterator[StateChanged]:
        """Every state change of the serial peripherals, merged, until the caller stops iterating."""
        queue: asyncio.Queue[StateChanged] = asyncio.Queue()
        drivers = [d for d in (self.oximeter, self.nibp, self.thermometer) if d is not None]

        async def follow(driver: Oximeter | BloodPressureMonitor | Thermometer, kind: str) -> None:
            events = driver.events()
            try:
                async for event in events:
                    if isinstance(event, StateChanged):
                        queue.put_nowait(StateChanged(kind, event.old, event.new, event.time, event.error))
            finally:
                await events.aclose()

        tasks = [asyncio.create_task(follow(driver, driver.kind)) for driver in drivers]
        try:
            while True:
                yield await queue.get()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _need(driver: _T | None, what: str) -> _T:
        if driver is None:
            raise PeripheralError(f"This booth has no {what}.")
        return driver


def _int_or_none(value: float | None, high: int) -> int | None:
    if value is None:
        return None
    return max(0, min(high, round(value)))


def _measurement(reading: Reading) -> Measurement:
    # UCUM codes the doctor would not read as such; the others ("%", "/min") are shown as they are.
    unit = {"mm[Hg]": "mmHg", "Cel": "°C"}.get(reading.unit, reading.unit)
    return Measurement(reading.kind, reading.value, unit)
