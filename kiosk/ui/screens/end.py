"""The end: summary of the readings, prescription notice, follow-up advice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.lang import Builder
from kivy.properties import BooleanProperty, StringProperty

from kiosk.ui.widgets import BoothScreen


def _number(value: float) -> str:
    return f"{value:.1f}" if value != int(value) else str(int(value))


class EndScreen(BoothScreen):
    readings_text = StringProperty("")
    prescription = BooleanProperty(False)
    prescription_text = StringProperty("")
    """The fetch code of a verified prescription, or why there is no printed prescription."""

    def refresh(self, controller: Any) -> None:
        readings = controller.view.readings
        lines: list[tuple[str, dict[str, str]]] = []
        if "spo2" in readings:
            lines.append(("reading.spo2", {"value": _number(readings["spo2"])}))
        if "pulse" in readings:
            lines.append(("reading.pulse", {"value": _number(readings["pulse"])}))
        if "systolic" in readings and "diastolic" in readings:
            values = {"systolic": _number(readings["systolic"]), "diastolic": _number(readings["diastolic"])}
            lines.append(("reading.blood_pressure", values))
        if "celsius" in readings:
            lines.append(("reading.temperature", {"value": _number(readings["celsius"])}))
        self.readings_text = "\n".join(controller.tr(msgid, **values) for msgid, values in lines)
        self.prescription = controller.view.prescription
        view = controller.view
        if view.fetch_code:
            self.prescription_text = controller.tr("end.fetch_code", code=view.fetch_code)
        elif view.prescription_refused:
            self.prescription_text = controller.tr("end.prescription_refused")
        else:
            self.prescription_text = ""


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
