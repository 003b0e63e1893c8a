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


# An 8 MiB array in a fresh interpreter; prints whether the kernel was asked for huge pages on the mapping
# that holds it ("hg" in its VmFlags, /proc/self/smaps).
_ARRAY = """
import sys
import numpy as np
from kiosk.memory import no_huge_pages_for_arrays
if sys.argv[1] == "off":
    assert no_huge_pages_for_arrays()
array = np.ones(8 * 2**20, dtype=np.uint8)
address = array.ctypes.data + 4 * 2**20  # madvise covers the 2 MiB-aligned middle (its own mapping)
inside = False
for line in open("/proc/self/smaps"):
    head = line.split()[0]
    if "-" in head and ":" not in head:
        start, end = (int(part, 16) for part in head.split("-"))
        inside = start <= address < end
    elif inside and line.startswith("VmFlags:"):
        print("hg" in line.split())
        break
"""


def _huge_page_advice(mode: str) -> bool:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _ARRAY, mode], capture_output=True, text=True, check=True, cwd=root, timeout=60
    )
    return done.stdout.strip() == "True"


def test_arrays_ask_for_no_huge_pages_once_switched_off() -> None:
    assert _huge_page_advice("default")  # NumPy's own default on Linux: the test sees the flag it removes
    assert not _huge_page_advice("off")
