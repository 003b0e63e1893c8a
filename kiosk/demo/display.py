"""A virtual X display (Xvfb) for the booth's screen when the machine has none."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator


class DisplayError(Exception):
    """Xvfb is missing or did not start."""


@contextlib.contextmanager
def xvfb(size: tuple[int, int] = (1280, 800)) -> Iterator[str]:
    """Run Xvfb on a display it picks itself (``-displayfd``: no race for a free number); yield ``":N"``."""
    binary = shutil.which("Xvfb")
    if binary is None:
        raise DisplayError("Xvfb is not installed (Debian package xvfb; `make demo` and `make test` install it)")
    read, write = os.pipe()
    process = subprocess.Popen(
        [binary, "-displayfd", str(write), "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise DisplayError(f"Xvfb did not start (exit code {process.poll()})")
        yield f":{number}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def virtual_display(size: tuple[int, int] = (1280, 800)) -> Iterator[str]:
    """:func:`xvfb`, with ``DISPLAY`` set for this process (and its children) while it runs."""
    with xvfb(size) as display:
        previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display
        try:
            yield display
        finally:
            if previous is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = previous
