"""The wipe's heap trim gives freed pages back to the kernel."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.memory import limit_arenas, return_free_memory

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


# A worker thread allocates 20 blocks of 500 KB and frees them, after the process freed a 6 MB block: as
# after a 1080p frame, glibc's thresholds are up, so the blocks come from the heap, not from mmap.
_THREAD_WORK = """
import ctypes, sys, threading
from pathlib import Path
from kiosk.memory import limit_arenas, return_free_memory

if sys.argv[1] == "one-arena":
    assert limit_arenas()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
large = libc.malloc(6_000_000)
ctypes.memset(large, 1, 6_000_000)
libc.free(large)

def work():
    blocks = [libc.malloc(500_000) for _ in range(20)]
    for block in blocks:
        ctypes.memset(block, 1, 500_000)
    for block in reversed(blocks):
        libc.free(block)

thread = threading.Thread(target=work)
thread.start()
thread.join()
resident = lambda: int(Path("/proc/self/statm").read_text().split()[1]) * 4096
before = resident()
return_free_memory()
print(before - resident())
"""


def _released_by_trim(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _THREAD_WORK, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],  # the project's root: kiosk importable
    )
    return int(result.stdout.strip())


def test_one_arena_lets_the_trim_reach_what_threads_freed() -> None:
    freed = 20 * 500_000
    # glibc's default: the worker got an arena of its own, and the free space at its top stays resident
    # (malloc_trim only trims the main heap's top), which is what made the booth grow session after session.
    assert _released_by_trim("default") < 0.2 * freed
    assert _released_by_trim("one-arena") > 0.8 * freed


def test_at_least_one_arena() -> None:
    with pytest.raises(ValueError, match="arena"):
        limit_arenas(0)
