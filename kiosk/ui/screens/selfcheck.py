"""Checking the booth with the patient: camera (self view), microphone, speaker, devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.lang import Builder
from kivy.properties import DictProperty

from kiosk.ui.widgets import BoothScreen


class SelfCheckScreen(BoothScreen):
    states = DictProperty({})
    """Check name → ``pending`` / ``ok`` / ``failed``."""

    def refresh(self, controller: Any) -> None:
        self.states = {name: state.value for name, state in controller.view.selfcheck.items()}

    def on_enter(self, *args: Any) -> None:
        self.ids.self_view.start()

    def on_leave(self, *args: Any) -> None:
        self.ids.self_view.stop()


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
