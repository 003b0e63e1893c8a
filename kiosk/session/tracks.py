"""aiortc media tracks fed by the booth's peripherals.

- :class:`CameraTrack`: a :class:`devices.camera.UvcCamera` as a video track,
  latest-frame semantics (a slow encoder skips frames, never queues them).
- :class:`SwitchableVideoTrack`: the "examination" video, whose source the
  booth switches between the otoscope and the dermatoscope without any SDP
  renegotiation (the RTP stream, its SSRC and codec stay the same; only the
  pictures change; VP8/H.264 encoders in aiortc re-initialise on a size change).
- :class:`StethoscopeTrack`: a :class:`devices.stethoscope.Stethoscope` as an
  audio track: s16 PCM at the source's own rate and channel count, samples
  untouched.
- :class:`FullbandOpusTrack`: wraps the stethoscope track and encodes it with
  libopus in its ``audio`` application mode, handing aiortc ready-made packets.

Why the stethoscope needs no processing *and* its own encoder: heart sounds
live between about 20 and 200 Hz and breath sounds are noise-like; echo
cancellation, noise suppression and automatic gain control are built for speech
and would treat them as background (see :mod:`devices.stethoscope`). aiortc has
none of those stages, but its Opus encoder is opened with
``application=voip``, in which libopus high-passes the input (a variable
60-100 Hz cut-off meant for speech): measured with the installed libopus, a
25 Hz tone comes out at 17 % of its amplitude, 40 Hz at 40 %, 60 Hz at 72 %,
while ``application=audio`` keeps them within 1-3 %. So the stethoscope goes
through :class:`FullbandOpusTrack` (aiortc sends pre-encoded packets as they
are, see ``RTCRtpSender._next_encoded_frame``) and the voice microphone keeps
aiortc's speech-tuned encoder. The Opus rates 8/12/16/24/48 kHz are fed to
libopus natively (no resampling on our side); any other rate is converted to
48 kHz by swresample, the only change a sample can see before the codec.

Track objects end when aiortc's sender stops (``RTCRtpSender`` calls
``track.stop()`` when its RTP loop exits, e.g. on ``close()``). The booth keeps
its tracks across a renegotiation (see :mod:`kiosk.session.peer`), so it gives
each connection a :class:`BorrowedTrack`, which ends on its own and leaves the
shared track running.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fractions
import logging
import time
from collections.abc import Mapping
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.frame import Frame
from av.packet import Packet

from devices.camera import CameraFrame, LatestFrameSlot, UvcCamera
from devices.stethoscope import AudioChunk, Stethoscope

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90_000
"""RTP clock of every video codec (RFC 3551): video pts are counted in 1/90000 s."""
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
OPUS_CLOCK_RATE = 48_000
"""RTP clock of Opus whatever the input rate (RFC 7587, section 4.1)."""
OPUS_INPUT_RATES = frozenset({8_000, 12_000, 16_000, 24_000, 48_000})
"""Input rates libopus takes natively (it converts internally to its own band)."""
STETHOSCOPE_OPUS_BITRATE = 96_000
"""Bits per second: the rate aiortc uses for speech, spent here on one channel."""
_AUDIO_QUEUE = 50  # 1 s of 20 ms chunks: as the Stethoscope's own consumer queue
_IDLE_CONSUMER_SECONDS = 2.0
"""A track nobody has read for this long is not in a call: its pump stops until the next read."""


class CameraTrack(MediaStreamTrack):
    """Video from one :class:`~devices.camera.UvcCamera`, newest frame first.

    Frames become ``bgr24`` :class:`av.VideoFrame` objects whose ``pts``
    (in 1/90000 s) follows the host time at which the camera read them, so a
    stalled or slow camera gives the receiver the right timing rather than a
    fixed 30 fps. The camera must be started by its owner; the track only
    subscribes to its frames while it is live.
    """

    kind = "video"

    def __init__(self, camera: UvcCamera) -> None:
        super().__init__()
        self._camera = camera
        self._latest = LatestFrameSlot()
        self._pump: asyncio.Task[None] | None = None
        self._origin: float | None = None
        self._last_pts = -1

    @property
    def camera(self) -> UvcCamera:
        """The camera currently feeding the track."""
        return self._camera

    async def recv(self) -> Frame:
        """The newest frame read since the previous call (waits for one)."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._run(self._camera))
        frame = await self._latest.take()
        if self.readyState != "live":
            raise MediaStreamError
        return self._to_video_frame(frame)

    def stop(self) -> None:
        """End the track and unsubscribe from the camera (the camera keeps running)."""
        self._stop_pump()
        super().stop()

    def _switch(self, camera: UvcCamera) -> None:
        if camera is self._camera:
            return
        self._camera = camera
        running = self._pump is not None
        self._stop_pump()
        # A frame of the previous source still waiting must not go out after the switch.
        self._latest.clear()
        if running and self.readyState == "live":
            self._pump = asyncio.ensure_future(self._run(camera))

    def _stop_pump(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    async def _run(self, camera: UvcCamera) -> None:
        async for frame in camera.frames():
            self._latest.put(frame)

    def _to_video_frame(self, frame: CameraFrame) -> av.VideoFrame:
        if self._origin is None:
            self._origin = frame.time
        # Host monotonic time is shared by every camera, so pts stay monotonic
        # across a source switch; the max() guards equal or reordered stamps.
        pts = max(round((frame.time - self._origin) * VIDEO_CLOCK_RATE), self._last_pts + 1)
        self._last_pts = pts
        video = av.VideoFrame.from_ndarray(frame.image, format="bgr24")
        video.pts = pts
        video.time_base = VIDEO_TIME_BASE
        return video


class SwitchableVideoTrack(CameraTrack):
    """One video track whose source is one of several cameras, chosen at any time.

    The booth sends the otoscope or the dermatoscope as "the examination
    video": :meth:`select` changes the source in place, so nothing is
    renegotiated and the doctor's player keeps the same stream.
    """

    def __init__(self, cameras: Mapping[str, UvcCamera], selected: str) -> None:
        if selected not in cameras:
            raise ValueError(f"unknown camera {selected!r}; expected one of {sorted(cameras)}")
        super().__init__(cameras[selected])
        self._cameras = dict(cameras)
        self._selected = selected

    @property
    def selected(self) -> str:
        """Name of the camera now feeding the track."""
        return self._selected

    @property
    def choices(self) -> tuple[str, ...]:
        """Names :meth:`select` accepts."""
        return tuple(self._cameras)

    def select(self, name: str) -> None:
        """Feed the track from camera ``name`` from the next frame on."""
        if name not in self._cameras:
            raise ValueError(f"unknown camera {name!r}; expected one of {sorted(self._cameras)}")
        if name != self._selected:
            logger.info("examination video: %s -> %s", self._selected, name)
        self._selected = name
        self._switch(self._cameras[name])


class StethoscopeTrack(MediaStreamTrack):
    """Audio from a :class:`~devices.stethoscope.Stethoscope`, samples untouched.

    Each chunk becomes an ``s16`` :class:`av.AudioFrame` at the source's rate
    and layout, ``pts`` = the chunk's sample index (time base 1/rate). No
    gain, filter or resampling here (see the module docstring); chunks are
    queued, not skipped, up to one second, as the driver does.
    """

    kind = "audio"

    def __init__(self, stethoscope: Stethoscope) -> None:
        super().__init__()
        self._stethoscope = stethoscope
        self._queue: asyncio.Queue[AudioChunk] = asyncio.Queue(_AUDIO_QUEUE)
        self._pump: asyncio.Task[None] | None = None
        self._last_recv = time.monotonic()
        self.dropped_chunks = 0
        """Chunks lost because the sender fell more than a second behind; should stay 0."""
        self.muted = False
        """While True the track sends silence of the same timing (the doctor switched the stethoscope off)."""

    async def recv(self) -> Frame:
        """The next chunk as an audio frame (waits for it: the source paces the track)."""
        if self.readyState != "live":
            raise MediaStreamError
        self._last_recv = time.monotonic()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.ensure_future(self._run())
        chunk = await self._queue.get()
        if self.readyState != "live":
            raise MediaStreamError
        if self.muted:
            # Same size and pts, zero samples: the receiver's timing is unchanged and no sound leaves the booth.
            chunk = dataclasses.replace(chunk, samples=np.zeros_like(chunk.samples))
        return chunk_to_audio_frame(chunk)

    def stop(self) -> None:
        """End the track and unsubscribe (the stethoscope keeps running)."""
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        super().stop()

    async def _run(self) -> None:
        async for chunk in self._stethoscope.frames():
            if self._queue.full():
                if time.monotonic() - self._last_recv > _IDLE_CONSUMER_SECONDS:
                    # Nobody reads this track any more (the call ended): stop following the device and
                    # drop the stale second, so the next call starts with fresh sound. recv() restarts it.
                    while not self._queue.empty():
                        self._queue.get_nowait()
                    return
                self._queue.get_nowait()
                self.dropped_chunks += 1
                if self.dropped_chunks % 100 == 1:
                    logger.warning("stethoscope track: sender fell behind (%d chunks dropped)", self.dropped_chunks)
            self._queue.put_nowait(chunk)


def chunk_to_audio_frame(chunk: AudioChunk) -> av.AudioFrame:
    """An ``s16`` packed audio frame holding exactly the chunk's samples."""
    count, channels = chunk.samples.shape
    layout = "mono" if channels == 1 else "stereo"
    # Packed s16 is one row of interleaved samples; (n, channels) C-order is that already.
    frame = av.AudioFrame.from_ndarray(chunk.samples.reshape(1, count * channels), format="s16", layout=layout)
    frame.sample_rate = chunk.sample_rate
    frame.pts = chunk.pts
    frame.time_base = fractions.Fraction(1, chunk.sample_rate)
    return frame


class FullbandOpusTrack(MediaStreamTrack):
    """Opus packets of an audio track, encoded for sound rather than speech.

    libopus runs with ``application=audio`` (no speech high-pass, unlike
    aiortc's own ``voip`` encoder), one packet per 20 ms. Packets carry their
    pts in 1/48000 s, the Opus RTP clock, so aiortc's Opus packer forwards
    them as they are. Only use it on a transceiver negotiated as Opus.
    Stopping it stops its source.
    """

    kind = "audio"

    def __init__(self, source: MediaStreamTrack, *, bitrate: int = STETHOSCOPE_OPUS_BITRATE) -> None:
        if source.kind != "audio":
            raise ValueError("FullbandOpusTrack encodes an audio track")
        super().__init__()
        self._source = source
        self._bitrate = bitrate
        self._encoder: av.AudioCodecContext | None = None
        self._resampler: av.AudioResampler | None = None
        self._rate = 0
        self._layout = ""
        self._first_pts: int | None = None
        self._packets: collections.deque[Packet[Any]] = collections.deque()

    async def recv(self) -> Packet[Any]:
        """The next encoded packet."""
        while not self._packets:
            if self.readyState != "live":
                raise MediaStreamError
            frame = await self._source.recv()
            if not isinstance(frame, av.AudioFrame):
                raise MediaStreamError
            self._encode(frame)
        return self._packets.popleft()

    def stop(self) -> None:
        """End the track and its source."""
        self._source.stop()
        super().stop()

    def _open(self, frame: av.AudioFrame) -> None:
        rate = frame.sample_rate if frame.sample_rate in OPUS_INPUT_RATES else OPUS_CLOCK_RATE
        layout = "mono" if frame.layout.nb_channels == 1 else "stereo"
        encoder = av.CodecContext.create("libopus", "w")
        assert isinstance(encoder, av.AudioCodecContext)
        encoder.bit_rate = self._bitrate
        encoder.format = "s16"
        encoder.layout = layout
        encoder.sample_rate = rate
        encoder.time_base = fractions.Fraction(1, rate)
        encoder.options = {"application": "audio", "frame_duration": "20"}
        self._encoder = encoder
        # Same format, layout and rate in and out: swresample copies the
        # samples and only re-cuts them into the 20 ms frames Opus needs.
        self._resampler = av.AudioResampler(format="s16", layout=layout, rate=rate, frame_size=rate // 50)
        self._rate, self._layout = rate, layout
        logger.info("stethoscope opus encoder: %d Hz %s in, application=audio", frame.sample_rate, layout)

    def _encode(self, frame: av.AudioFrame) -> None:
        if self._encoder is None or frame.layout.name != self._layout:
            self._open(frame)
        assert self._encoder is not None and self._resampler is not None
        for piece in self._resampler.resample(frame):
            for packet in self._encoder.encode(piece):
                if packet.pts is None:
                    continue
                # libopus starts at minus its pre-skip: count from the first packet.
                if self._first_pts is None:
                    self._first_pts = packet.pts
                packet.pts = (packet.pts - self._first_pts) * OPUS_CLOCK_RATE // self._rate
                packet.time_base = fractions.Fraction(1, OPUS_CLOCK_RATE)
                self._packets.append(packet)


class BorrowedTrack(MediaStreamTrack):
    """A view of a longer-lived track for one peer connection.

    aiortc stops a sender's track when the connection closes; the booth's
    tracks must survive a renegotiation, so each connection gets one of these,
    whose :meth:`stop` ends only the view.
    """

    def __init__(self, track: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = track.kind
        self._track = track

    async def recv(self) -> Frame | Packet[Any]:
        """The shared track's next frame."""
        if self.readyState != "live":
            raise MediaStreamError
        return await self._track.recv()


async def stop_tracks(*tracks: MediaStreamTrack) -> None:
    """Stop tracks and let their subscription tasks unwind."""
    for track in tracks:
        track.stop()
    # One loop turn so cancelled pumps run their ``finally`` (unsubscribe).
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)
