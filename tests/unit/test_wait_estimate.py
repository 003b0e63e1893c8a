"""The waiting-time estimate (hub/wait_estimate.py): honest or absent, never negative, never shorter further back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.wait_estimate import MAX_ESTIMATE_SECONDS, wait_estimate, wait_estimates

durations = st.lists(st.floats(min_value=0, max_value=4 * 3600, allow_nan=False), max_size=60)
elapsed = st.lists(st.floats(min_value=-5, max_value=6 * 3600, allow_nan=False), max_size=8)


def test_no_estimate_without_a_doctor_or_without_history() -> None:
    assert wait_estimates(3, doctors=0, running=[], history=[600.0]) == [None, None, None]
    assert wait_estimates(3, doctors=2, running=[120.0], history=[]) == [None, None, None]
    assert wait_estimates(0, doctors=2, running=[], history=[600.0]) == []


def test_a_free_doctor_takes_the_first_patient_now_then_one_median_each() -> None:
    history = [300.0, 600.0, 900.0]  # median 600
    assert wait_estimates(3, doctors=1, running=[], history=history) == [0, 600, 1200]
    assert wait_estimates(4, doctors=2, running=[], history=history) == [0, 0, 600, 600]


def test_a_busy_doctor_frees_up_after_what_similar_consultations_still_lasted() -> None:
    history = [300.0, 600.0, 900.0]
    # 200 s in: the ones longer than that lasted 100, 400 or 700 s more.
    assert wait_estimates(2, doctors=1, running=[200.0], history=history) == [400, 1000]
    # 700 s in: only the 900 s one lasted that long, 200 s more.
    assert wait_estimate(1, doctors=1, running=[700.0], history=history) == 200
    # Longer than any on record: it may end any moment.
    assert wait_estimate(1, doctors=1, running=[1000.0], history=history) == 0
    # first free + (position - 1) * median / doctors, once the queue is long.
    assert wait_estimate(5, doctors=2, running=[200.0, 200.0], history=history) == 400 + 2 * 600


def test_estimates_are_capped_and_positions_start_at_one() -> None:
    assert wait_estimate(100, doctors=1, running=[], history=[4 * 3600.0]) == MAX_ESTIMATE_SECONDS
    with pytest.raises(ValueError, match="positions start at 1"):
        wait_estimate(0, doctors=1, running=[], history=[60.0])


@given(st.integers(0, 120), st.integers(0, 6), elapsed, durations)
def test_never_negative_and_non_decreasing_along_the_queue(
    count: int, doctors: int, running: list[float], history: list[float]
) -> None:
    waits = wait_estimates(count, doctors=doctors, running=running, history=history)
    assert len(waits) == count
    if doctors == 0 or not history:
        assert waits == [None] * count
        return
    numbers = [w for w in waits if w is not None]
    assert len(numbers) == count
    assert all(0 <= w <= MAX_ESTIMATE_SECONDS for w in numbers)
    assert numbers == sorted(numbers)
    for position in (1, count):
        if count:
            assert wait_estimate(position, doctors=doctors, running=running, history=history) == waits[position - 1]


@given(st.integers(1, 60), elapsed, durations)
def test_null_without_doctors(position: int, running: list[float], history: list[float]) -> None:
    assert wait_estimate(position, doctors=0, running=running, history=history) is None


@given(st.integers(1, 60), st.integers(1, 5), elapsed, durations.filter(bool))
def test_one_more_doctor_never_makes_the_wait_longer(
    position: int, doctors: int, running: list[float], history: list[float]
) -> None:
    fewer = wait_estimate(position, doctors=doctors, running=running, history=history)
    more = wait_estimate(position, doctors=doctors + 1, running=running, history=history)
    assert fewer is not None and more is not None and more <= fewer
