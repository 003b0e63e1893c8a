"""The staff PIN keypad (the PIN is never shown, only one dot per digit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.lang import Builder
from kivy.properties import NumericProperty, StringProperty

from kiosk.ui.widgets import BigButton, BoothScreen

PIN_MAX = 12


class StaffPinScreen(BoothScreen):
    dots = NumericProperty(0)
    error = StringProperty("")
    """``wrong``, ``locked`` or ""."""
    locked_for = NumericProperty(0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pin = ""

    def on_kv_post(self, base_widget: Any) -> None:
        pad = self.ids.keypad
        for key in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "ok"]:
            label = {"clear": "⌫", "ok": "OK"}.get(key, key)
            button = BigButton(wid=f"pin_{key}", source=label, kind="primary" if key == "ok" else "secondary")
            button.size_hint_y = 1
            button.bind(on_release=lambda _b, k=key: self.press(k))
            pad.add_widget(button)

    def press(self, key: str) -> None:
        controller = App.get_running_app().controller
        if key == "clear":
            self._pin = ""
        elif key == "ok":
            pin, self._pin = self._pin, ""
            controller.enter_pin(pin)
        elif len(self._pin) < PIN_MAX:
            self._pin += key
        self.dots = len(self._pin)
        controller.touch()

    def refresh(self, controller: Any) -> None:
        error = controller.flow.pin_error
        self.error = "" if error is None else error.value
        self.locked_for = int(controller.flow.pin_locked_for() + 0.999)

    def on_leave(self, *args: Any) -> None:
        self._pin = ""
        self.dots = 0


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
