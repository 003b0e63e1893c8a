"""The welcome screen: pick a language to start."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from kiosk.ui.widgets import BoothScreen


class WelcomeScreen(BoothScreen):
    """Language choice; the hidden staff corner."""


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
