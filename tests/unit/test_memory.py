"""The wipe's heap trim gives freed pages back to the kernel."""

from __future__ import annotations

import ctypes
import subprocess
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


# A frame-sized workload in a fresh interpreter (mallopt settings are for the whole process): one
# large block freed first, as a finished call frees its last frame, then 60 frames of 1.5 MB
# allocated and written, a small block allocated after them, and the frames freed. Prints the
# resident MiB the frees gave back, without any trim.
_FRAMES = """
import ctypes, sys
from pathlib import Path
from kiosk.memory import bound_allocator
if sys.argv[1] == "bound":
    assert bound_allocator()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def resident():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20
libc.free(libc.malloc(4 * 2**20))
size = 1_500_000
frames = [libc.malloc(size) for _ in range(60)]
for frame in frames:
    ctypes.memset(frame, 1, size)
pin = libc.malloc(64)
before = resident()
for frame in frames:
    libc.free(frame)
print(before - resident())
"""


def _given_back_mib(mode: str) -> float:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _FRAMES, mode], capture_output=True, text=True, check=True, cwd=root, timeout=60
    )
    return float(done.stdout.strip())


def test_fixed_mmap_threshold_gives_frames_back_as_they_are_freed() -> None:
    frames_mib = 60 * 1_500_000 / 2**20
    # glibc's default: the freed 4 MiB block raised the threshold, the frames came from the heap,
    # and the small block above them keeps their pages resident.
    assert _given_back_mib("default") < 0.2 * frames_mib
    assert _given_back_mib("bound") > 0.9 * frames_mib
