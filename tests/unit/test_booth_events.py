"""``kiosk-booth`` prints session events as JSON lines without patient data (kiosk/session/booth.py)."""

from __future__ import annotations

import json

import pytest

from kiosk.session.booth import describe
from kiosk.session.consultation import LinkEvent, MeasurementEvent, SessionEvent, WaitingEvent


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (WaitingEvent(2, 7), {"event": "waiting", "position": 2, "minutes": 7}),
        (WaitingEvent(1, None), {"event": "waiting", "position": 1, "minutes": None}),
        (LinkEvent(False), {"event": "link", "connected": False}),
        (MeasurementEvent("oximeter", {"spo2": 97, "pulse": 72}), {"event": "measurement", "name": "oximeter"}),
        (
            MeasurementEvent("blood_pressure", {"systolic": 121, "diastolic": 79, "pulse": 64}),
            {"event": "measurement", "name": "blood_pressure"},
        ),
    ],
)
def test_events_are_printed_without_readings(
    event: SessionEvent, line: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    describe(event)
    printed = capsys.readouterr().out
    assert json.loads(printed) == line
    if isinstance(event, MeasurementEvent):
        assert not any(str(value) in printed for value in event.values.values())
