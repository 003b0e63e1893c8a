"""Staff mode: device health, self-test, cleaning confirmation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kivy.lang import Builder
from kivy.properties import BooleanProperty, StringProperty

from kiosk.ui.widgets import BoothScreen


class StaffScreen(BoothScreen):
    health = StringProperty("")
    cleaning_pending = BooleanProperty(False)

    def refresh(self, controller: Any) -> None:
        results = controller.health.results
        lines = [
            f"{'✓' if r.ok else '✗'}  {name}{'  (' + r.detail + ')' if r.detail else ''}" for name, r in results.items()
        ]
        if controller.health.checked_at is not None:
            ago = max(0, int(time.time() - controller.health.checked_at))
            lines.append(f"{ago} s")
        self.health = "\n".join(lines) or "—"
        self.cleaning_pending = controller.flow.cleaning_pending


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
