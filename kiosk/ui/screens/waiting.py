"""The waiting room: position, an honest estimate that updates, what to do meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.lang import Builder
from kivy.properties import NumericProperty

from kiosk.ui.widgets import BoothScreen


class WaitingScreen(BoothScreen):
    position = NumericProperty(0)
    """0 while unknown."""
    minutes = NumericProperty(-1)
    """-1 while unknown."""

    def refresh(self, controller: Any) -> None:
        flow = controller.flow
        self.position = flow.waiting_position or 0
        self.minutes = -1 if flow.waiting_minutes is None else flow.waiting_minutes


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
