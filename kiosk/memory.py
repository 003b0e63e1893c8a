"""Giving freed memory back to the system between patients.

A consultation allocates and frees hundreds of megabytes of video frames from
several threads (capture, decoding, encoding). glibc's allocator keeps the
freed pages in per-thread arenas for reuse, but the next call's threads do not
always land on the same arenas, so the booth's resident size creeps up session
after session although nothing leaks. ``malloc_trim`` returns the free pages of
every arena to the kernel; the booth calls it once per wipe, when no call runs.

Two allocator settings, made once at start (:func:`bound_allocator`), keep the
frames out of the arenas in the first place:

- a fixed mmap threshold: glibc raises its threshold up to 32 MiB each time a
  large mapped block is freed, after which every video frame (1.4 MB at 720p)
  comes from an arena, where the holes they leave fragment it. Fixed, frames are
  mapped and unmapped whole, and freeing one gives its pages back at once;
- at most a few arenas: glibc makes up to 8 per core, one per busy thread, each
  holding its own free pages. The booth's few threads share fewer arenas.

Both are ``mallopt`` calls: the arena limit counts only before the process's
second thread allocates, so the entry points call it first thing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl has no malloc_trim): nothing to do
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


MMAP_THRESHOLD = 128 * 1024
"""glibc's own starting value, made fixed: blocks this large or larger are mapped on their own."""
ARENA_MAX = 4
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def bound_allocator(*, mmap_threshold: int = MMAP_THRESHOLD, arena_max: int = ARENA_MAX) -> bool:
    """Fix the mmap threshold and cap the arenas (see the module's docstring); False when the C library cannot."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success, 0 on error
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_ARENA_MAX, arena_max))


def return_free_memory() -> bool:
    """Release the allocator's free pages to the kernel; False when the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
