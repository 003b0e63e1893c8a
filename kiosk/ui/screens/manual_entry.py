"""Details typed by hand, for a patient without a card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.lang import Builder
from kivy.properties import BooleanProperty

from kiosk.ui.widgets import BoothScreen


class ManualEntryScreen(BoothScreen):
    missing = BooleanProperty(False)

    def submit(self) -> None:
        ids = self.ids
        controller = App.get_running_app().controller
        fields = (ids.manual_surname.text, ids.manual_first_name.text, ids.manual_birth_date.text)
        self.missing = not all(field.strip() for field in fields) or not controller.submit_manual(*fields)

    def on_leave(self, *args: Any) -> None:
        # Nothing typed stays in a widget once the patient has moved on.
        for name in ("manual_surname", "manual_first_name", "manual_birth_date"):
            self.ids[name].text = ""
        self.missing = False


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
