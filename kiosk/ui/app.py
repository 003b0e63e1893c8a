"""The booth's touchscreen app: Kivy inside asyncio, one screen per flow step, overlays for the rest.

:class:`BoothApp` shows what :class:`~kiosk.ui.controller.Controller` says: the
screen named after ``controller.flow.step``, with the failure, quit and idle
overlays on top. Screens only call the controller. :func:`run_app` runs the
app and the controller's clock on one asyncio loop and stops both together.

Tests, the demo and the benches use :meth:`BoothApp.tap` (a real touch, down
then up, at a widget's centre), :meth:`BoothApp.find`,
:meth:`BoothApp.screenshot` and :meth:`BoothApp.wait_screen`.
"""

from __future__ import annotations

from kiosk.ui import kivyenv  # noqa: F401  (Kivy's environment and settings, before any kivy import)

# isort: split
import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.base import EventLoop
from kivy.clock import Clock
from kivy.graphics import Color, Rectangle
from kivy.input.motionevent import MotionEvent
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager
from kivy.uix.widget import Widget

from kiosk.ui import flow as f
from kiosk.ui.controller import Controller
from kiosk.ui.i18n import LANGUAGES, is_rtl
from kiosk.ui.overlays import FailureOverlay, IdleOverlay, Overlay, QuitOverlay
from kiosk.ui.screens import SCREENS

logger = logging.getLogger(__name__)

LARGE_TEXT_SCALE = 1.3
BACKGROUND = (0.04, 0.12, 0.2, 1)


class _Tap(MotionEvent):
    """One finger on the glass (the shape of kivy.tests.common.UnitTestTouch)."""

    def __init__(self, x: float, y: float) -> None:
        window = EventLoop.window
        super().__init__(
            "booth-tap",
            id(self),
            {"x": x / (window.width - 1.0), "y": y / (window.height - 1.0)},
            is_touch=True,
            type_id="touch",
        )
        self.profile = ["pos"]

    def depack(self, args: dict[str, float]) -> None:
        self.sx = args["x"]
        self.sy = args["y"]
        super().depack(args)


class _Root(FloatLayout):
    """Every touch, anywhere, tells the flow the patient is still there."""

    def on_touch_down(self, touch: Any) -> bool:
        app = App.get_running_app()
        if app is not None:
            app.controller.touch()
        return bool(super().on_touch_down(touch))


class BoothApp(App):
    """The patient app, drawn from ``controller`` (see the module docstring)."""

    lang = StringProperty("fr")
    rtl = BooleanProperty(False)
    font_scale = NumericProperty(1.0)
    voice = BooleanProperty(False)
    next_lang = StringProperty("en")
    current = StringProperty("")
    """What is showing: the flow's screen name (``failure.<kind>`` while a failure shows)."""

    def __init__(self, controller: Controller, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.controller = controller
        self.title = "Teleconsultation"
        self.sm: ScreenManager | None = None
        self._layer: FloatLayout | None = None
        self._overlays: dict[str, Overlay] = {}
        self._refresh_trigger = Clock.create_trigger(self._refresh, -1)
        self.refreshes = 0

    # -- text ---------------------------------------------------------------------------------
    def t(self, msgid: str, _lang: str | None = None, /, **values: object) -> str:
        """A catalog message in the current language (``_lang`` only makes kv rules rebind on a change)."""
        return self.controller.tr(msgid, **values)

    # -- build & refresh ----------------------------------------------------------------------
    def build(self) -> Widget:
        from kivy.core.window import Window

        # The docked keyboard covers the bottom of the window; screens keep text fields above it
        # (Kivy's panning modes misplace fields inside scroll views).
        Window.softinput_mode = ""
        root = _Root()
        with root.canvas.before:
            Color(*BACKGROUND)
            rect = Rectangle(pos=root.pos, size=root.size)
        root.bind(size=lambda w, v: setattr(rect, "size", v), pos=lambda w, v: setattr(rect, "pos", v))
        self._sync_settings()
        self.sm = ScreenManager(transition=NoTransition())
        for step in f.Step:
            self.sm.add_widget(SCREENS[step.value](name=step.value))
        self._layer = FloatLayout()
        self._overlays = {"failure": FailureOverlay(), "quit": QuitOverlay(), "idle": IdleOverlay()}
        root.add_widget(self.sm)
        root.add_widget(self._layer)
        self.controller.bind(self._refresh_trigger)
        self._refresh()
        return root

    def _sync_settings(self) -> None:
        c = self.controller
        if c.tr.lang != c.flow.language:
            c.tr.set_language(c.flow.language)
        lang = c.tr.lang
        self.rtl = is_rtl(lang)
        self.next_lang = LANGUAGES[(LANGUAGES.index(lang) + 1) % len(LANGUAGES)]
        self.font_scale = LARGE_TEXT_SCALE if c.settings.large_text else 1.0
        self.voice = c.settings.voice
        self.lang = lang

    def _refresh(self, *_: object) -> None:
        assert self.sm is not None and self._layer is not None
        c = self.controller
        self._sync_settings()
        step = c.flow.step.value
        if self.sm.current != step:
            self.sm.current = step
        screen = self.sm.get_screen(step)
        screen.refresh(c)
        wanted = []
        if c.flow.failure is not None:
            wanted.append("failure")
        if c.view.quit_asked:
            wanted.append("quit")
        if c.flow.warning:
            wanted.append("idle")
        for name, overlay in self._overlays.items():
            if name in wanted:
                overlay.refresh(c)
                if overlay.parent is None:
                    self._layer.add_widget(overlay)
            elif overlay.parent is not None:
                self._layer.remove_widget(overlay)
                if isinstance(overlay, IdleOverlay):
                    overlay.stop()
        self.current = c.flow.screen
        self.refreshes += 1

    # -- for tests, the demo and benches --------------------------------------------------------
    def showing(self) -> list[str]:
        """Names of what is visible, top first: overlays (``idle``, ``quit``, ``failure.<kind>``) then the screen."""
        names = [overlay.name for overlay in reversed(self._layer.children)] if self._layer else []
        return [*reversed(names), self.sm.current] if self.sm else names

    def _containers(self) -> Iterator[Widget]:
        if self._layer is not None:
            yield from self._layer.children  # topmost first
        if self.sm is not None:
            yield self.sm.current_screen

    def find(self, widget_id: str) -> Widget:
        """The visible widget with this id on the topmost overlay or the current screen (LookupError if none)."""
        for container in self._containers():
            for widget in container.walk(restrict=True):
                ids = getattr(widget, "ids", {}) or {}
                candidates = [ids[widget_id]] if widget_id in ids else []
                if getattr(widget, "wid", "") == widget_id:
                    candidates.append(widget)
                for candidate in candidates:
                    if _visible(candidate):
                        return candidate
            if isinstance(container, Overlay):
                break  # an overlay hides what is under it
        raise LookupError(f"no visible widget {widget_id!r} on {self.showing()}")

    def tap(self, widget_id: str) -> None:
        """Touch the widget's centre: a real touch down then up, dispatched through Kivy's event loop."""
        widget = self.find(widget_id)
        if widget.disabled:
            raise LookupError(f"widget {widget_id!r} is disabled")
        x, y = widget.to_window(*widget.center)
        touch = _Tap(x, y)
        EventLoop.post_dispatch_input("begin", touch)
        EventLoop.post_dispatch_input("end", touch)

    async def press(self, widget_id: str, seconds: float) -> None:
        """Touch and hold the widget for ``seconds`` (the hidden staff gesture)."""
        widget = self.find(widget_id)
        x, y = widget.to_window(*widget.center)
        touch = _Tap(x, y)
        EventLoop.post_dispatch_input("begin", touch)
        try:
            await asyncio.sleep(seconds)
        finally:
            EventLoop.post_dispatch_input("end", touch)

    async def settle(self, frames: int = 3) -> None:
        """Wait until pending refreshes ran and ``frames`` frames were drawn."""
        start = Clock.frames_displayed
        while Clock.frames_displayed < start + frames or self._refresh_trigger.is_triggered:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def drawing_state(self) -> str:
        """What is shown and drawn, for a log line when a screen is late (names and counts only)."""
        return (
            f"showing {self.showing()}, frames drawn {Clock.frames_displayed}, "
            f"refresh pending {self._refresh_trigger.is_triggered}, refreshes {self.refreshes}"
        )

    async def wait_screen(self, name: str, timeout: float = 5.0) -> None:
        """Wait until ``name`` (a screen, ``failure.<kind>``, ``idle`` or ``quit``) shows, then until it is drawn."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while name not in self.showing() or self._refresh_trigger.is_triggered:
            if loop.time() > deadline:
                raise TimeoutError(f"{name!r} not shown within {timeout} s (showing {self.showing()})")
            await asyncio.sleep(0.01)
        await self.settle()

    def screenshot(self, path: str | os.PathLike[str]) -> Path:
        """Save the whole window as a PNG at ``path``."""
        from kivy.core.window import Window

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            written = Window.screenshot(name=os.path.join(tmp, "shot.png"))
            os.replace(written, target)
        return target


def _visible(widget: Widget) -> bool:
    node: Any = widget
    if widget.width <= 0 or widget.height <= 0:
        return False
    while node is not None and node is not node.parent:
        if getattr(node, "opacity", 1) <= 0:
            return False
        node = node.parent
    return True


async def run_app(
    controller: Controller,
    *,
    fullscreen: bool = False,
    size: tuple[int, int] = (1280, 800),
    app: BoothApp | None = None,
) -> None:
    """Run the app and ``controller.run()`` on the running loop until the app stops; then stop the controller.

    Pass ``app`` to keep a handle on it (tests and the demo drive it while it runs).
    """
    from kivy.core.window import Window

    app = app or BoothApp(controller)
    Window.size = size
    if fullscreen:
        Window.fullscreen = "auto"
        Window.show_cursor = False
    clock = asyncio.create_task(controller.run())

    def _controller_died(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("controller stopped: %r; stopping the app", task.exception())
            app.stop()

    clock.add_done_callback(_controller_died)
    try:
        await app.async_run(async_lib="asyncio")
    finally:
        clock.remove_done_callback(_controller_died)
        clock.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await clock
