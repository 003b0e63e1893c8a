"""A virtual X display (Xvfb) for the booth's screen when the machine has none."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


class DisplayError(Exception):
    """Xvfb is missing or did not start."""


def _free_display() -> int:
    for number in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise DisplayError("no free X display number between :90 and :199")


@contextlib.contextmanager
def virtual_display(size: tuple[int, int] = (1280, 800), *, timeout: float = 10.0) -> Iterator[str]:
    """Start Xvfb on a free display, set ``DISPLAY`` for this process, yield it; stop Xvfb on exit."""
    binary = shutil.which("Xvfb")
    if binary is None:
        raise DisplayError("Xvfb is not installed (Debian package xvfb; `make demo` installs it)")
    number = _free_display()
    display = f":{number}"
    process = subprocess.Popen(
        [binary, display, "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + timeout
    while not socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise DisplayError(f"Xvfb did not start on {display}")
        time.sleep(0.05)
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    try:
        yield display
    finally:
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
