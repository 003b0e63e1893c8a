"""The stethoscope driver against the emulator's WAV (same code path as the ALSA device)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from devices.errors import DeviceDisconnected, DeviceNotFound, Reason
from devices.events import DeviceEvent, DeviceState, StateChanged
from devices.simulators.stethoscope import heart_sounds, write_heart_sounds
from devices.stethoscope import AudioChunk, Stethoscope, is_alsa_source


def wav_samples(path: str) -> npt.NDArray[np.int16]:
    """The file's samples read with the standard library, independently of PyAV."""
    with wave.open(path) as source:
        channels = source.getnchannels()
        data = np.frombuffer(source.readframes(source.getnframes()), "<i2")
    return data.reshape(-1, channels)


async def take(steth: Stethoscope, count: int, timeout: float = 5) -> list[AudioChunk]:
    async def collect() -> list[AudioChunk]:
        chunks: list[AudioChunk] = []
        async for chunk in steth.frames():
            chunks.append(chunk)
            if len(chunks) == count:
                break
        return chunks

    return await asyncio.wait_for(collect(), timeout)


async def next_state(events: AsyncIterator[DeviceEvent], state: DeviceState, timeout: float = 5) -> StateChanged:
    async def find() -> StateChanged:
        async for event in events:
            if isinstance(event, StateChanged) and event.new is state:
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(find(), timeout)


@pytest.fixture(scope="module")
def heart_wav(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_heart_sounds(tmp_path_factory.mktemp("audio") / "heart.wav", seconds=0.3, sample_rate=16000)


# -- the emulator --------------------------------------------------------------


def test_heart_sounds_are_deterministic_and_low_frequency(tmp_path: Path) -> None:
    a = write_heart_sounds(tmp_path / "a.wav", bpm=72, seconds=5, sample_rate=8000)
    b = write_heart_sounds(tmp_path / "b.wav", bpm=72, seconds=5, sample_rate=8000)
    assert Path(a).read_bytes() == Path(b).read_bytes()
    samples = wav_samples(a)[:, 0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / 8000)
    heart_band = spectrum[(frequencies >= 20) & (frequencies <= 200)].sum()
    assert heart_band / spectrum.sum() > 0.8
    assert np.abs(samples).max() > 10_000  # audible, not clipped silence
    assert np.abs(samples).max() < 32767


@pytest.mark.parametrize("bpm", [60, 72, 110])
def test_heart_sounds_beat_at_the_asked_rate(bpm: int) -> None:
    rate = 8000
    signal = heart_sounds(bpm=bpm, seconds=10, sample_rate=rate)
    # Energy envelope in 10 ms windows; its autocorrelation peaks at the beat
    # period (S1 on S1 and S2 on S2), above the systole lag (S1 on S2 only).
    window = rate // 100
    energy = (signal[: len(signal) // window * window].reshape(-1, window) ** 2).sum(axis=1)
    energy -= energy.mean()
    lags = np.arange(24, 300)  # 0.24 s (250/min) to 3 s (20/min)
    correlation = [float(np.dot(energy[:-lag], energy[lag:])) for lag in lags]
    period = lags[int(np.argmax(correlation))] / 100
    assert 60 / period == pytest.approx(bpm, rel=0.05)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_heart_sounds_rates(tmp_path: Path, rate: int) -> None:
    path = write_heart_sounds(tmp_path / "h.wav", seconds=0.5, sample_rate=rate)
    with wave.open(path) as source:
        assert (source.getframerate(), source.getnchannels(), source.getsampwidth()) == (rate, 1, 2)
        assert source.getnframes() == rate // 2


# -- samples come out untouched ----------------------------------------------


async def test_samples_are_bit_exact(heart_wav: str) -> None:
    reference = wav_samples(heart_wav)  # 4800 samples
    async with Stethoscope(heart_wav) as steth:
        chunks = await take(steth, 20)  # 6400 samples: the file once and a third of its loop
    got = np.concatenate([chunk.samples for chunk in chunks])
    assert got.dtype == np.int16
    assert got.shape == (6400, 1)
    assert np.array_equal(got[:4800], reference)
    assert np.array_equal(got[4800:], reference[:1600])  # the loop restarts exactly at sample 0


async def test_stereo_samples_keep_their_interleaving(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stereo = rng.integers(-32768, 32768, (1600, 2), dtype=np.int16)
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(stereo.astype("<i2").tobytes())
    async with Stethoscope(str(path), channels=2, sample_rate=16000) as steth:
        chunks = await take(steth, 5)
    got = np.concatenate([chunk.samples for chunk in chunks])
    assert np.array_equal(got, stereo)


async def test_chunk_timing(heart_wav: str) -> None:
    steth = Stethoscope(heart_wav, chunk_duration=0.02)
    started = time.monotonic()
    await steth.start()
    try:
        chunks = await take(steth, 25)
        elapsed = time.monotonic() - started
    finally:
        await steth.stop()
    assert all(chunk.samples.shape == (320, 1) and chunk.sample_rate == 16000 for chunk in chunks)
    assert [chunk.pts for chunk in chunks] == [320 * i for i in range(25)]
    steps = np.diff([chunk.time for chunk in chunks])
    assert steps == pytest.approx(np.full(24, 0.02), abs=1e-6)
    # Played in real time: 25 chunks of 20 ms take half a second, not a burst.
    assert 0.45 <= elapsed < 1.5
    assert chunks[0].time >= started - 0.05


async def test_slow_consumer_memory_is_bounded(heart_wav: str) -> None:
    async with Stethoscope(heart_wav) as steth:
        await steth.wait_connected(5)
        frames = steth.frames(max_queued=5)
        first = await asyncio.wait_for(anext(frames), 5)
        await asyncio.sleep(0.3)  # 15 chunks arrive, 5 fit
        second = await asyncio.wait_for(anext(frames), 5)
        await frames.aclose()  # type: ignore[attr-defined]
    assert steth.dropped_chunks >= 5
    assert second.pts - first.pts >= 5 * 320


async def test_mismatched_rate_is_refused_not_resampled(heart_wav: str) -> None:
    steth = Stethoscope(heart_wav, sample_rate=48000)
    events = steth.events()
    try:
        await steth.start()
        refused = await next_state(events, DeviceState.DISCONNECTED)
    finally:
        await steth.stop()
        await events.aclose()
    assert refused.error is not None
    assert refused.error.reason is Reason.UNSUPPORTED
    assert "resampling" in refused.error.message


async def test_non_pcm_source_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    container = av.open(str(path), "w")
    stream = container.add_stream("pcm_f32le", rate=16000, layout="mono")
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.float32), format="flt", layout="mono")
    frame.sample_rate = 16000
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    steth = Stethoscope(str(path))
    async with steth.events() as events:
        await steth.start()
        try:
            refused = await next_state(events, DeviceState.DISCONNECTED)
        finally:
            await steth.stop()
    assert refused.error is not None
    assert refused.error.reason is Reason.UNSUPPORTED
    assert "16-bit" in refused.error.message


# -- unplug and reconnect ------------------------------------------------------


async def test_missing_source_reports_error_then_reconnects(heart_wav: str, tmp_path: Path) -> None:
    path = tmp_path / "later.wav"
    steth = Stethoscope(str(path))
    events = steth.events()
    try:
        await steth.start()
        missing = await next_state(events, DeviceState.DISCONNECTED)
        assert isinstance(missing.error, DeviceNotFound)
        shutil.copy(heart_wav, tmp_path / "partial.wav")
        os.rename(tmp_path / "partial.wav", path)  # appears whole, as a device node does
        await next_state(events, DeviceState.CONNECTED)
        chunks = await take(steth, 3)
        assert np.array_equal(chunks[0].samples, wav_samples(heart_wav)[:320])
    finally:
        await steth.stop()
        await events.aclose()


async def test_unplug_mid_stream_then_back(heart_wav: str, tmp_path: Path) -> None:
    path = tmp_path / "steth.wav"
    shutil.copy(heart_wav, path)
    steth = Stethoscope(str(path))
    events = steth.events()
    try:
        await steth.start()
        await next_state(events, DeviceState.CONNECTED)
        before = await take(steth, 2)
        os.rename(path, tmp_path / "unplugged.wav")
        lost = await next_state(events, DeviceState.DISCONNECTED)
        assert isinstance(lost.error, DeviceDisconnected)
        os.rename(tmp_path / "unplugged.wav", path)
        await next_state(events, DeviceState.CONNECTED)
        after = await take(steth, 2)
        assert after[0].pts > before[-1].pts  # pts keeps counting across the reconnection
    finally:
        await steth.stop()
        await events.aclose()
    assert steth.state is DeviceState.DISCONNECTED


async def test_absent_alsa_card_is_not_found() -> None:
    # Exercises the real ALSA path (PyAV's alsa input and bundled libasound).
    steth = Stethoscope("hw:CARD=NoSuchStethoscope,DEV=0", sample_rate=48000)
    events = steth.events()
    try:
        await steth.start()
        missing = await next_state(events, DeviceState.DISCONNECTED)
    finally:
        await steth.stop()
        await events.aclose()
    assert isinstance(missing.error, DeviceNotFound)


def test_alsa_names_are_told_from_files() -> None:
    assert is_alsa_source("hw:CARD=Stethoscope,DEV=0")
    assert is_alsa_source("plughw:1,0")
    assert is_alsa_source("default")
    assert not is_alsa_source("/tmp/heart.wav")
    assert not is_alsa_source("heart.wav")


# -- real hardware (opt-in: --device-port stethoscope=hw:CARD=...,DEV=0) -------


@pytest.mark.hardware
async def test_real_stethoscope_streams(device_ports: dict[str, str]) -> None:
    source = device_ports.get("stethoscope")
    if source is None:
        pytest.skip("no --device-port stethoscope=hw:CARD=...,DEV=0 given")
    async with Stethoscope(source, sample_rate=48000) as steth:
        chunks = await take(steth, 10, timeout=10)
    assert all(chunk.samples.shape == (960, 1) for chunk in chunks)
