"""Giving freed memory back to the system between patients.

A consultation allocates and frees hundreds of megabytes of video frames from
several threads (capture, decoding, encoding). glibc's allocator keeps the
freed pages in per-thread arenas for reuse, but the next call's threads do not
always land on the same arenas, so the booth's resident size creeps up session
after session although nothing leaks. ``malloc_trim`` returns the free pages of
every arena to the kernel; the booth calls it at each wipe, when no call runs,
and once more when it has rested after the wipe (the controller's
``_trim_at_rest``: the cameras keep capturing between patients).

NumPy asks the kernel for transparent huge pages (``MADV_HUGEPAGE``) on every
array of 4 MiB or more: stills, and frames at full resolution. The flag stays on
that part of the heap after the array is freed, and the kernel's khugepaged
then turns any 2 MiB of it holding a single live page back into a whole
resident huge page, which no trim can give back. :func:`no_huge_pages_for_arrays`
turns NumPy's request off; the entry points call it first thing.

Capping glibc's arenas (``M_ARENA_MAX``) or fixing its mmap threshold were
tried in the patient-app bench and left out: the fixed threshold cost a quarter
of a core in page faults, and the runs with either had their 720p calls drop
and reconnect more often (on the 2-core bench machine, where the booth's main
thread is already the bottleneck, so not conclusive); glibc's defaults stay.
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


def no_huge_pages_for_arrays() -> bool:
    """Stop NumPy from asking for transparent huge pages (see the module docstring); False if it cannot.

    NumPy reads ``NUMPY_MADVISE_HUGEPAGE`` only when it is first imported, which a booth process has
    usually done before its entry point runs; this is the same switch, at run time.
    """
    import numpy as np

    core = getattr(np, "_core", None) or getattr(np, "core", None)
    switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if switch is None:
        return False
    switch(False)
    return True
