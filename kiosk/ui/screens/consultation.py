"""The consultation: the doctor large, the patient small, the security code, chat, measurements, STOP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.lang import Builder
from kivy.properties import BooleanProperty, StringProperty

from kiosk.ui import flow as f
from kiosk.ui.widgets import BoothScreen

CHAT_LINES_SHOWN = 8


class ConsultationScreen(BoothScreen):
    connecting = BooleanProperty(False)
    doctor_name = StringProperty("")
    sas_digits = StringProperty("")
    sas_words = StringProperty("")
    measurement = StringProperty("")
    """The measurement the doctor asked for (a :class:`~kiosk.ui.flow.Measurement` value), or ""."""
    running = BooleanProperty(False)
    stopped = BooleanProperty(False)
    live = StringProperty("")
    chat = StringProperty("")
    typing = BooleanProperty(False)
    """The chat field has the focus (and the on-screen keyboard is up)."""

    def refresh(self, controller: Any) -> None:
        view, flow, tr = controller.view, controller.flow, controller.tr
        self.connecting = view.connecting or not view.sas_digits
        self.doctor_name = view.doctor_name
        self.sas_digits = view.sas_digits
        self.sas_words = " · ".join(view.sas_words)
        self.measurement = "" if flow.measurement is None else flow.measurement.value
        self.running = flow.measurement_running
        self.stopped = view.stopped and flow.measurement is None
        parts = [f"{key}: {value:g}" for key, value in sorted(view.live.items())] if self.running else []
        if self.running and view.cuff_pressure is not None and flow.measurement is f.Measurement.BLOOD_PRESSURE:
            parts.append(tr("measure.cuff", pressure=f"{view.cuff_pressure:.0f}"))
        self.live = "\n".join(parts)
        lines = view.chat[-CHAT_LINES_SHOWN:]
        self.chat = "\n".join(tr("chat.doctor" if line.from_doctor else "chat.me", text=line.text) for line in lines)

    def send_chat(self) -> None:
        field = self.ids.chat_input
        App.get_running_app().controller.send_chat(field.text)
        field.text = ""

    def on_enter(self, *args: Any) -> None:
        self.ids.doctor_view.start()
        self.ids.self_view.start()

    def on_leave(self, *args: Any) -> None:
        self.ids.doctor_view.stop()
        self.ids.self_view.stop()
        self.ids.chat_input.text = ""


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
