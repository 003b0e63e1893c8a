"""The wipe's heap trim gives freed pages back to the kernel; the arena cap holds across threads."""

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


# Eight threads allocating at once, in a fresh interpreter (the cap is for the whole process and only
# counts before a second thread allocates); prints the number of heaps glibc's malloc_info reports.
_THREADS = """
import ctypes, re, sys, tempfile, threading
from kiosk.memory import limit_arenas
if sys.argv[1] == "capped":
    assert limit_arenas(2)
barrier = threading.Barrier(8)
kept = []
def work():
    barrier.wait()
    for _ in range(200):
        kept.append(bytearray(200_000))
        kept.pop(0) if len(kept) > 50 else None
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    stream = libc.fopen(report.name.encode(), b"w")
    assert libc.malloc_info(0, stream) == 0
    libc.fclose(stream)
    print(len(re.findall(r"<heap nr=", open(report.name).read())))
"""


def _heaps(mode: str) -> int:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _THREADS, mode], capture_output=True, text=True, check=True, cwd=root, timeout=60
    )
    return int(done.stdout.strip())


def test_arena_cap_holds_with_eight_busy_threads() -> None:
    assert _heaps("capped") <= 2
    assert _heaps("default") > 2  # without the cap the same threads spread over more arenas
