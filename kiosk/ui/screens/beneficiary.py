"""Who consults today, when the card holds several people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.lang import Builder

from kiosk.ui.widgets import BigButton, BoothScreen


class BeneficiaryScreen(BoothScreen):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: tuple[Any, ...] | None = None
        self._lang = ""

    def refresh(self, controller: Any) -> None:
        people = controller.view.beneficiaries
        if people == self._shown and controller.tr.lang == self._lang:
            return
        self._shown, self._lang = people, controller.tr.lang
        box = self.ids.people
        box.clear_widgets()
        for index, person in enumerate(people):
            born = controller.tr("beneficiary.born", date=person.born) if person.born else ""
            button = BigButton(wid=f"beneficiary_{index}", kind="secondary", source=f"{person.name}\n{born}".strip())
            button.bind(on_release=lambda _b, i=index: controller.choose_beneficiary(i))
            box.add_widget(button)


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
