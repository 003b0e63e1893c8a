"""The UVC camera driver against the emulator's synthetic video (same code path as /dev/video*)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.camera import CameraFrame, UvcCamera
from devices.errors import DeviceDisconnected, DeviceNotFound
from devices.events import DeviceEvent, DeviceState, StateChanged
from devices.simulators.camera import read_frame_stamp, stamp_frame, write_synthetic_video

NATIVE = (480, 270)
STREAM = (240, 135)
FPS = 30


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_synthetic_video(tmp_path_factory.mktemp("video") / "otoscope.avi", size=NATIVE, fps=FPS, seconds=1)


@pytest.fixture
async def camera(video: str) -> AsyncIterator[UvcCamera]:
    async with UvcCamera(video, stream_size=STREAM) as cam:
        await cam.wait_connected(5)
        yield cam


async def take(cam: UvcCamera, count: int, timeout: float = 5) -> list[CameraFrame]:
    async def collect() -> list[CameraFrame]:
        frames: list[CameraFrame] = []
        async for frame in cam.frames():
            frames.append(frame)
            if len(frames) == count:
                break
        return frames

    return await asyncio.wait_for(collect(), timeout)


async def next_state(events: AsyncIterator[DeviceEvent], state: DeviceState, timeout: float = 5) -> StateChanged:
    async def find() -> StateChanged:
        async for event in events:
            if isinstance(event, StateChanged) and event.new is state:
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(find(), timeout)


# -- the frame stamp -------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2, 1000, 32767, 65535])
def test_stamp_survives_jpeg_and_downscaling(index: int) -> None:
    image = np.full((1080, 1920, 3), 128, np.uint8)
    stamp_frame(image, index)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    for size in [(1920, 1080), (1280, 720), (320, 180)]:
        assert read_frame_stamp(cv2.resize(decoded, size, interpolation=cv2.INTER_AREA)) == index


@given(index=st.integers(0, 65535), background=st.integers(0, 255))
def test_stamp_round_trips_on_any_background(index: int, background: int) -> None:
    image = np.full((96, 160, 3), background, np.uint8)
    stamp_frame(image, index)
    assert read_frame_stamp(image) == index


@given(seed=st.integers(0, 2**32 - 1), width=st.integers(1, 200), height=st.integers(1, 120), colour=st.booleans())
def test_random_images_never_crash_the_stamp_reader(seed: int, width: int, height: int, colour: bool) -> None:
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if colour else (height, width)
    stamp = read_frame_stamp(rng.integers(0, 256, shape, dtype=np.uint8))
    assert stamp is None or 0 <= stamp < 65536


def test_stamp_wraps_at_16_bits() -> None:
    image = np.zeros((270, 480, 3), np.uint8)
    stamp_frame(image, 65536 + 5)
    assert read_frame_stamp(image) == 5


def test_unstamped_images_read_as_none() -> None:
    rng = np.random.default_rng(1)
    assert read_frame_stamp(np.zeros((270, 480, 3), np.uint8)) is None
    assert read_frame_stamp(np.full((270, 480, 3), 255, np.uint8)) is None
    assert read_frame_stamp(rng.integers(0, 256, (270, 480, 3), dtype=np.uint8)) is None
    assert read_frame_stamp(np.zeros((10, 10, 3), np.uint8)) is None


def test_stamp_with_a_flipped_bit_is_rejected() -> None:
    image = np.full((240, 480, 3), 128, np.uint8)
    stamp_frame(image, 10)
    # Blocks are width/48 = 10 px wide and height/24 = 10 px high; block 2 is
    # the most significant data bit, a 0 for index 10: make it white.
    image[0:10, 20:30] = 255
    assert read_frame_stamp(image) is None  # the parity block catches it


@pytest.mark.parametrize("kind", ["otoscope", "dermatoscope", "room"])
def test_synthetic_videos_carry_their_frame_index(tmp_path: Path, kind: str) -> None:
    path = write_synthetic_video(tmp_path / f"{kind}.avi", kind=kind, size=(320, 180), fps=10, seconds=0.5)  # type: ignore[arg-type]
    capture = cv2.VideoCapture(path)
    stamps = []
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        stamps.append(read_frame_stamp(image))
        frames.append(image)
    capture.release()
    assert stamps == [0, 1, 2, 3, 4]
    assert frames[0].shape == (180, 320, 3)
    # Something moves, and the scene is not blank.
    assert not np.array_equal(frames[0][20:], frames[-1][20:])
    assert frames[0][20:].std() > 10


def test_synthetic_video_is_deterministic(tmp_path: Path) -> None:
    a = write_synthetic_video(tmp_path / "a.avi", size=(160, 96), seconds=0.2)
    b = write_synthetic_video(tmp_path / "b.avi", size=(160, 96), seconds=0.2)
    assert Path(a).read_bytes() == Path(b).read_bytes()


def test_synthetic_video_wants_avi(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="avi"):
        write_synthetic_video(tmp_path / "x.mp4", size=(160, 96))


# -- stream and still --------------------------------------------------------


async def test_stream_frames_have_stream_size(camera: UvcCamera) -> None:
    frames = await take(camera, 3)
    for frame in frames:
        assert frame.image.shape == (STREAM[1], STREAM[0], 3)
        assert frame.image.dtype == np.uint8
        assert not frame.image.flags.writeable  # shared between consumers


async def test_still_has_full_native_size(camera: UvcCamera) -> None:
    still = await camera.capture_still()
    assert (still.width, still.height) == NATIVE
    assert still.image.shape == (NATIVE[1], NATIVE[0], 3)
    assert read_frame_stamp(still.image) is not None
    png = cv2.imdecode(np.frombuffer(still.encode_png(), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(png, still.image)  # lossless
    jpeg = still.encode_jpeg(80)
    assert jpeg[:2] == b"\xff\xd8"
    with pytest.raises(ValueError, match="quality"):
        still.encode_jpeg(0)


async def test_stamps_increase_at_the_native_rate(camera: UvcCamera) -> None:
    frames = await take(camera, 12)
    stamps = [read_frame_stamp(frame.image) for frame in frames]
    numbers = [stamp for stamp in stamps if stamp is not None]
    assert len(numbers) == len(stamps)
    steps = {(b - a) % 30 for a, b in itertools.pairwise(numbers)}
    assert steps == {1}, stamps  # a consumer that keeps up sees every frame, in order
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + 12))
    period = (frames[-1].time - frames[0].time) / 11
    assert period == pytest.approx(1 / FPS, rel=0.25)


async def test_file_source_loops(tmp_path: Path) -> None:
    path = write_synthetic_video(tmp_path / "short.avi", size=(240, 136), fps=30, seconds=0.2)
    async with UvcCamera(path, stream_size=(240, 136)) as cam:
        frames = await take(cam, 14)
    stamps = [read_frame_stamp(frame.image) for frame in frames]
    first = stamps[0]
    assert first is not None
    # Six frames in the file: the stamps run 0..5 and start again at 0.
    assert stamps == [(first + i) % 6 for i in range(14)]


async def test_slow_consumer_gets_fresh_frames_in_bounded_memory(camera: UvcCamera) -> None:
    await take(camera, 2)
    tracemalloc.start()
    try:
        received: list[CameraFrame] = []
        baseline = 0
        async for frame in camera.frames():
            assert time.monotonic() - frame.time < 0.15  # the newest, not a 0.2 s old backlog
            received.append(frame)
            if len(received) == 3:
                baseline = tracemalloc.get_traced_memory()[0]
            if len(received) == 8:
                break
            await asyncio.sleep(0.2)  # six frame periods per read
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    gaps = [b.index - a.index for a, b in itertools.pairwise(received)]
    assert min(gaps) >= 4, gaps  # frames were skipped, not queued
    frame_bytes = STREAM[0] * STREAM[1] * 3
    # A second of queued frames would be ~25 frames; a few are in flight at most.
    assert grown < 6 * frame_bytes, grown


async def test_nothing_is_decoded_while_nobody_reads(camera: UvcCamera) -> None:
    before = (await take(camera, 2))[-1]
    await asyncio.sleep(0.5)  # fifteen frame periods with no reader
    after = await take(camera, 2)
    # Frames are numbered as they are decoded: the idle half second made none.
    assert after[0].index - before.index <= 2, (before.index, [frame.index for frame in after])
    assert after[0].time - before.time >= 0.5
    # A still is served while nobody reads the stream, and the stream resumes after it.
    still = await camera.capture_still()
    assert (still.width, still.height) == NATIVE
    resumed = await take(camera, 3)
    assert [frame.index for frame in resumed] == list(range(resumed[0].index, resumed[0].index + 3))


async def test_two_consumers_both_get_frames(camera: UvcCamera) -> None:
    a, b = await asyncio.gather(take(camera, 3), take(camera, 3))
    assert len(a) == len(b) == 3


# -- unplug and reconnect ------------------------------------------------------


async def test_path_removed_then_back(video: str, tmp_path: Path) -> None:
    path = tmp_path / "camera.avi"
    shutil.copy(video, path)
    cam = UvcCamera(str(path), stream_size=STREAM)
    events = cam.events()
    try:
        await cam.start()
        await next_state(events, DeviceState.CONNECTED)
        await take(cam, 2)
        os.rename(path, tmp_path / "unplugged.avi")
        lost = await next_state(events, DeviceState.DISCONNECTED)
        assert isinstance(lost.error, DeviceDisconnected)
        assert cam.state is DeviceState.DISCONNECTED
        with pytest.raises(DeviceDisconnected):
            await cam.capture_still()
        os.rename(tmp_path / "unplugged.avi", path)
        await next_state(events, DeviceState.CONNECTED)
        frames = await take(cam, 3)
        assert all(frame.image.shape == (STREAM[1], STREAM[0], 3) for frame in frames)
    finally:
        await cam.stop()
        await events.aclose()


async def test_missing_at_start_reports_not_found_then_connects(video: str, tmp_path: Path) -> None:
    path = tmp_path / "later.avi"
    cam = UvcCamera(str(path), stream_size=STREAM)
    events = cam.events()
    try:
        await cam.start()
        missing = await next_state(events, DeviceState.DISCONNECTED)
        assert isinstance(missing.error, DeviceNotFound)
        assert str(path) in missing.error.message
        shutil.copy(video, tmp_path / "partial.avi")
        os.rename(tmp_path / "partial.avi", path)  # appears whole, as a device node does
        await next_state(events, DeviceState.CONNECTED)
        assert len(await take(cam, 2)) == 2
    finally:
        await cam.stop()
        await events.aclose()


async def test_not_a_video_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "junk.avi"
    path.write_bytes(b"not a video at all" * 10)
    cam = UvcCamera(str(path), stream_size=STREAM)
    async with cam.events() as events, cam:
        with pytest.raises(TimeoutError):
            await cam.wait_connected(0.7)  # a few retries
        assert isinstance(cam.last_error, DeviceNotFound)
        seen: list[DeviceEvent] = []
        with contextlib.suppress(TimeoutError):
            while True:
                seen.append(await asyncio.wait_for(anext(events), 0.05))
    assert len(seen) == 1  # announced once per outage, not at every retry


async def test_stop_fails_nothing_and_reports_disconnected(video: str) -> None:
    cam = UvcCamera(video, stream_size=STREAM)
    await cam.start()
    await cam.wait_connected(5)
    await cam.stop()
    assert cam.state is DeviceState.DISCONNECTED
    with pytest.raises(DeviceDisconnected):
        await cam.capture_still()
    await cam.stop()  # idempotent


# -- real hardware (opt-in: --device-port otoscope=/dev/v4l/by-id/...) ---------


@pytest.mark.hardware
async def test_real_camera_still_is_larger_than_stream(device_ports: dict[str, str]) -> None:
    path = device_ports.get("otoscope") or device_ports.get("dermatoscope")
    if path is None:
        pytest.skip("no --device-port otoscope=/dev/video... given")
    async with UvcCamera(path, stream_size=(640, 480)) as cam:
        await cam.wait_connected(10)
        frames = await take(cam, 3, timeout=10)
        assert frames[0].image.shape == (480, 640, 3)
        still = await cam.capture_still(timeout=15)
        assert still.width * still.height >= 640 * 480
        after = await take(cam, 3, timeout=10)  # the stream mode came back
        assert after[-1].image.shape == (480, 640, 3)
