"""The digital stethoscope: a USB audio class input, passed on untouched.

:class:`Stethoscope` reads the device's PCM samples through PyAV (FFmpeg's
``alsa`` input, opened with ``av.open("hw:CARD=...,DEV=0", format="alsa")``)
in a thread, and hands them to asyncio in fixed chunks (20 ms by default, the
WebRTC audio frame) ready to be wrapped as an aiortc audio track. A source that
is not an ALSA name (a WAV file) is opened by the same class through
``av.open``: that is how the emulator (:mod:`devices.simulators.stethoscope`)
stands in for the device.

No processing, on purpose (PROTOCOLS.md, *Cameras and stethoscope*): no echo
cancellation, no noise suppression, no automatic gain control, no resampling.
Those stages are built for speech: they treat the steady low-frequency energy
of heart sounds (20-200 Hz) and the noise-like breath sounds as background to
remove, and an AGC pumps the level between beats, so the doctor would hear a
cleaned-up signal with the murmurs and crackles erased. The samples leave this
class exactly as the device (or file) delivered them; a source that is not
16-bit PCM at the asked rate and channel count is refused rather than
converted. Open the device as ``hw:`` (not ``plughw:`` or ``default``, which
may resample or mix) and do not route it through PulseAudio/PipeWire, whose
voice filters could be enabled behind our back.

PyAV's wheel bundles its own ``libasound``, built with a configuration
directory that does not exist on the booth, so ALSA names (``hw:CARD=...``)
would not resolve; :func:`_use_system_alsa_config` points it at Debian's
``/usr/share/alsa`` (``libasound2-data``) unless ``ALSA_CONFIG_DIR`` is set.
The ``arecord`` fallback was not needed: the wheel's FFmpeg has the ``alsa``
input, and it keeps the device in this process with typed errors.

An unplug (the read fails) gives ``DISCONNECTED`` with
:class:`~devices.errors.DeviceDisconnected`, and the source is reopened when it
is back. A file source plays at real time, paced with the clock, and loops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import av
import av.container
import numpy as np
import numpy.typing as npt

from devices.errors import DeviceDisconnected, DeviceError, DeviceNotFound, Reason
from devices.events import DeviceState
from devices.fanout import ThreadedDriver

logger = logging.getLogger(__name__)

Samples = npt.NDArray[np.int16]

# ALSA PCM names we open with the alsa input; anything else is a file or URL.
_ALSA_PREFIXES = ("hw:", "plughw:", "sysdefault:", "front:", "dsnoop:")
_ALSA_DEFAULT_RATE = 48_000
_SYSTEM_ALSA_DIR = "/usr/share/alsa"
# A file plays paced by the clock; if the thread falls this far behind (busy
# host) it carries on from now instead of bursting to catch up.
_MAX_LAG = 0.5


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """A run of consecutive samples from the stethoscope."""

    samples: Samples
    """int16 PCM, shape ``(n, channels)``, exactly as the device delivered it; read-only."""
    sample_rate: int
    """Samples per second per channel."""
    time: float
    """Host monotonic time at which the first sample was captured (estimated from its arrival)."""
    pts: int
    """Index of the first sample since :meth:`Stethoscope.start`, in ``1/sample_rate`` units."""


def is_alsa_source(source: str) -> bool:
    """Whether ``source`` names an ALSA PCM rather than a file."""
    return source == "default" or source.startswith(_ALSA_PREFIXES)


def _use_system_alsa_config() -> None:
    if "ALSA_CONFIG_DIR" not in os.environ and os.path.exists(os.path.join(_SYSTEM_ALSA_DIR, "alsa.conf")):
        os.environ["ALSA_CONFIG_DIR"] = _SYSTEM_ALSA_DIR


class Stethoscope(ThreadedDriver[av.container.InputContainer]):
    """A USB stethoscope (or a WAV file standing in for one), kept open.

    ``sample_rate`` is asked of an ALSA device (48 kHz when ``None``); for a
    file it is checked against the file's rate (any rate when ``None``), as is
    ``channels``: a mismatch is refused, never resampled. Chunks hold
    ``chunk_duration`` seconds of samples.
    """

    kind = "stethoscope"

    def __init__(
        self,
        source: str,
        *,
        name: str = "stethoscope",
        sample_rate: int | None = None,
        channels: int = 1,
        chunk_duration: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if channels < 1 or chunk_duration <= 0:
            raise ValueError("a stethoscope needs at least one channel and chunks longer than zero")
        super().__init__(source, name=name, clock=clock, logger=logger)
        self.is_alsa = is_alsa_source(source)
        self.sample_rate = sample_rate
        self.channels = channels
        self.chunk_duration = chunk_duration
        self._subscribers: list[asyncio.Queue[AudioChunk]] = []
        self._pts = 0
        self.dropped_chunks = 0
        """Chunks a slow consumer lost (its queue was full); should stay 0."""

    async def __aenter__(self) -> Stethoscope:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- consumers -------------------------------------------------------
    async def frames(self, max_queued: int = 50) -> AsyncIterator[AudioChunk]:
        """Chunks from now on, in order, without gaps while the consumer keeps up.

        Audio must not be skipped the way video frames are, but memory stays
        bounded: past ``max_queued`` chunks (1 s by default) the oldest is
        dropped and counted in :attr:`dropped_chunks`. The iterator waits
        through unplugs and resumes when the device is back.
        """
        queue: asyncio.Queue[AudioChunk] = asyncio.Queue(max_queued)
        self._subscribers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)

    def _deliver(self, chunk: AudioChunk) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self.dropped_chunks += 1
                # One line per hundred drops: a busy host drops 50 chunks a second, and a line per chunk would
                # flood the journal while saying nothing more.
                if self.dropped_chunks % 100 == 1:
                    self.log.warning(
                        "%s: a consumer fell behind (%d audio chunks dropped so far)", self.name, self.dropped_chunks
                    )
            queue.put_nowait(chunk)

    # -- reading thread --------------------------------------------------
    def _open(self) -> av.container.InputContainer:
        try:
            if self.is_alsa:
                _use_system_alsa_config()
                rate = self.sample_rate or _ALSA_DEFAULT_RATE
                options = {"sample_rate": str(rate), "channels": str(self.channels)}
                container = av.open(self.path, format="alsa", options=options)
            else:
                if not os.path.exists(self.path):
                    raise DeviceNotFound(f"no stethoscope at {self.path}", device=self.name)
                container = av.open(self.path)
        except (av.FFmpegError, OSError) as exc:
            raise DeviceNotFound(
                f"cannot open the stethoscope at {self.path} ({exc.__class__.__name__})", device=self.name
            ) from exc
        try:
            self._check_stream(container)
        except DeviceError:
            container.close()
            raise
        return container

    def _check_stream(self, container: av.container.InputContainer) -> None:
        if not container.streams.audio:
            raise DeviceError(f"{self.path} carries no sound", reason=Reason.UNSUPPORTED, device=self.name)
        stream = container.streams.audio[0]
        rate, channels = stream.rate, stream.channels
        if self.sample_rate is not None and rate != self.sample_rate:
            raise DeviceError(
                f"the stethoscope delivers {rate} Hz, not the {self.sample_rate} Hz asked (no resampling)",
                reason=Reason.UNSUPPORTED,
                device=self.name,
            )
        sample_format = stream.codec_context.format
        if sample_format is None or sample_format.name not in ("s16", "s16p"):
            raise DeviceError(
                f"the stethoscope delivers {getattr(sample_format, 'name', 'unknown')} samples, "
                "not 16-bit PCM (no conversion)",
                reason=Reason.UNSUPPORTED,
                device=self.name,
            )
        if channels != self.channels:
            raise DeviceError(
                f"the stethoscope delivers {channels} channels, not {self.channels}",
                reason=Reason.UNSUPPORTED,
                device=self.name,
            )

    def _close(self, handle: av.container.InputContainer) -> None:
        handle.close()

    def _serve(self, handle: av.container.InputContainer) -> None:
        container = handle
        stream = container.streams.audio[0]
        rate = int(stream.rate)
        chunk_size = max(1, round(rate * self.chunk_duration))
        pending = np.empty((0, self.channels), np.int16)
        received = 0  # samples read from this opening of the source
        pass_start = 0  # value of ``received`` when the current pass over a file began
        base = self.clock()  # host time of sample 0 of this opening (file: by construction)
        connected = False
        while not self._stopping:
            try:
                for frame in container.decode(stream):
                    samples = self._samples(frame)
                    arrival = self.clock()
                    received += len(samples)
                    if self.is_alsa:
                        # The newest sample was captured about when read()
                        # returned; the ones before it, one period earlier each.
                        base = arrival - received / rate
                    pending = np.concatenate((pending, samples)) if len(pending) else samples
                    start = received - len(pending)  # position of pending[0]
                    while len(pending) >= chunk_size:
                        chunk, pending = pending[:chunk_size], pending[chunk_size:]
                        if not self.is_alsa:
                            if not os.path.exists(self.path):
                                raise DeviceDisconnected(f"the {self.name} went away", device=self.name)
                            # Release each chunk when its last sample would
                            # have been recorded: the file plays in real time.
                            if not self._sleep(base + (start + chunk_size) / rate - self.clock()):
                                return
                            if self.clock() - (base + (start + chunk_size) / rate) > _MAX_LAG:
                                base = self.clock() - (start + chunk_size) / rate
                        if not connected:
                            connected = True
                            self._report(DeviceState.CONNECTED)
                        self._emit(chunk, rate, base + start / rate)
                        start += chunk_size
                    if self._stopping:
                        return
            except av.FFmpegError as exc:
                raise DeviceDisconnected(
                    f"the {self.name} went away ({exc.__class__.__name__})", device=self.name
                ) from exc
            if self.is_alsa:
                raise DeviceDisconnected(f"the {self.name} stopped sending sound", device=self.name)
            if received == pass_start:
                # A whole pass gave nothing (a file still being written, or
                # empty): reopen later rather than spin on it.
                raise DeviceDisconnected(f"the {self.name} source holds no sound", device=self.name)
            pass_start = received
            # End of the emulator's recording: it is a loop, the sound goes on.
            container.seek(0)

    def _samples(self, frame: av.AudioFrame) -> Samples:
        if frame.format.name not in ("s16", "s16p"):
            raise DeviceError(
                f"the stethoscope delivers {frame.format.name} samples, not 16-bit PCM (no conversion)",
                reason=Reason.UNSUPPORTED,
                device=self.name,
            )
        array = frame.to_ndarray()
        # Packed s16 comes as one row of interleaved samples, planar as one row per channel.
        samples = array.T if frame.format.is_planar else array.reshape(-1, self.channels)
        return np.ascontiguousarray(samples, dtype=np.int16)

    def _emit(self, samples: Samples, rate: int, first_sample_time: float) -> None:
        samples = samples.copy()  # own the memory: the slice shares the decoder's buffer
        samples.flags.writeable = False
        chunk = AudioChunk(samples, rate, first_sample_time, self._pts)
        self._pts += len(samples)
        self._call(self._deliver, chunk)
