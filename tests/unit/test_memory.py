"""The wipe's heap trim gives freed pages back to the kernel."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest

from kiosk.memory import return_free_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")


def _resident_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def test_trim_returns_pages_freed_below_a_live_allocation() -> None:
    # 1500 blocks of 96 KiB stay under glibc's mmap threshold, so they come from the heap; the block
    # allocated last pins the top of the heap, so free() alone cannot shrink it.
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 96 * 1024
    blocks = [libc.malloc(size) for _ in range(1500)]
    for block in blocks:
        ctypes.memset(block, 1, size)  # touch every page: resident now
    pin = libc.malloc(size)
    for block in blocks:
        libc.free(block)
    before = _resident_mib()
    assert return_free_memory()
    after = _resident_mib()
    libc.free(pin)
    freed = 1500 * size / 2**20
    assert before - after > 0.5 * freed, (before, after, freed)
