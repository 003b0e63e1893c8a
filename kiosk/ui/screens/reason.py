"""Why the patient came: a few big choices."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from kiosk.ui.widgets import BoothScreen


class ReasonScreen(BoothScreen):
    """One big button per :class:`~kiosk.ui.flow.VisitReason` (ids ``reason_<value>``)."""


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
