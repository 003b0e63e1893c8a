"""Consent, in plain words."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from kiosk.ui.widgets import BoothScreen


class ConsentScreen(BoothScreen):
    """What is recorded, who sees it, where it is kept; explicit accept or decline."""


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
