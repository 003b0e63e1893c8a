"""Erasing the session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.lang import Builder

from kiosk.ui.widgets import BoothScreen


class WipeScreen(BoothScreen):
    """Shown while everything about the patient is erased."""

    def on_enter(self, *args: Any) -> None:
        self.ids.spinner.animate(True)

    def on_leave(self, *args: Any) -> None:
        self.ids.spinner.animate(False)


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
