"""Giving freed memory back to the system between patients.

A consultation allocates and frees hundreds of megabytes of video frames from
several threads (capture, decoding, encoding, the software renderer).
``malloc_trim`` returns the free pages of glibc's heaps to the kernel; the
booth calls it at each wipe, when no call runs, and once more when it has
rested after the wipe (the controller's ``_trim_at_rest``).

But ``malloc_trim`` releases only free chunks inside a heap, and the top of
the main one. By default each thread that allocates gets an arena of its own,
and the free space at the top of a thread's arena goes back only when it
exceeds the trim threshold, which glibc raises to twice the largest block it
ever mapped (a 1080p frame: 12 MiB). With a dozen arenas, each holding the
top of its last frames, the booth's resident size at rest climbed about 20 MiB
a session (639 to 787 MiB from the second session to the ninth) while the
bytes in use stayed flat at 158 MiB (``python -m bench.patient_app`` with
``sessions N DIR --diagnose``; /proc/PID/smaps showed the growth in the
64 MiB-aligned thread heaps). So the booth's processes allocate from a single
arena (:func:`limit_arenas`, first thing in ``main``): every free page is then
in reach of the trim, and the same bench held 419-429 MiB at rest over 20
sessions. The arena's lock is taken per allocation, not while frames are
processed, and large blocks are few (a handful per frame); the bench's calls
did not suffer from it (20 calls at 720p, no reconnection).

Fixing glibc's mmap threshold was tried and left out: frames then came from
``mmap`` one by one, and page faults cost a quarter of a core. So was turning
off NumPy's transparent huge pages for large arrays.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from typing import cast


@functools.cache
def _glibc_function(name: str, argtypes: tuple[type, ...]) -> Callable[..., int] | None:
    """``name`` from the C library, typed; None when it is not glibc (musl has no malloc_trim nor M_ARENA_MAX)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return cast("Callable[..., int]", function)


def return_free_memory() -> bool:
    """Release the allocator's free pages to the kernel; False when the C library cannot."""
    trim = _glibc_function("malloc_trim", (ctypes.c_size_t,))
    if trim is None:
        return False
    trim(0)
    return True


_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def limit_arenas(count: int = 1) -> bool:
    """Make every thread of this process allocate from at most ``count`` glibc arenas.

    Call it before other threads allocate: glibc fixes its arena limit when
    the first extra arena is made. False when the C library cannot.
    """
    if count < 1:
        raise ValueError("at least one arena")
    mallopt = _glibc_function("mallopt", (ctypes.c_int, ctypes.c_int))
    if mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, count))
