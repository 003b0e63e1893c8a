"""How long a waiting patient will likely wait: pure arithmetic over what the waiting room knows.

The estimate is honest or absent. It is None when no doctor is connected
(nobody will take the patient, however long they wait) and when no
consultation has finished since the hub started (there is nothing to base a
duration on). Otherwise the connected doctors are played forward, taking the
waiting patients in queue order:

* a free doctor is free now;
* a busy doctor is expected free after the median of what past consultations
  still lasted once they had run as long as this one has (a consultation
  already longer than most is not "about to end" just because it passed the
  median); when it has outlasted every recorded one, we have no better guess
  than "any moment now";
* each patient takes the doctor who frees up first and keeps them for the
  median consultation.

So position ``p`` waits about ``first free + (p - 1) * median / doctors`` once
the queue is long, and the estimate never decreases along the queue (each
patient starts no earlier than the one before).
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Sequence
from typing import Final

from hub.messages import MAX_WAIT_SECONDS

MAX_ESTIMATE_SECONDS: Final = MAX_WAIT_SECONDS
"""Longer estimates are sent as this (the ``position`` message's bound)."""


def wait_estimates(count: int, *, doctors: int, running: Sequence[float], history: Sequence[float]) -> list[int | None]:
    """Estimated waits in whole seconds for queue positions 1..``count``.

    ``doctors`` is how many doctors are connected, ``running`` how long (s)
    each current consultation has run, ``history`` the durations (s) of
    recently finished consultations. When there are more consultations than
    doctors, the ones expected to end first are counted.
    """
    if count <= 0:
        return []
    if doctors <= 0 or not history:
        return [None] * count
    typical = statistics.median(history)
    busy = sorted(_remaining(elapsed, history) for elapsed in running)[:doctors]
    free_at = busy + [0.0] * (doctors - len(busy))
    heapq.heapify(free_at)
    waits: list[int | None] = []
    for _ in range(count):
        start = heapq.heappop(free_at)
        waits.append(math.ceil(min(start, MAX_ESTIMATE_SECONDS)))
        heapq.heappush(free_at, start + typical)
    return waits


def wait_estimate(position: int, *, doctors: int, running: Sequence[float], history: Sequence[float]) -> int | None:
    """The estimated wait (whole seconds) at ``position`` (1 = next); see :func:`wait_estimates`."""
    if position < 1:
        raise ValueError("positions start at 1")
    return wait_estimates(position, doctors=doctors, running=running, history=history)[-1]


def _remaining(elapsed: float, history: Sequence[float]) -> float:
    elapsed = max(0.0, elapsed)
    longer = [duration - elapsed for duration in history if duration > elapsed]
    return statistics.median(longer) if longer else 0.0
