"""The production services behind the patient app: card reader, self-check, pictures, speech.

Each one adapts a part of the booth (:mod:`kiosk.identity.pcsc`, the drivers,
:class:`~kiosk.session.consultation.BoothSession`) to the interfaces of
:mod:`kiosk.ui.services`, so the controller and the screens never hold a driver
or an aiortc object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from devices.camera import UvcCamera
from devices.errors import DeviceError
from devices.events import DeviceState
from devices.stethoscope import Stethoscope
from kiosk.identity.errors import CardError
from kiosk.identity.identity import IdentityReader
from kiosk.identity.pcsc import CardInserted, CardRemoved, PcscMonitor, ServiceChanged, read_inserted
from kiosk.session.consultation import BoothSession, SessionEvent, SessionState, StateEvent
from kiosk.session.peripherals import Peripherals
from kiosk.ui.services import (
    CardEvent,
    CardFailed,
    CardIdentityRead,
    CardPresented,
    CardWithdrawn,
    CheckResult,
)

logger = logging.getLogger(__name__)

SCREEN_WIDTH = 1280
"""Frames for the screen are scaled down to at most this width (the doctor's 720p fits as is)."""


class PcscCardService:
    """Card events from pcscd, read with the public Vitale layout (or a licensed reader)."""

    def __init__(
        self,
        monitor_factory: Callable[[], PcscMonitor] = PcscMonitor,
        identity_reader: IdentityReader | None = None,
        *,
        read_timeout: float = 10.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self.monitor_factory = monitor_factory
        self.identity_reader = identity_reader
        self.read_timeout = read_timeout
        self.retry_seconds = retry_seconds

    async def events(self) -> AsyncIterator[CardEvent]:
        while True:
            try:
                async with self.monitor_factory() as monitor:
                    async for event in monitor.events():
                        if isinstance(event, CardInserted):
                            yield CardPresented()
                            yield await self._read(event)
                        elif isinstance(event, CardRemoved):
                            yield CardWithdrawn()
                        elif isinstance(event, ServiceChanged) and not event.available:
                            logger.warning("card reader: pcscd unavailable")
            except CardError as exc:
                logger.warning("card reader: %s", exc.reason.value)
            await asyncio.sleep(self.retry_seconds)

    async def _read(self, inserted: CardInserted) -> CardEvent:
        try:
            result = await read_inserted(inserted, self.identity_reader, timeout=self.read_timeout)
        except CardError as exc:
            logger.warning("card reader: card unreadable (%s)", exc.reason.value)
            return CardFailed(exc.reason.value)
        return CardIdentityRead(result.identity)


class BoothSelfCheck:
    """Camera, microphone, speaker and peripherals, as the self-check screen lists them."""

    def __init__(
        self,
        peripherals: Peripherals,
        *,
        camera: UvcCamera | None,
        microphone: Stethoscope | None,
        speaker_check: Callable[[], tuple[bool, str]] | None = None,
        timeout: float = 4.0,
    ) -> None:
        self.peripherals = peripherals
        self.camera = camera
        self.microphone = microphone
        self.speaker_check = speaker_check or alsa_playback_present
        self.timeout = timeout

    async def run(self) -> AsyncIterator[CheckResult]:
        yield await self._first(
            "camera", None if self.camera is None else self.camera.frames(), "no picture from the booth camera"
        )
        yield await self._first(
            "microphone", None if self.microphone is None else self.microphone.frames(), "no sound from the microphone"
        )
        ok, detail = await asyncio.to_thread(self.speaker_check)
        yield CheckResult("speaker", ok, detail)
        devices = {
            name: driver
            for name, driver in (
                ("oximeter", self.peripherals.oximeter),
                ("nibp", self.peripherals.nibp),
                ("thermometer", self.peripherals.thermometer),
            )
            if driver is not None
        }
        working = (DeviceState.CONNECTED, DeviceState.MEASURING)  # an oximeter streams as soon as it is plugged
        results = [CheckResult(name, driver.state in working, driver.state.value) for name, driver in devices.items()]
        failing = [result.name for result in results if not result.ok]
        yield CheckResult("devices", bool(devices) and not failing, ", ".join(failing) or "all connected")
        for result in results:
            yield result

    async def _first(self, name: str, source: AsyncIterator[Any] | None, missing: str) -> CheckResult:
        if source is None:
            return CheckResult(name, False, "absent")
        try:
            async with asyncio.timeout(self.timeout):
                await anext(source)
        except (TimeoutError, StopAsyncIteration, DeviceError):
            return CheckResult(name, False, missing)
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()  # type: ignore[attr-defined]
        return CheckResult(name, True)


def alsa_playback_present() -> tuple[bool, str]:
    """Whether ALSA lists a playback device (``aplay -l``); the booth's speaker is one."""
    aplay = shutil.which("aplay")
    if aplay is None:
        return False, "aplay not installed"
    try:
        listing = subprocess.run([aplay, "-l"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return False, type(exc).__name__
    return ("card " in listing, "playback device found" if "card " in listing else "no playback device")


class CallVideo:
    """The doctor's video (from the verified call) and the booth camera's, for the screens.

    The doctor's tracks are always read while a call runs, whether a screen
    shows them or not: aiortc queues received frames without bound until they
    are read. Audio is read and dropped here; a booth with a speaker sends it
    to ALSA (``audio_sink``).
    """

    def __init__(
        self,
        session: BoothSession,
        camera: UvcCamera | None,
        *,
        audio_sink: Callable[[Any], None] | None = None,
    ) -> None:
        self.session = session
        self.camera = camera
        self.audio_sink = audio_sink
        self._doctor: Any = None  # the latest av.VideoFrame
        self._self: npt.NDArray[np.uint8] | None = None
        # The latest source frame converted for the screen, and what it became.
        self._doctor_shown: tuple[Any, npt.NDArray[np.uint8] | None] = (None, None)
        self._self_shown: tuple[Any, npt.NDArray[np.uint8] | None] = (None, None)
        self._readers: list[asyncio.Task[None]] = []
        self._camera_task: asyncio.Task[None] | None = None
        self._self_watchers = 0
        self._started = False
        session.add_listener(self._on_event)

    def start(self) -> None:
        self._started = True
        self._follow()

    async def stop(self) -> None:
        self._started = False
        tasks = [*self._readers, *([self._camera_task] if self._camera_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._readers, self._camera_task = [], None
        self._doctor = self._self = None
        self._doctor_shown = self._self_shown = (None, None)

    @property
    def following_camera(self) -> bool:
        """Whether the booth camera is being read for the self view now."""
        return self._camera_task is not None

    def watch_self(self, watching: bool) -> None:
        """Count the screens showing the self view; the camera is read only while there is one.

        Between patients nobody is on those screens, so the camera decodes
        nothing (:class:`~devices.camera.UvcCamera` decodes only for readers)
        and its last picture of the previous patient is dropped.
        """
        self._self_watchers = max(0, self._self_watchers + (1 if watching else -1))
        self._follow()

    def _follow(self) -> None:
        wanted = self._started and self._self_watchers > 0 and self.camera is not None
        if wanted and self._camera_task is None:
            assert self.camera is not None
            self._camera_task = asyncio.get_running_loop().create_task(self._follow_camera(self.camera))
        elif not wanted and self._camera_task is not None:
            self._camera_task.cancel()
            self._camera_task = None
            self._self = None
            self._self_shown = (None, None)

    def doctor(self) -> npt.NDArray[np.uint8] | None:
        frame = self._doctor
        if frame is None:
            return None
        if self._doctor_shown[0] is not frame:
            # Converted once per received frame: a screen polling faster than the doctor's camera gets the
            # same array again, which it knows it has drawn already.
            self._doctor_shown = (frame, _fit(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)))
        return self._doctor_shown[1]

    def self_view(self) -> npt.NDArray[np.uint8] | None:
        image = self._self
        if image is None:
            return None
        if self._self_shown[0] is not image:
            self._self_shown = (image, _fit(np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)))
        return self._self_shown[1]

    def _on_event(self, event: SessionEvent) -> None:
        if not isinstance(event, StateEvent):
            return
        if event.state is SessionState.IN_CALL:
            call = self.session.call
            if call is not None and not self._readers:
                loop = asyncio.get_running_loop()
                self._readers = [loop.create_task(self._drain(track)) for track in call.peer.remote_tracks]
        elif event.state in (SessionState.ENDED, SessionState.REFUSED, SessionState.IDLE):
            for task in self._readers:
                task.cancel()
            self._readers = []
            self._doctor = None
            self._doctor_shown = (None, None)

    async def _drain(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self._doctor = frame
                elif self.audio_sink is not None:
                    self.audio_sink(frame)

    async def _follow_camera(self, camera: UvcCamera) -> None:
        while True:
            try:
                async for frame in camera.frames():
                    self._self = frame.image
            except DeviceError as exc:
                logger.warning("self view: %s", exc)
            self._self = None
            await asyncio.sleep(1.0)


def _fit(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    height, width = image.shape[:2]
    if width <= SCREEN_WIDTH:
        return image
    scaled = cv2.resize(image, (SCREEN_WIDTH, height * SCREEN_WIDTH // width), interpolation=cv2.INTER_AREA)
    return np.asarray(scaled, dtype=np.uint8)


class EspeakSpeaker:
    """Spoken prompts with espeak-ng when it is installed; silent otherwise."""

    def __init__(self) -> None:
        self._binary = shutil.which("espeak-ng")
        self._process: subprocess.Popen[bytes] | None = None

    def say(self, text: str, language: str) -> None:
        if self._binary is None:
            return
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
        voice = language if language in ("fr", "en", "es", "pt", "ar") else "fr"
        self._process = subprocess.Popen(
            [self._binary, "-v", voice, "--", text], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
