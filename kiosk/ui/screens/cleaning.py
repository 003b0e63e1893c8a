"""Cleaning between patients."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from kiosk.ui.widgets import BoothScreen


class CleaningScreen(BoothScreen):
    """The booth waits for staff to confirm cleaning; the hidden staff corner."""


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
