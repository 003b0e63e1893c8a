"""Giving freed memory back to the system between patients.

A consultation allocates and frees hundreds of megabytes of video frames from
several threads (capture, decoding, encoding). glibc's allocator keeps the
freed pages in per-thread arenas for reuse, but the next call's threads do not
always land on the same arenas, so the booth's resident size creeps up session
after session although nothing leaks. ``malloc_trim`` returns the free pages of
every arena to the kernel; the booth calls it once per wipe, when no call runs.

The booth also caps the arenas (:func:`limit_arenas`): glibc makes up to eight
per core, one for each thread that finds the others busy, and each keeps its own
free pages between calls. The booth's threads (cameras, stethoscope, codecs)
share two. The cap counts only before a second thread allocates, so the entry
points set it first thing.
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


ARENA_MAX = 2
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


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


def limit_arenas(arena_max: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas at ``arena_max``; False when the C library cannot (see the module docstring)."""
    mallopt = _mallopt()
    return mallopt is not None and mallopt(_M_ARENA_MAX, arena_max) == 1


def return_free_memory() -> bool:
    """Release the allocator's free pages to the kernel; False when the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
