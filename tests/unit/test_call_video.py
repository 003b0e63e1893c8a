"""The screens' video service: the booth camera is read only while a screen shows the self view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices.camera import UvcCamera
from devices.simulators.camera import write_synthetic_video
from kiosk.ui.booth_services import CallVideo

SIZE = (320, 180)


class QuietSession:
    """A booth session with no call: CallVideo only listens to it."""

    call = None

    def __init__(self) -> None:
        self.listeners: list[Callable[[Any], None]] = []

    def add_listener(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)


@pytest.fixture
async def camera(tmp_path: Path) -> AsyncIterator[UvcCamera]:
    video = write_synthetic_video(tmp_path / "room.avi", size=SIZE, fps=30, seconds=1)
    async with UvcCamera(video, name="room", stream_size=SIZE) as cam:
        await cam.wait_connected(5)
        yield cam


async def picture(video: CallVideo, timeout: float = 5.0) -> np.ndarray[Any, Any]:
    async def first() -> np.ndarray[Any, Any]:
        while (image := video.self_view()) is None:
            await asyncio.sleep(0.02)
        return image

    return await asyncio.wait_for(first(), timeout)


async def settled(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def test_camera_read_only_while_a_screen_shows_the_self_view(camera: UvcCamera) -> None:
    video = CallVideo(QuietSession(), camera)  # type: ignore[arg-type]
    video.start()
    try:
        await asyncio.sleep(0.2)
        assert not video.following_camera and camera.frame_readers == 0
        assert video.self_view() is None

        video.watch_self(True)  # the self-check screen
        image = await picture(video)
        assert image.shape == (SIZE[1], SIZE[0], 3)
        # Converted once per camera frame: polled again before the next one, the same array.
        assert video.self_view() is video.self_view()
        assert camera.frame_readers == 1

        video.watch_self(True)  # the consultation screen comes in before the self-check leaves
        video.watch_self(False)
        assert video.following_camera

        video.watch_self(False)  # the wipe: no screen shows the patient any more
        assert not video.following_camera and video.self_view() is None
        await settled(lambda: camera.frame_readers == 0)

        video.watch_self(False)  # one stop too many changes nothing
        video.watch_self(True)
        await picture(video)
    finally:
        await video.stop()
    assert camera.frame_readers == 0 and video.self_view() is None


async def test_watching_before_start_follows_once_started(camera: UvcCamera) -> None:
    video = CallVideo(QuietSession(), camera)  # type: ignore[arg-type]
    video.watch_self(True)
    assert not video.following_camera  # no event loop task before the service starts
    video.start()
    try:
        await picture(video)
    finally:
        await video.stop()
    assert not video.following_camera


async def test_no_camera_no_picture() -> None:
    video = CallVideo(QuietSession(), None)  # type: ignore[arg-type]
    video.start()
    video.watch_self(True)
    await asyncio.sleep(0.1)
    assert not video.following_camera and video.self_view() is None
    await video.stop()
