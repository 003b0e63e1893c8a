"""Giving freed memory back to the system between patients.

A consultation allocates and frees hundreds of megabytes of video frames from
several threads (capture, decoding, encoding). glibc's allocator keeps the
freed pages in per-thread arenas for reuse, but the next call's threads do not
always land on the same arenas, so the booth's resident size creeps up session
after session although nothing leaks. ``malloc_trim`` returns the free pages of
every arena to the kernel; the booth calls it at each wipe, when no call runs,
and once more when it has rested after the wipe (the controller's
``_trim_at_rest``: the cameras keep capturing between patients).

Capping glibc's arenas (``M_ARENA_MAX``) or fixing its mmap threshold were
tried in the patient-app bench and left out: the fixed threshold cost a quarter
of a core in page faults, and the runs with either had their 720p calls drop
and reconnect more often (on the 2-core bench machine, where the booth's main
thread is already the bottleneck, so not conclusive); glibc's defaults stay.
So does NumPy's own default of transparent huge pages for arrays of 4 MiB or
more: switching it off was tried too, and every bench run with it stalled in
its first call.
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


def return_free_memory() -> bool:
    """Release the allocator's free pages to the kernel; False when the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
