"""Capture-time stamps drawn into video frames, for glass-to-glass latency measurements.

A stamp is the wall-clock time (``time.time()``, in whole milliseconds) at
which a camera captured a frame, drawn into the frame's top rows as
:data:`BLOCKS` black or white squares of :data:`BLOCK` x :data:`BLOCK`
pixels: :data:`VALUE_BITS` bits of the value, most significant first, then
the :data:`CHECK_BITS`-bit CRC-16/CCITT-FALSE of the value's six big-endian
bytes. Blocks run left to right from the top-left corner and wrap to the
next row of blocks when the frame is narrower than the pattern (a 1280-wide
frame holds them on one row, a 640-wide one on two).

Squares of 16 x 16 pixels are VP8 (and H.264) macroblocks, and black and
white are luma only, so the pattern comes through a real-time encoder at a
few hundred kbit/s: the reader takes the mean of each square's centre and
compares it with mid-grey. The CRC rejects a frame whose pattern was
damaged (or that carries none: an all-black strip is not a valid stamp).

The doctor-side reader is JavaScript in ``bench/consultation.py``; it
follows :func:`block_origins` and :func:`decode` exactly.

:class:`StampedCameraTrack` is :class:`~kiosk.session.tracks.CameraTrack`
with every frame stamped as it enters the track (``kiosk-booth
--stamp-frames``). The stamp is the capture time, not the time of stamping:
the camera's monotonic read time mapped to the wall clock, so the wait in
the newest-frame slot counts as latency, as it would for the patient.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Final

import av
import numpy as np
import numpy.typing as npt

from devices.camera import CameraFrame, UvcCamera
from kiosk.session.tracks import CameraTrack

BLOCK: Final = 16
"""Side of one square, in pixels."""
VALUE_BITS: Final = 48
"""Bits of the millisecond value (enough until the year 10889)."""
CHECK_BITS: Final = 16
BLOCKS: Final = VALUE_BITS + CHECK_BITS
SAMPLE_MARGIN: Final = 4
"""Pixels left out on each side of a square when reading it (encoder ringing lives at the edges)."""
THRESHOLD: Final = 128

Image = npt.NDArray[np.uint8]


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def stamp_bits(value_ms: int) -> list[int]:
    """The :data:`BLOCKS` bits (0 or 1) of a stamp: the value then its CRC, most significant bit first."""
    if not 0 <= value_ms < 1 << VALUE_BITS:
        raise ValueError(f"stamp value out of range: {value_ms}")
    check = crc16(value_ms.to_bytes(VALUE_BITS // 8, "big"))
    word = (value_ms << CHECK_BITS) | check
    return [(word >> (BLOCKS - 1 - index)) & 1 for index in range(BLOCKS)]


def rows_needed(width: int) -> int:
    """Rows of squares the pattern takes in a frame ``width`` pixels wide."""
    columns = width // BLOCK
    if columns < 1:
        raise ValueError(f"a frame {width} pixels wide cannot hold a stamp")
    return math.ceil(BLOCKS / columns)


def block_origins(width: int) -> list[tuple[int, int]]:
    """Top-left corner (x, y) of each square, in bit order."""
    columns = width // BLOCK
    rows_needed(width)  # validates the width
    return [((index % columns) * BLOCK, (index // columns) * BLOCK) for index in range(BLOCKS)]


def fits(width: int, height: int) -> bool:
    """Whether a ``width`` x ``height`` frame can carry a stamp."""
    return width >= BLOCK and height >= rows_needed(width) * BLOCK


def draw(image: Image, value_ms: int) -> None:
    """Draw the stamp of ``value_ms`` into ``image`` (H x W x C or H x W, uint8, writable) in place."""
    height, width = image.shape[:2]
    if not fits(width, height):
        raise ValueError(f"a {width}x{height} frame cannot hold a stamp")
    for bit, (x, y) in zip(stamp_bits(value_ms), block_origins(width), strict=True):
        image[y : y + BLOCK, x : x + BLOCK] = 255 if bit else 0


def decode(image: npt.NDArray[Any]) -> int | None:
    """The millisecond value stamped in ``image`` (BGR/RGB or grey, 0-255), or None when there is no valid stamp."""
    height, width = image.shape[:2]
    if not fits(width, height):
        return None
    inner = slice(SAMPLE_MARGIN, BLOCK - SAMPLE_MARGIN)
    word = 0
    for x, y in block_origins(width):
        square = image[y : y + BLOCK, x : x + BLOCK][inner, inner]
        word = (word << 1) | int(float(square.mean()) > THRESHOLD)
    value, check = word >> CHECK_BITS, word & ((1 << CHECK_BITS) - 1)
    if crc16(value.to_bytes(VALUE_BITS // 8, "big")) != check:
        return None
    return value


def wall_clock_ms(
    instant: float, *, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
) -> int:
    """Wall-clock milliseconds of an ``instant`` of ``clock`` in the recent past."""
    return round((wall() - (clock() - instant)) * 1000)


class StampedCameraTrack(CameraTrack):
    """A :class:`CameraTrack` whose frames carry their capture time (see the module docstring).

    The camera's image is shared by its subscribers and read-only: the
    stamp is drawn on a copy, so only this track's frames carry it.
    """

    def __init__(self, camera: UvcCamera) -> None:
        super().__init__(camera)
        self.stamped = 0
        """Frames stamped so far."""

    def _to_video_frame(self, frame: CameraFrame) -> av.VideoFrame:
        image = np.array(frame.image, dtype=np.uint8, copy=True)
        height, width = image.shape[:2]
        if fits(width, height):
            draw(image, wall_clock_ms(frame.time, clock=self.camera.clock))
            self.stamped += 1
        return super()._to_video_frame(CameraFrame(image, frame.time, frame.index))
