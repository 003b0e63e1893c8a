"""Printing through CUPS: the booth hands a verified document to ``lp`` for a configured queue.

``lp`` is CUPS's own client: it speaks IPP to the scheduler named by
``server`` (``host:port``, or a socket path; the system default otherwise),
so the booth needs no IPP code of its own. The document goes on standard
input, never through a temporary file: nothing of the patient stays on disk
once the scheduler has spooled it (CUPS removes the job's file after printing
with its default ``PreserveJobFiles No``).
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Final

from kiosk.documents.errors import PrintError

REQUEST_ID: Final = re.compile(r"request id is (?P<job>\S+-[0-9]+)")
LP_TIMEOUT: Final = 30.0


@dataclass(frozen=True)
class PrinterConfig:
    """Where the booth prints."""

    queue: str
    """The CUPS destination (``lpstat -p`` names)."""
    server: str | None = None
    """``host:port`` of the CUPS scheduler; None for the system's default."""
    copies: int = 1


async def print_pdf(pdf: bytes, config: PrinterConfig, *, title: str = "document") -> str:
    """Queue ``pdf`` on ``config.queue``; returns the CUPS job id (``queue-17``) or raises :class:`PrintError`.

    ``title`` becomes the job name on the printer's status page: give an opaque one (a number), never a name.
    """
    command = ["lp", "-d", config.queue, "-n", str(config.copies), "-t", title, "-o", "document-format=application/pdf"]
    if config.server:
        command[1:1] = ["-h", config.server]
    environment = {**os.environ, "LC_ALL": "C"}  # lp's messages in English, for REQUEST_ID
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
    except OSError as exc:
        raise PrintError(f"cannot run lp: {exc.strerror}", queue=config.queue) from None
    try:
        out, err = await asyncio.wait_for(process.communicate(pdf), LP_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise PrintError("the print server did not answer in time", queue=config.queue) from None
    match = REQUEST_ID.search(out.decode(errors="replace"))
    if process.returncode != 0 or match is None:
        reason = err.decode(errors="replace").strip().splitlines()
        raise PrintError(f"the print queue refused the job: {reason[-1][:200] if reason else 'no reason'}",
                         queue=config.queue)  # fmt: skip
    return match["job"]
