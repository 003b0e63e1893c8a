"""Capture-time stamps: layout, round trip, damage detection, and survival through aiortc's VP8 codec."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import MIN_BITRATE, Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

from devices.camera import CameraFrame
from kiosk.session import stamp
from kiosk.session.stamp import BLOCK, BLOCKS, StampedCameraTrack
from kiosk.session.tracks import VIDEO_TIME_BASE

NOW_MS = 1_764_064_935_123  # 2025-11-25, a realistic time.time() in ms


def scene(width: int, height: int, seed: int) -> np.ndarray:
    """A busy picture (gradient, noise, a moving square) so the encoder has work everywhere."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    image[:, :, 1] = np.linspace(255, 0, height, dtype=np.uint8)[:, None]
    image[:, :, 2] = rng.integers(0, 256, (height, width), dtype=np.uint8)
    x = (seed * 37) % (width - 100)
    image[50:150, x : x + 100] = (20, 200, 240)
    return image


def test_crc16_ccitt_false_check_value() -> None:
    assert stamp.crc16(b"123456789") == 0x29B1


def test_bits_value_then_crc_msb_first() -> None:
    bits = stamp.stamp_bits(NOW_MS)
    assert len(bits) == BLOCKS
    assert int("".join(map(str, bits[:48])), 2) == NOW_MS
    assert int("".join(map(str, bits[48:])), 2) == stamp.crc16(NOW_MS.to_bytes(6, "big"))


@pytest.mark.parametrize("value", [-1, 1 << 48])
def test_out_of_range_values_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        stamp.stamp_bits(value)


def test_layout_one_row_at_1280_two_rows_at_640() -> None:
    wide = stamp.block_origins(1280)
    assert wide[0] == (0, 0) and wide[-1] == ((BLOCKS - 1) * BLOCK, 0)
    assert stamp.rows_needed(1280) == 1
    narrow = stamp.block_origins(640)
    assert stamp.rows_needed(640) == 2
    assert narrow[39] == (39 * BLOCK, 0) and narrow[40] == (0, BLOCK)
    assert stamp.fits(1280, 720) and stamp.fits(640, 32) and not stamp.fits(640, 31) and not stamp.fits(8, 720)


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (640, 360), (320, 240), (16, 1024)])
@pytest.mark.parametrize("value", [0, 1, NOW_MS, (1 << 48) - 1])
def test_round_trip(width: int, height: int, value: int) -> None:
    image = scene(width, height, 1)
    stamp.draw(image, value)
    assert stamp.decode(image) == value
    grey = image.mean(axis=2).astype(np.uint8)
    assert stamp.decode(grey) == value


def test_only_the_top_rows_change() -> None:
    image = scene(1280, 720, 2)
    before = image.copy()
    stamp.draw(image, NOW_MS)
    assert np.array_equal(image[BLOCK:], before[BLOCK:])
    assert np.array_equal(image[:BLOCK, BLOCKS * BLOCK :], before[:BLOCK, BLOCKS * BLOCK :])


def test_unstamped_and_damaged_frames_give_none() -> None:
    assert stamp.decode(np.zeros((720, 1280, 3), np.uint8)) is None
    assert stamp.decode(np.full((720, 1280, 3), 255, np.uint8)) is None
    assert stamp.decode(np.zeros((8, 1280, 3), np.uint8)) is None  # too short to hold one
    image = scene(1280, 720, 3)
    stamp.draw(image, NOW_MS)
    x, y = stamp.block_origins(1280)[20]
    image[y : y + BLOCK, x : x + BLOCK] = 255 - image[y : y + BLOCK, x : x + BLOCK]  # one bit flipped
    assert stamp.decode(image) is None


def test_a_frame_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        stamp.draw(np.zeros((16, 640, 3), np.uint8), NOW_MS)


def test_wall_clock_of_a_monotonic_instant() -> None:
    assert stamp.wall_clock_ms(9.5, clock=lambda: 10.0, wall=lambda: 1000.0) == 999_500
    ms = stamp.wall_clock_ms(time.monotonic())
    assert abs(ms - time.time() * 1000) < 50


@pytest.mark.parametrize("bitrate", [MIN_BITRATE, 1_500_000])
def test_stamps_survive_aiortc_vp8_at_720p(bitrate: int) -> None:
    """Key frame then delta frames, through the encoder and decoder aiortc uses on the wire."""
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    encoder.target_bitrate = bitrate
    decoded: list[int | None] = []
    expected: list[int] = []
    for index in range(12):
        image = scene(1280, 720, index)
        value = NOW_MS + index * 33
        stamp.draw(image, value)
        expected.append(value)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = index * 3000
        frame.time_base = VIDEO_TIME_BASE
        payloads, timestamp = encoder.encode(frame, force_keyframe=index == 0)
        data = b"".join(vp8_depayload(payload) for payload in payloads)
        for out in decoder.decode(JitterFrame(data, timestamp)):
            assert isinstance(out, av.VideoFrame)
            decoded.append(stamp.decode(out.to_ndarray(format="bgr24")))
    assert decoded == expected


class _FakeCamera:
    """Just what CameraTrack uses of a UvcCamera."""

    def __init__(self, frames: list[CameraFrame]) -> None:
        self._frames = frames
        self.clock = time.monotonic

    async def frames(self) -> AsyncIterator[CameraFrame]:
        for frame in self._frames:
            yield frame
        await asyncio.Event().wait()


async def test_stamped_track_stamps_a_copy_with_the_capture_time() -> None:
    image = scene(1280, 720, 4)
    image.flags.writeable = False  # as the camera hands it out
    captured = time.monotonic() - 0.2  # read 200 ms ago
    camera = _FakeCamera([CameraFrame(image, captured, 0)])
    track = StampedCameraTrack(camera)  # type: ignore[arg-type]
    try:
        before = time.time() * 1000
        frame = await asyncio.wait_for(track.recv(), 5)
        after = time.time() * 1000
    finally:
        track.stop()
    assert isinstance(frame, av.VideoFrame)
    value = stamp.decode(frame.to_ndarray(format="bgr24"))
    assert value is not None
    assert before - 250 <= value <= after - 150
    assert stamp.decode(image) is None  # the camera's own picture is untouched
    assert track.stamped == 1
