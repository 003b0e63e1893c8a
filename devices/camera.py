"""USB video class cameras: the otoscope, the dermatoscope and the booth camera.

:class:`UvcCamera` reads a camera through OpenCV's ``VideoCapture`` in a
thread and hands frames to asyncio. A ``/dev/...`` path (``/dev/video*`` or a
stable ``/dev/v4l/by-id/...`` link) is opened with the V4L2 backend; any other
path is opened as a file or URL, which is how the emulator's synthetic video
(:mod:`devices.simulators.camera`) replaces the device: same class, same code.

Two resolutions, because a doctor's still wants the camera's full resolution
and the live stream does not (PROTOCOLS.md, *Cameras*):

- the stream, at ``stream_size``, delivered with latest-frame semantics: a slow
  consumer skips frames and never makes memory grow. Frames are decoded only
  while someone reads :meth:`UvcCamera.frames` (or a still is asked for): a
  booth at rest between patients does not spend a core decoding pictures
  nobody looks at;
- :meth:`UvcCamera.capture_still`, at full resolution. On a V4L2 device the
  capture switches to the largest mode the driver accepts (probed by asking for
  a huge size and reading back what ``VIDIOC_S_FMT`` adjusted it to), grabs a
  frame, then restores the stream mode. On a file the still is the decoded
  frame before downscaling.

An unplug (a read fails or the node vanishes) gives ``DISCONNECTED`` with
:class:`~devices.errors.DeviceDisconnected`; the path is reopened as soon as it
is back. A file source plays at its own frame rate, paced with the clock, and
loops at its end, as the emulated camera never stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from devices.errors import DeviceDisconnected, DeviceError, DeviceNotFound, DeviceTimeout, Reason
from devices.events import DeviceState
from devices.fanout import ThreadedDriver

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

# Asking V4L2 for this size makes the driver fall back to its largest mode:
# VIDIOC_S_FMT never fails on a size, it adjusts it to the nearest supported.
_HUGE = 100_000
# How often an idle file source looks for a new consumer or a still request.
_IDLE_POLL = 0.05
# UVC cameras give their large modes at a usable rate only as Motion-JPEG;
# uncompressed YUYV over USB 2 is often limited to 640x480 at 30 fps.
_V4L2_FOURCC = "MJPG"


@dataclass(frozen=True, eq=False)
class CameraFrame:
    """One frame of the live stream."""

    image: Image
    """BGR, uint8, ``stream_size`` wide and high; read-only (shared by every consumer)."""
    time: float
    """Host monotonic time at which the frame was read."""
    index: int
    """Number of the frame since :meth:`UvcCamera.start`; gaps are frames this consumer skipped."""


@dataclass(frozen=True, eq=False)
class Still:
    """A full-resolution picture taken on request."""

    image: Image
    """BGR, uint8, at the camera's full resolution; read-only."""
    width: int
    """Pixels across."""
    height: int
    """Pixels down."""
    time: float
    """Host monotonic time at which the frame was read."""

    def encode_png(self) -> bytes:
        """Lossless PNG of the still (what a record should keep)."""
        return _encode(".png", self.image, [])

    def encode_jpeg(self, quality: int = 95) -> bytes:
        """JPEG of the still at ``quality`` (1-100)."""
        if not 1 <= quality <= 100:
            raise ValueError("JPEG quality goes from 1 to 100")
        return _encode(".jpg", self.image, [cv2.IMWRITE_JPEG_QUALITY, quality])


def _encode(extension: str, image: Image, params: list[int]) -> bytes:
    ok, data = cv2.imencode(extension, image, params)
    if not ok:
        raise DeviceError(f"could not encode the still as {extension}", reason=Reason.UNSUPPORTED)
    return bytes(data.tobytes())


class LatestFrameSlot:
    """One consumer's mailbox: the newest frame it has not taken yet, nothing more.

    Used by :meth:`UvcCamera.frames` for each subscriber and by anything that
    turns the camera's push into a pull (a WebRTC track's ``recv``).
    """

    def __init__(self) -> None:
        self.frame: CameraFrame | None = None
        self.ready = asyncio.Event()

    def put(self, frame: CameraFrame) -> None:
        self.frame = frame
        self.ready.set()

    def clear(self) -> None:
        self.frame = None
        self.ready.clear()

    async def take(self) -> CameraFrame:
        """The newest frame, waiting for one if none is pending."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            frame, self.frame = self.frame, None
            if frame is not None:
                return frame


@dataclass
class _StillRequest:
    future: asyncio.Future[Still]


class UvcCamera(ThreadedDriver[cv2.VideoCapture]):
    """A USB video class camera (or a video file standing in for one), kept open.

    ``stream_size`` is the live stream's ``(width, height)``; frames that come
    in at another size are scaled to it. ``still_size`` forces the still mode
    instead of probing for the largest. ``fps`` is asked of a V4L2 device; a
    file plays at the rate it was recorded at.
    """

    kind = "camera"
    still_warmup_frames = 2
    """Frames dropped after a mode switch: the first ones can be stale or under-exposed."""
    read_timeout_ms = 2000
    """How long a V4L2 read may block before the camera counts as gone (where OpenCV supports it)."""

    def __init__(
        self,
        path: str,
        *,
        name: str = "otoscope",
        stream_size: tuple[int, int] = (1280, 720),
        fps: float = 30,
        still_size: tuple[int, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(path, name=name, clock=clock, logger=logger)
        self.stream_size = stream_size
        self.fps = fps
        self.still_size = still_size
        self.is_v4l2 = path.startswith("/dev/")
        self._slots: list[LatestFrameSlot] = []
        self._still_requests: queue.SimpleQueue[_StillRequest] = queue.SimpleQueue()
        self._still_mode: tuple[int, int] | None = None
        self._index = 0
        # Thread -> loop hand-off of the newest frame, coalesced: while one
        # delivery is pending, newer frames replace the waiting one instead of
        # queueing callbacks, so a stalled loop holds at most one frame.
        self._latest_lock = threading.Lock()
        self._latest: CameraFrame | None = None
        self._delivery_pending = False

    async def __aenter__(self) -> UvcCamera:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- consumers -------------------------------------------------------
    async def frames(self) -> AsyncIterator[CameraFrame]:
        """Live frames from now on; a slow consumer gets the newest one, skipping the rest.

        The iterator outlives unplugs: it waits while the camera is away and
        resumes when it is back (watch :meth:`events` for the state).
        """
        slot = LatestFrameSlot()
        self._slots.append(slot)
        try:
            while True:
                yield await slot.take()
        finally:
            self._slots.remove(slot)

    @property
    def frame_readers(self) -> int:
        """Open :meth:`frames` iterators: frames are decoded only while there is one (or a still is asked for)."""
        return len(self._slots)

    async def capture_still(self, timeout: float = 5.0) -> Still:
        """A picture at the camera's full resolution.

        Raises :class:`DeviceDisconnected` when the camera is not connected or
        goes away meanwhile, :class:`DeviceTimeout` after ``timeout`` seconds.
        """
        if self.state is not DeviceState.CONNECTED:
            raise DeviceDisconnected(f"the {self.name} camera is not connected", device=self.name)
        request = _StillRequest(asyncio.get_running_loop().create_future())
        self._still_requests.put(request)
        try:
            return await asyncio.wait_for(request.future, timeout)
        except TimeoutError:
            raise DeviceTimeout(f"the {self.name} camera took no picture in time", device=self.name) from None

    def _deliver(self) -> None:
        with self._latest_lock:
            frame, self._latest = self._latest, None
            self._delivery_pending = False
        if frame is not None:
            for slot in self._slots:
                slot.put(frame)

    def _on_stopped(self) -> None:
        self._fail_stills(DeviceDisconnected(f"the {self.name} camera was stopped", device=self.name))

    # -- capture thread --------------------------------------------------
    def _open(self) -> cv2.VideoCapture:
        if not os.path.exists(self.path):
            raise DeviceNotFound(f"no camera at {self.path}", device=self.name)
        if self.is_v4l2:
            # Resolve /dev/v4l/by-id links now: after a replug they may point
            # at another /dev/videoN.
            capture = cv2.VideoCapture(os.path.realpath(self.path), cv2.CAP_V4L2)
        else:
            capture = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise DeviceNotFound(f"cannot open the camera at {self.path}", device=self.name)
        if self.is_v4l2:
            capture.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.read_timeout_ms)
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*_V4L2_FOURCC))
            self._set_mode(capture, self.stream_size)
            capture.set(cv2.CAP_PROP_FPS, self.fps)
            accepted = _mode(capture)
            self.log.info("%s: stream mode %dx%d", self.name, *accepted)
        return capture

    def _close(self, handle: cv2.VideoCapture) -> None:
        handle.release()

    def _on_lost(self, error: DeviceError) -> None:
        self._fail_stills(error)

    def _serve(self, handle: cv2.VideoCapture) -> None:
        capture = handle
        native_fps = capture.get(cv2.CAP_PROP_FPS)
        period = 1.0 / (native_fps if 1.0 <= native_fps <= 240.0 else self.fps)
        due = self.clock()
        connected = False
        while not self._stopping:
            if not os.path.exists(self.path):
                raise DeviceDisconnected(f"the {self.name} camera went away", device=self.name)
            if connected and not self._wanted():
                self._idle(capture, period)
                continue
            image = _read(capture)
            if image is None and not self.is_v4l2:
                # End of the emulator's video: it is a loop, start it again.
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                image = _read(capture)
            if image is None:
                raise DeviceDisconnected(f"the {self.name} camera stopped delivering pictures", device=self.name)
            if not self.is_v4l2:
                # A device paces itself; a file is read as fast as it decodes,
                # so hold each frame until its time comes.
                if not self._sleep(due - self.clock()):
                    return
                due += period
                if self.clock() - due > 2 * period:
                    due = self.clock()  # fell behind (slow disk, busy host): do not burst
            now = self.clock()
            if not connected:
                connected = True
                self._report(DeviceState.CONNECTED)
            self._serve_stills(capture, image, now)
            self._publish(image, now)

    def _wanted(self) -> bool:
        # Called on the capture thread; the slots change on the loop's thread,
        # and a list's length is read atomically.
        return bool(self._slots) or not self._still_requests.empty()

    def _idle(self, capture: cv2.VideoCapture, period: float) -> None:
        """Nobody watches and no still is asked for: keep the source, decode nothing.

        A device is still dequeued (``grab`` without ``retrieve``: no MJPEG
        decoding, no scaling), so its buffers hold fresh frames when someone
        looks again and an unplug is still noticed; a file just waits.
        """
        if self.is_v4l2:
            if not capture.grab():
                raise DeviceDisconnected(f"the {self.name} camera stopped delivering pictures", device=self.name)
        else:
            self._sleep(min(period, _IDLE_POLL))

    def _publish(self, image: Image, now: float) -> None:
        width, height = self.stream_size
        if image.shape[1] != width or image.shape[0] != height:
            image = _resize(image, (width, height))
        image.flags.writeable = False
        frame = CameraFrame(image, now, self._index)
        self._index += 1
        with self._latest_lock:
            self._latest = frame
            if self._delivery_pending:
                return
            self._delivery_pending = True
        self._call(self._deliver)

    def _serve_stills(self, capture: cv2.VideoCapture, image: Image, now: float) -> None:
        requests: list[_StillRequest] = []
        while True:
            try:
                requests.append(self._still_requests.get_nowait())
            except queue.Empty:
                break
        if not requests:
            return
        if self.is_v4l2:
            image, now = self._grab_full_resolution(capture)
        elif self.still_size is not None and (image.shape[1], image.shape[0]) != self.still_size:
            image = _resize(image, self.still_size)
        else:
            image = image.copy()  # the stream frame made from it may be a view
        image.flags.writeable = False
        still = Still(image, int(image.shape[1]), int(image.shape[0]), now)
        self.log.info("%s: still taken", self.name)
        for request in requests:
            self._call(_settle, request.future, still, None)

    def _grab_full_resolution(self, capture: cv2.VideoCapture) -> tuple[Image, float]:
        if self._still_mode is None:
            self._set_mode(capture, self.still_size or (_HUGE, _HUGE))
            self._still_mode = _mode(capture)
            self.log.info("%s: still mode %dx%d", self.name, *self._still_mode)
        else:
            self._set_mode(capture, self._still_mode)
        try:
            image: Image | None = None
            for _ in range(self.still_warmup_frames + 1):
                image = _read(capture)
                if image is None:
                    raise DeviceDisconnected(f"the {self.name} camera went away during a picture", device=self.name)
            assert image is not None
            return image, self.clock()
        finally:
            self._set_mode(capture, self.stream_size)
            capture.set(cv2.CAP_PROP_FPS, self.fps)

    @staticmethod
    def _set_mode(capture: cv2.VideoCapture, size: tuple[int, int]) -> None:
        # OpenCV's V4L2 backend applies the format once both sides are set.
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])

    def _fail_stills(self, error: DeviceError) -> None:
        while True:
            try:
                request = self._still_requests.get_nowait()
            except queue.Empty:
                return
            self._call(_settle, request.future, None, error)


def _read(capture: cv2.VideoCapture) -> Image | None:
    ok, image = capture.read()
    # OpenCV types its arrays loosely (MatLike); a capture always gives BGR uint8.
    return cast(Image, image) if ok and image is not None else None


def _resize(image: Image, size: tuple[int, int]) -> Image:
    return cast(Image, cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def _mode(capture: cv2.VideoCapture) -> tuple[int, int]:
    return int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))


def _settle(future: asyncio.Future[Still], still: Still | None, error: DeviceError | None) -> None:
    if future.done():
        return  # the caller gave up (timeout, cancellation)
    if error is not None:
        future.set_exception(error)
    elif still is not None:
        future.set_result(still)
