"""Overlays over the current screen: a failure's calm explanation, the idle warning, the quit confirmation.

They are not screens: the step underneath keeps its state and shows again when
the overlay goes (see :mod:`kiosk.ui.flow`). Each blocks touches to what is
under it.
"""

from __future__ import annotations

from kiosk.ui import kivyenv  # noqa: F401  (Kivy's environment and settings, before any kivy import)

# isort: split

from pathlib import Path
from typing import Any

from kivy.clock import Clock
from kivy.lang import Builder
from kivy.properties import NumericProperty, StringProperty
from kivy.uix.floatlayout import FloatLayout

from kiosk.ui import flow as f
from kiosk.ui.widgets import BigButton


class Overlay(FloatLayout):
    """A dimmed full-window layer with a centred panel."""

    name = StringProperty("")

    def on_touch_down(self, touch: Any) -> bool:
        super().on_touch_down(touch)
        return True

    def on_touch_up(self, touch: Any) -> bool:
        super().on_touch_up(touch)
        return True

    def refresh(self, controller: Any) -> None:
        """Update from the controller."""


class FailureOverlay(Overlay):
    """What to do, calmly. Card and device failures can be closed; the network and the doctor come back by
    themselves, or the patient leaves."""

    kind = StringProperty("card_unreadable")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._buttons: tuple[str, ...] = ()

    def refresh(self, controller: Any) -> None:
        failure = controller.flow.failure
        if failure is None:
            return
        self.kind = failure.value
        self.name = f"failure.{failure.value}"
        tr = controller.tr
        buttons: list[tuple[str, str, str, Any]]
        if failure is f.FailureKind.PERIPHERAL_FAILING and controller.flow.step is f.Step.SELFCHECK:
            buttons = [
                ("selfcheck_continue", "common.continue", "secondary", controller.continue_selfcheck),
                ("selfcheck_retry", "failure.retry", "primary", controller.retry_selfcheck),
            ]
        elif failure is f.FailureKind.CARD_UNREADABLE:

            def type_details() -> None:
                controller.dismiss()
                controller.no_card()

            buttons = [
                ("no_card", "identification.no_card", "secondary", type_details),
                ("failure_retry", "failure.retry", "primary", controller.dismiss),
            ]
        elif failure is f.FailureKind.PERIPHERAL_FAILING:
            buttons = [("failure_dismiss", "common.continue", "primary", controller.dismiss)]
        else:
            buttons = [("failure_quit", "common.quit", "quiet", controller.ask_quit)]
        key = (tr.lang, *(wid for wid, *_ in buttons))
        if key == self._buttons:
            return
        self._buttons = key
        row = self.ids.buttons
        row.clear_widgets()
        for wid, msgid, kind, action in buttons:
            button = BigButton(wid=wid, source=tr(msgid), kind=kind)
            button.bind(on_release=lambda _b, act=action: act())
            row.add_widget(button)


class IdleOverlay(Overlay):
    seconds = NumericProperty(0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = "idle"
        self._controller: Any = None
        self._since = 0.0
        self._left = 0.0
        self._tick: Any = None

    def refresh(self, controller: Any) -> None:
        # The flow's clock only moves on events, so the countdown runs from when the warning showed.
        if self._controller is None or self._tick is None:
            self._controller = controller
            self._left = controller.flow.seconds_left() or 0.0
            self._since = controller.clock()
            self._update(0)
            self._tick = Clock.schedule_interval(self._update, 0.25)

    def stop(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def _update(self, _dt: float) -> None:
        left = self._left - (self._controller.clock() - self._since)
        self.seconds = max(0, int(left + 0.999))


class QuitOverlay(Overlay):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = "quit"


Builder.load_file(str(Path(__file__).with_name("overlays.kv")))
