"""Identification: insert the Carte Vitale (animated), or go on without a card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.lang import Builder
from kivy.properties import BooleanProperty

from kiosk.ui.controller import CardStatus
from kiosk.ui.widgets import BoothScreen


class IdentificationScreen(BoothScreen):
    reading = BooleanProperty(False)

    def refresh(self, controller: Any) -> None:
        self.reading = controller.view.card is CardStatus.READING

    def on_enter(self, *args: Any) -> None:
        self.ids.card.animate(True)

    def on_leave(self, *args: Any) -> None:
        self.ids.card.animate(False)


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
