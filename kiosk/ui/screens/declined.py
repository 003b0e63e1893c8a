"""Consent declined."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from kiosk.ui.widgets import BoothScreen


class DeclinedScreen(BoothScreen):
    """A polite goodbye after a declined consent."""


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
