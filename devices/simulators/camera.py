"""Synthetic videos standing in for the booth's UVC cameras.

:func:`write_synthetic_video` writes a short looping video (Motion-JPEG in AVI,
a codec the opencv-python wheel both writes and reads) that the very same
:class:`devices.camera.UvcCamera` opens in place of a ``/dev/video*`` node.

Every frame carries its index in a machine-readable stamp (:func:`stamp_frame`,
read back by :func:`read_frame_stamp`), so a test at the far end of a video
path can tell which frame it is looking at and measure latency. The stamp is a
strip of blocks in the top-left corner whose geometry is relative to the frame
size, so it survives the camera's downscaling and JPEG compression:

``[white guard][black guard][16 data bits, MSB first][even parity]``

Block width is ``width / 48`` and strip height ``height / 24``; a white block is
a 1 bit. The stamp holds ``index % 65536``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, Literal, cast

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Kind = Literal["otoscope", "dermatoscope", "room"]

STAMP_BITS = 16
_STAMP_BLOCKS = 2 + STAMP_BITS + 1  # two guards, the data, one parity block
_BLOCKS_PER_WIDTH = 48
_STRIPS_PER_HEIGHT = 24


def _block_box(index: int, width: int, height: int) -> tuple[int, int, int, int]:
    x0 = round(index * width / _BLOCKS_PER_WIDTH)
    x1 = round((index + 1) * width / _BLOCKS_PER_WIDTH)
    return x0, x1, 0, max(1, round(height / _STRIPS_PER_HEIGHT))


def _stamp_bits(index: int) -> list[int]:
    value = index % (1 << STAMP_BITS)
    data = [(value >> (STAMP_BITS - 1 - bit)) & 1 for bit in range(STAMP_BITS)]
    return [1, 0, *data, sum(data) % 2]


def stamp_frame(image: Image, index: int) -> None:
    """Draw ``index`` (modulo 2**16) into the top-left corner of a BGR image, in place."""
    height, width = image.shape[:2]
    for block, bit in enumerate(_stamp_bits(index)):
        x0, x1, y0, y1 = _block_box(block, width, height)
        image[y0:y1, x0:x1] = 255 if bit else 0


def read_frame_stamp(image: npt.NDArray[Any]) -> int | None:
    """The index stamped by :func:`stamp_frame`, or ``None`` when no valid stamp is there.

    Works on a resized or JPEG-compressed copy of the frame: each block is read
    as the mean of its central part, against the two guard blocks' levels, and
    the parity block must agree.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] < _STRIPS_PER_HEIGHT or image.shape[1] < _BLOCKS_PER_WIDTH:
        return None
    grey = image if image.ndim == 2 else image.mean(axis=2)
    height, width = grey.shape[:2]
    levels: list[float] = []
    for block in range(_STAMP_BLOCKS):
        x0, x1, y0, y1 = _block_box(block, width, height)
        # The central half of the block: its edges are blurred by scaling and JPEG.
        dx, dy = (x1 - x0) // 4, (y1 - y0) // 4
        core = grey[y0 + dy : y1 - dy, x0 + dx : x1 - dx]
        if core.size == 0:
            return None
        levels.append(float(core.mean()))
    white, black = levels[0], levels[1]
    if white - black < 96:
        return None
    threshold = (white + black) / 2
    margin = (white - black) / 4
    bits: list[int] = []
    for level in levels[2:]:
        if abs(level - threshold) < margin:
            return None  # neither clearly white nor clearly black: not a stamp
        bits.append(1 if level > threshold else 0)
    data, parity = bits[:STAMP_BITS], bits[STAMP_BITS]
    if sum(data) % 2 != parity:
        return None
    value = 0
    for bit in data:
        value = (value << 1) | bit
    return value


# -- scenes ----------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, width: int, height: int, scale: float) -> npt.NDArray[np.float32]:
    """Noise in [0, 1] whose features are about ``scale`` pixels wide."""
    small_w, small_h = max(2, int(width / scale)), max(2, int(height / scale))
    small = rng.random((small_h, small_w), dtype=np.float32)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cast(npt.NDArray[np.float32], np.clip(big, 0.0, 1.0))


def _shift(image: Image, dx: float, dy: float) -> Image:
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float32)
    height, width = image.shape[:2]
    return cast(Image, cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT))


def _scope_mask(width: int, height: int, radius_fraction: float) -> npt.NDArray[np.float32]:
    """The round field of view of a speculum or dermatoscope lens, soft-edged."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = radius_fraction * min(width, height)
    distance = np.hypot(xs - width / 2, ys - height / 2)
    mask = np.clip((radius - distance) / (0.03 * radius) + 0.5, 0.0, 1.0)
    # Vignetting: the lamp lights the centre more than the edge.
    mask *= 1.0 - 0.35 * np.clip(distance / radius, 0.0, 1.0) ** 2
    return cast(npt.NDArray[np.float32], mask.astype(np.float32))


def _otoscope_scene(rng: np.random.Generator, width: int, height: int) -> Callable[[int, float], Image]:
    # A tympanic membrane: a pearly pink-grey disc, the malleus handle running
    # from the centre (umbo) upwards, and the cone of light antero-inferiorly.
    unit = min(width, height)
    texture = _smooth_noise(rng, width, height, unit / 12)
    base = np.empty((height, width, 3), np.float32)
    base[..., 0] = 150 + 25 * texture  # B
    base[..., 1] = 140 + 20 * texture  # G
    base[..., 2] = 205 + 30 * texture  # R
    canal = np.array([40, 60, 120], np.float32)  # the reddish canal wall around the drum
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width / 2, height / 2
    drum_r = 0.36 * unit
    inside = np.clip((drum_r - np.hypot(xs - cx, ys - cy)) / (0.02 * unit), 0.0, 1.0)[..., None]
    scene = base * inside + canal * (1 - inside)
    cv2.line(
        scene,
        (int(cx), int(cy)),
        (int(cx + 0.05 * unit), int(cy - 0.25 * unit)),
        (215, 225, 240),
        max(2, unit // 60),
        cv2.LINE_AA,
    )
    cone = np.array(
        [
            (cx + 0.02 * unit, cy + 0.03 * unit),
            (cx + 0.12 * unit, cy + 0.30 * unit),
            (cx + 0.24 * unit, cy + 0.22 * unit),
        ],
        np.int32,
    )
    cv2.fillConvexPoly(scene, cone, (245, 250, 255), cv2.LINE_AA)
    for _ in range(5):  # a few fine radial vessels
        angle = rng.uniform(0, 2 * math.pi)
        r0, r1 = 0.2 * unit, 0.35 * unit
        p0 = (int(cx + r0 * math.cos(angle)), int(cy + r0 * math.sin(angle)))
        p1 = (int(cx + r1 * math.cos(angle + 0.1)), int(cy + r1 * math.sin(angle + 0.1)))
        cv2.line(scene, p0, p1, (90, 90, 190), max(1, unit // 300), cv2.LINE_AA)
    drum = np.clip(scene, 0, 255).astype(np.uint8)
    mask = _scope_mask(width, height, 0.48)[..., None]

    def frame(index: int, t: float) -> Image:
        # The hand-held otoscope drifts a little: a slow wobble of a few pixels.
        moved = _shift(
            drum, 0.01 * unit * math.sin(2 * math.pi * 0.5 * t), 0.008 * unit * math.cos(2 * math.pi * 0.3 * t)
        )
        return (moved * mask).astype(np.uint8)

    return frame


def _dermatoscope_scene(rng: np.random.Generator, width: int, height: int) -> Callable[[int, float], Image]:
    # Skin under polarised light: fine pores and furrows, a pigmented naevus
    # with an irregular border, and a few hairs.
    unit = min(width, height)
    fine = _smooth_noise(rng, width, height, max(2.0, unit / 150))
    coarse = _smooth_noise(rng, width, height, unit / 10)
    skin = np.empty((height, width, 3), np.float32)
    shade = 0.6 * coarse + 0.4 * fine
    skin[..., 0] = 140 + 30 * shade
    skin[..., 1] = 165 + 30 * shade
    skin[..., 2] = 215 + 25 * shade
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width / 2, height / 2
    angle = np.arctan2(ys - cy, xs - cx)
    border = 0.16 * unit * (1 + 0.12 * np.sin(3 * angle + 1.0) + 0.07 * np.sin(7 * angle))
    lesion = np.clip((border - np.hypot(xs - cx, ys - cy)) / (0.02 * unit), 0.0, 1.0)
    pigment = np.stack([40 + 30 * fine, 55 + 30 * fine, 95 + 35 * fine], axis=-1)
    scene = skin * (1 - lesion[..., None]) + pigment * lesion[..., None]
    for _ in range(6):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        direction = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.2, 0.5) * unit
        x1, y1 = x0 + length * math.cos(direction), y0 + length * math.sin(direction)
        cv2.line(scene, (int(x0), int(y0)), (int(x1), int(y1)), (30, 35, 45), max(1, unit // 250), cv2.LINE_AA)
    skin_image = np.clip(scene, 0, 255).astype(np.uint8)
    mask = _scope_mask(width, height, 0.49)[..., None]

    def frame(index: int, t: float) -> Image:
        moved = _shift(
            skin_image, 0.006 * unit * math.sin(2 * math.pi * 0.4 * t), 0.004 * unit * math.sin(2 * math.pi * 0.25 * t)
        )
        return (moved * mask).astype(np.uint8)

    return frame


def _room_scene(rng: np.random.Generator, width: int, height: int) -> Callable[[int, float], Image]:
    # The booth seen from its own camera, without anybody in it: a wall, the
    # floor, a chair and a wall clock whose hand turns (so frames differ).
    wall = np.empty((height, width, 3), np.float32)
    gradient = np.linspace(1.0, 0.8, height, dtype=np.float32)[:, None]
    texture = _smooth_noise(rng, width, height, min(width, height) / 40)
    wall[..., 0] = (200 + 10 * texture) * gradient
    wall[..., 1] = (210 + 10 * texture) * gradient
    wall[..., 2] = (215 + 10 * texture) * gradient
    room = np.clip(wall, 0, 255).astype(np.uint8)
    floor_y = int(0.72 * height)
    room[floor_y:] = (90, 110, 140)
    cv2.rectangle(room, (int(0.62 * width), int(0.15 * height)), (int(0.8 * width), floor_y), (120, 120, 125), -1)
    cv2.rectangle(
        room, (int(0.3 * width), int(0.5 * height)), (int(0.45 * width), int(0.56 * height)), (60, 70, 90), -1
    )
    for leg_x in (0.31, 0.44):
        cv2.rectangle(
            room,
            (int(leg_x * width), int(0.56 * height)),
            (int((leg_x + 0.01) * width), int(0.8 * height)),
            (50, 55, 70),
            -1,
        )
    clock_centre = (int(0.2 * width), int(0.25 * height))
    clock_r = max(4, int(0.06 * min(width, height)))
    cv2.circle(room, clock_centre, clock_r, (240, 240, 240), -1, cv2.LINE_AA)
    cv2.circle(room, clock_centre, clock_r, (40, 40, 40), max(1, clock_r // 12), cv2.LINE_AA)

    def frame(index: int, t: float) -> Image:
        image = room.copy()
        angle = 2 * math.pi * t / 4.0 - math.pi / 2
        tip = (
            int(clock_centre[0] + 0.85 * clock_r * math.cos(angle)),
            int(clock_centre[1] + 0.85 * clock_r * math.sin(angle)),
        )
        cv2.line(image, clock_centre, tip, (20, 20, 20), max(1, clock_r // 10), cv2.LINE_AA)
        # Mains-lit rooms flicker a little in brightness.
        return cast(Image, cv2.convertScaleAbs(image, alpha=1.0 + 0.01 * math.sin(2 * math.pi * 0.7 * t)))

    return frame


_SCENES: dict[str, Callable[[np.random.Generator, int, int], Callable[[int, float], Image]]] = {
    "otoscope": _otoscope_scene,
    "dermatoscope": _dermatoscope_scene,
    "room": _room_scene,
}


def write_synthetic_video(
    path: str | os.PathLike[str],
    *,
    kind: Kind = "otoscope",
    size: tuple[int, int] = (1920, 1080),
    fps: float = 30,
    seconds: float = 4,
    seed: int = 0,
) -> str:
    """Write a looping synthetic camera video (Motion-JPEG in AVI) and return its path.

    ``kind`` picks the scene: an eardrum for the otoscope, skin with a mole for
    the dermatoscope, the empty booth for the room camera. Each frame carries
    its index (see :func:`read_frame_stamp`). The output is deterministic for a
    given ``seed``. ``path`` must end in ``.avi``.
    """
    target = os.fspath(path)
    if not target.lower().endswith(".avi"):
        raise ValueError("synthetic videos are Motion-JPEG in AVI: give a path ending in .avi")
    if kind not in _SCENES:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {sorted(_SCENES)}")
    width, height = size
    if width < _BLOCKS_PER_WIDTH * 2 or height < _STRIPS_PER_HEIGHT * 2:
        raise ValueError("video too small to carry a frame stamp")
    frame_count = max(1, round(fps * seconds))
    scene = _SCENES[kind](np.random.default_rng(seed), width, height)
    writer = cv2.VideoWriter(target, cv2.VideoWriter.fourcc(*"MJPG"), float(fps), (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write a Motion-JPEG video at {target}")
    try:
        for index in range(frame_count):
            image = np.ascontiguousarray(scene(index, index / fps))
            stamp_frame(image, index)
            writer.write(image)
    finally:
        writer.release()
    return target
