"""Driver of the Contec CMS50D+ pulse oximeter, both firmware generations.

The older firmware streams 5-byte frames at 19200 baud 8O1 by itself; the
newer one (CMS50D+/E) talks at 115200 8N1, streams once asked and stops
unless kept alive (PROTOCOLS.md). With ``generation="auto"`` the driver tries
the newer protocol first and, when no frame decodes within
:attr:`Oximeter.probe_timeout`, reopens the port with the older settings; the
generation that worked is kept for later reconnections.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from devices.errors import DeviceDisconnected, DeviceError, DeviceTimeout, Reason
from devices.events import DeviceState, Quality, Reading, StateChanged
from devices.protocols import contec, contec_legacy
from devices.protocols.oximetry import OximeterFrame
from devices.serial_link import Clock, SerialDriver, SerialLink, SerialSettings

Generation = Literal["legacy", "current", "auto"]

_SETTINGS: dict[str, SerialSettings] = {
    "current": contec.CURRENT_SETTINGS,
    "legacy": contec_legacy.LEGACY_SETTINGS,
}
WEAK_SIGNAL_BELOW = 3
"""Signal strength (0-15) under which readings carry ``WEAK_SIGNAL``."""
STABLE_FRAMES = 3
"""Consecutive frames that must agree before :meth:`Oximeter.read_once` takes a value."""
_NOT_READY = frozenset({Quality.FINGER_OUT, Quality.SEARCHING, Quality.PROBE_ERROR, Quality.NOT_VALID})


class _SwitchGeneration(DeviceTimeout):
    """Auto-detection: reopen the port with the other generation's settings."""


class Oximeter(SerialDriver):
    """A CMS50D+ pulse oximeter publishing ``pleth``, ``spo2`` and ``pulse`` readings for every frame."""

    kind = "oximeter"
    keep_alive_interval = 1.5
    """Seconds between keep-alives (newer firmware): under 100 frames at 60 a second."""
    silence_timeout = 3.0
    """Seconds without a frame after which the device counts as gone."""
    probe_timeout = 1.0
    """Auto-detection: seconds to wait for a first frame before trying the other generation."""

    def __init__(
        self,
        path: str,
        *,
        generation: Generation = "auto",
        name: str | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if generation not in ("legacy", "current", "auto"):
            raise ValueError(f"unknown oximeter generation {generation!r}")
        super().__init__(path, name=name, clock=clock)
        self.generation: Generation = generation
        self.active_generation: Literal["legacy", "current"] = "legacy" if generation == "legacy" else "current"
        """The protocol in use; under ``auto``, the one that last worked."""
        self.settings = _SETTINGS[self.active_generation]
        """Runs of bytes dropped because they broke the framing, since creation."""
        self.frames = 0
        """Frames decoded since creation."""
        self._parser: contec.OximeterParser | contec_legacy.LegacyOximeterParser = contec.OximeterParser()
        self._last_frame = 0.0
        self._frame_seen = False
        self._failed_probes = 0

    # -- SerialDriver hooks ------------------------------------------------
    def _reset_protocol(self) -> None:
        if self.active_generation == "current":
            self._parser = contec.OximeterParser()
        else:
            self._parser = contec_legacy.LegacyOximeterParser()
        self._frame_seen = False

    async def _on_connected(self, link: SerialLink, group: asyncio.TaskGroup) -> None:
        self._last_frame = asyncio.get_running_loop().time()
        if self.active_generation == "current":
            link.write(contec.START_LIVE)
            group.create_task(self._keep_alive(link))
        group.create_task(self._watchdog())

    def _on_data(self, data: bytes, now: float) -> None:
        events, _ = self._decode(self._parser, data)
        for event in events:
            if isinstance(event, OximeterFrame):
                self._on_frame(event, now)
            # Stored records only come after a download request, which this
            # driver does not send; they are ignored.

    def _set_state(self, new: DeviceState, error: DeviceError | None = None) -> None:
        if isinstance(error, _SwitchGeneration):
            # Reopening with the other line settings is part of connecting,
            # not a disconnection the user should see.
            self.log.info("%s: no frame at %s settings, trying the other generation", self.name, error.message)
            return
        super()._set_state(new, error)

    # -- tasks -------------------------------------------------------------
    async def _keep_alive(self, link: SerialLink) -> None:
        # PROTOCOLS.md: the newer firmware stops streaming without a keep-alive
        # about every 100 frames (1.7 s at 60 frames a second).
        while True:
            await asyncio.sleep(self.keep_alive_interval)
            link.write(contec.KEEP_ALIVE)

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            limit = self.silence_timeout
            if self.generation == "auto" and not self._frame_seen:
                limit = self.probe_timeout
            remaining = self._last_frame + limit - loop.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            if self.generation == "auto" and not self._frame_seen:
                tried = self.active_generation
                self.active_generation = "legacy" if tried == "current" else "current"
                self.settings = _SETTINGS[self.active_generation]
                self._failed_probes += 1
                if self._failed_probes % 2:
                    raise _SwitchGeneration(f"{tried}", reason=Reason.TIMEOUT, device=self.name)
            raise DeviceTimeout("the pulse oximeter stopped sending data", device=self.name)

    # -- frames --------------------------------------------------------------
    def _on_frame(self, frame: OximeterFrame, now: float) -> None:
        self.frames += 1
        self._last_frame = asyncio.get_running_loop().time()
        if not self._frame_seen:
            self._frame_seen = True
            self._failed_probes = 0
            self.log.info("%s: %s protocol answering", self.name, self.active_generation)

        common: set[Quality] = set()
        if frame.finger_out:
            common.add(Quality.FINGER_OUT)
        if frame.probe_error:
            common.add(Quality.PROBE_ERROR)
        if frame.searching:
            common.add(Quality.SEARCHING)
        if frame.signal_strength is not None and frame.signal_strength < WEAK_SIGNAL_BELOW and not frame.finger_out:
            common.add(Quality.WEAK_SIGNAL)
        pleth_quality = frozenset(common)
        if not frame.valid:
            common.add(Quality.NOT_VALID)
        pulse_quality = frozenset(common)
        spo2_quality = pulse_quality | {Quality.DROPPING} if frame.dropping else pulse_quality

        self._publish(Reading("pleth", frame.pleth, "1", now, pleth_quality))
        self._publish(Reading("spo2", frame.spo2, "%", now, spo2_quality))
        self._publish(Reading("pulse", frame.pulse, "/min", now, pulse_quality))
        self._update_state(frame)

    def _update_state(self, frame: OximeterFrame) -> None:
        state = self.state
        if frame.probe_error:
            if state is not DeviceState.ERROR:
                error = DeviceError(
                    "The oximeter reports a probe fault: check that the sensor is plugged in and clean.",
                    reason=Reason.MEASUREMENT,
                    device=self.name,
                )
                self._set_state(DeviceState.ERROR, error)
        elif frame.finger_out:
            if state is not DeviceState.CONNECTED:
                self._set_state(DeviceState.CONNECTED)
        elif frame.valid:
            if state is not DeviceState.MEASURING:
                self._set_state(DeviceState.MEASURING)
        elif state is DeviceState.ERROR:
            # The fault cleared; the finger is in but values are not ready yet.
            self._set_state(DeviceState.CONNECTED)

    # -- convenience -----------------------------------------------------------
    async def read_once(self, timeout: float = 15.0, *, finger_out_limit: float = 10.0) -> tuple[Reading, Reading]:
        """The first valid (SpO2, pulse) pair the device gives.

        A pair counts when both values are present and neither carries
        ``FINGER_OUT``, ``SEARCHING``, ``PROBE_ERROR`` or ``NOT_VALID``, and
        :data:`STABLE_FRAMES` consecutive frames carry the same values.
        Raises :class:`DeviceTimeout` when none arrives within ``timeout``
        seconds, a :class:`DeviceError` (reason ``MEASUREMENT``) when the finger
        stays out of the probe for ``finger_out_limit`` seconds or the probe
        reports a fault, and the connection's error when the device goes away.
        """
        loop = asyncio.get_running_loop()
        finger_out_since: float | None = None
        spo2: Reading | None = None
        last_pair: tuple[float, float] | None = None
        streak = 0
        try:
            async with (
                asyncio.timeout(timeout),
                self.events() as events,
            ):
                async for event in events:
                    if isinstance(event, StateChanged):
                        if event.new is DeviceState.DISCONNECTED:
                            raise _lost_during_reading(event.error, self.name)
                        continue
                    if event.kind == "spo2":
                        spo2 = event
                        continue
                    if event.kind != "pulse" or spo2 is None or spo2.time != event.time:
                        continue
                    flags = spo2.quality | event.quality
                    if Quality.PROBE_ERROR in flags:
                        raise DeviceError(
                            "The oximeter reports a probe fault: check that the sensor is plugged in and clean.",
                            reason=Reason.MEASUREMENT,
                            device=self.name,
                        )
                    if Quality.FINGER_OUT in flags:
                        now = loop.time()
                        finger_out_since = now if finger_out_since is None else finger_out_since
                        if now - finger_out_since >= finger_out_limit:
                            raise DeviceError(
                                "No finger in the oximeter: place a finger in the clip and try again.",
                                reason=Reason.MEASUREMENT,
                                device=self.name,
                            )
                        continue
                    finger_out_since = None
                    if spo2.value is None or event.value is None or flags & _NOT_READY:
                        streak = 0
                        continue
                    # The frames carry no checksum: a value is only taken once
                    # consecutive frames agree, so one torn frame cannot give it.
                    pair = (spo2.value, event.value)
                    streak = streak + 1 if pair == last_pair else 1
                    last_pair = pair
                    if streak >= STABLE_FRAMES:
                        return spo2, event
        except TimeoutError:
            raise DeviceTimeout("The oximeter gave no steady reading in time.", device=self.name) from None
        raise DeviceTimeout("The oximeter gave no steady reading in time.", device=self.name)


def _lost_during_reading(error: DeviceError | None, name: str) -> DeviceError:
    if isinstance(error, DeviceTimeout):
        return DeviceTimeout("The oximeter stopped answering during the reading.", device=name)
    return DeviceDisconnected("The oximeter was disconnected during the reading.", device=name)
