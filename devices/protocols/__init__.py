"""Sans-IO wire protocols of the booth's serial peripherals.

Every module here follows h11's shape: :meth:`receive_data` only buffers,
:meth:`next_event` parses one frame and returns an event or :data:`NEED_DATA`,
commands are built as bytes for the caller to write. No module reads the clock
or touches a port: time is passed in as ``now``.
"""

from __future__ import annotations

import enum
from typing import Final


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = _Sentinel.NEED_DATA
"""Returned by ``next_event`` when the buffer holds no complete frame."""

NeedData = _Sentinel
