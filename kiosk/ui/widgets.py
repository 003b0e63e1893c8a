"""Widgets every screen uses: shaped labels, big buttons, the header, STOP, video, illustrations.

Sizes come from :mod:`kivy.metrics`: a touch target is at least 15 mm both ways
(:data:`MIN_TOUCH_MM`), text sizes are in ``sp`` times the app's font scale (the
large-text option).
"""

from __future__ import annotations

from kiosk.ui import kivyenv  # noqa: F401  (Kivy's environment and settings, before any kivy import)

# isort: split

import math
from pathlib import Path
from typing import Any, ClassVar

from kivy.animation import Animation
from kivy.app import App
from kivy.clock import Clock
from kivy.core.text import Label as CoreLabel
from kivy.core.text import LabelBase
from kivy.graphics import Color, Ellipse, Line, Rectangle, RoundedRectangle
from kivy.graphics.texture import Texture
from kivy.lang import Builder
from kivy.metrics import dp
from kivy.properties import BooleanProperty, NumericProperty, OptionProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget

from kiosk.ui import text as t
from kiosk.ui.services import NoVideo, VideoFeeds

MIN_TOUCH_MM = 15.0

LabelBase.register(t.FONT_NAME, fn_regular=t.FONT, fn_bold=t.FONT_BOLD)


class ShapedText:
    """Mixin for Label subclasses: ``source`` is the logical text; ``text`` is what Kivy draws."""

    source = StringProperty("")
    rtl = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reshape_trigger = Clock.create_trigger(self._reshape, -1)
        for name in ("source", "rtl", "width", "font_size", "font_name", "bold", "text_size"):
            self.fbind(name, self._reshape_now)  # type: ignore[attr-defined]
        self._reshape()

    def _reshape_now(self, *_: object) -> None:
        self._reshape()

    def _reshape(self, *_: object) -> None:
        label: Any = self
        source = label.source
        if not t.has_rtl_script(source):
            label.text = source
            return
        width = label.text_size[0]
        if width:
            width -= label.padding[0] + label.padding[2]  # Kivy wraps within text_size minus the padding
        if not width or width <= 0:
            label.text = t.shape(source, True)
            return
        core = CoreLabel(font_name=label.font_name, font_size=label.font_size, bold=label.bold)
        label.text = t.wrap_rtl(source, width, lambda s: core.get_extents(s)[0])


class BLabel(ShapedText, Label):
    """A wrapping label that grows to its text's height."""

    scale = NumericProperty(1.0)
    align = OptionProperty("start", options=["start", "center", "end"])


class BigButton(ShapedText, Button):
    """A button at least 15 mm both ways, its text wrapped inside it."""

    wid = StringProperty("")
    """Stable id for :meth:`BoothApp.find` when the button is made in Python."""
    kind = OptionProperty("primary", options=["primary", "secondary", "danger", "toggle_on", "quiet"])
    scale = NumericProperty(1.0)


class StopButton(BigButton):
    """The large STOP: stops any measurement at once (wired by the screen to ``controller.stop``)."""


class Row(BoxLayout):
    """A horizontal row, mirrored in right-to-left languages: the first child goes on the right."""

    mirrored = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fbind("mirrored", self._trigger_layout)

    def do_layout(self, *args: Any) -> None:
        super().do_layout(*args)
        if self.mirrored:
            for child in self.children:
                child.x = self.x + (self.right - child.right)


class Column(BoxLayout):
    """A vertical stack as tall as its children."""


class Header(Row):
    """Back, leave, language and accessibility toggles, on top of patient screens."""

    show_back = BooleanProperty(False)
    show_quit = BooleanProperty(True)
    show_language = BooleanProperty(True)


class BoothScreen(Screen):
    """A screen of the booth; :meth:`refresh` redraws it from ``app.controller``."""

    def refresh(self, controller: Any) -> None:
        """Update what the kv rules cannot bind to (the controller is not a Kivy object)."""


class StaffCorner(Widget):
    """An invisible corner: a press held for :attr:`hold` seconds asks for staff mode."""

    hold = NumericProperty(3.0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._event: Any = None

    def on_touch_down(self, touch: Any) -> bool:
        if not self.collide_point(*touch.pos):
            return False
        touch.grab(self)
        self._event = Clock.schedule_once(self._fire, self.hold)
        return True

    def on_touch_up(self, touch: Any) -> bool:
        if touch.grab_current is not self:
            return False
        touch.ungrab(self)
        if self._event is not None:
            self._event.cancel()
            self._event = None
        return True

    def _fire(self, _dt: float) -> None:
        self._event = None
        App.get_running_app().controller.staff_gesture()


class VideoView(Widget):
    """A video feed polled :attr:`FPS` times a second into a texture: ``feed`` is ``doctor`` or ``self``.

    Every shown view is polled by one shared clock event, so the doctor's
    picture and the self view change in the same frame: one redraw of the
    window per tick rather than one per view. On a booth drawing in software
    each redraw holds the event loop that also reads the call's packets.
    """

    FPS = 15.0

    feed = OptionProperty("doctor", options=["doctor", "self"])
    has_picture = BooleanProperty(False)

    _shown: ClassVar[list[VideoView]] = []
    _ticker: ClassVar[Any] = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._texture: Texture | None = None
        self._drawn: Any = None  # the feed's array now in the texture
        self.bind(pos=self._draw, size=self._draw)

    @property
    def polling(self) -> bool:
        """Between :meth:`start` and :meth:`stop`."""
        return self in VideoView._shown

    def start(self) -> None:
        if self.polling:
            return
        VideoView._shown.append(self)
        if VideoView._ticker is None:
            VideoView._ticker = Clock.schedule_interval(VideoView._tick, 1.0 / self.FPS)
        if self.feed == "self":
            self._feeds().watch_self(True)

    def stop(self) -> None:
        if self.polling:
            VideoView._shown.remove(self)
            if not VideoView._shown and VideoView._ticker is not None:
                VideoView._ticker.cancel()
                VideoView._ticker = None
            if self.feed == "self":
                self._feeds().watch_self(False)
        self._texture = None
        self._drawn = None
        self.has_picture = False
        self._draw()

    @staticmethod
    def _feeds() -> VideoFeeds:
        app = App.get_running_app()
        return NoVideo() if app is None else app.controller.services.video

    @staticmethod
    def _tick(_dt: float) -> None:
        for view in list(VideoView._shown):
            view._update()

    def _update(self) -> None:
        video = self._feeds()
        frame = video.doctor() if self.feed == "doctor" else video.self_view()
        if frame is None:
            self._drawn = None
            if self.has_picture:
                self._texture = None
                self.has_picture = False
                self._draw()
            return
        if frame is self._drawn:
            return  # the feed has no newer frame: nothing to redraw
        self._drawn = frame
        height, width = frame.shape[:2]
        resized = self._texture is None or self._texture.size != (width, height)
        if resized:
            self._texture = Texture.create(size=(width, height), colorfmt="rgb")
            self._texture.flip_vertical()
        assert self._texture is not None
        self._texture.blit_buffer(frame.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
        if resized:
            self.has_picture = True
            self._draw()
        else:
            self.canvas.ask_update()  # same texture, new pixels: the drawn rectangle stays

    def _draw(self, *_: object) -> None:
        self.canvas.clear()
        with self.canvas:
            Color(0.05, 0.05, 0.08, 1)
            Rectangle(pos=self.pos, size=self.size)
            if self._texture is None:
                # A person's outline: the picture is coming.
                Color(0.35, 0.4, 0.5, 1)
                cx, cy = self.center
                r = min(self.width, self.height) * 0.12
                Ellipse(pos=(cx - r, cy), size=(2 * r, 2 * r))
                Ellipse(pos=(cx - 2 * r, cy - 2.2 * r), size=(4 * r, 2.6 * r), angle_start=-90, angle_end=90)
                return
            tw, th = self._texture.size
            scale = min(self.width / tw, self.height / th)
            w, h = tw * scale, th * scale
            Color(1, 1, 1, 1)
            Rectangle(texture=self._texture, pos=(self.center_x - w / 2, self.center_y - h / 2), size=(w, h))


class Illustration(Widget):
    """How to place a device, drawn with canvas instructions: ``card``, ``oximeter``, ``blood_pressure``,
    ``thermometer``. The card one is animated (the card slides into the reader)."""

    kind = OptionProperty("card", options=["card", "oximeter", "blood_pressure", "thermometer", "wipe"])
    phase = NumericProperty(0.0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._anim: Animation | None = None
        self.bind(pos=self._draw, size=self._draw, kind=self._draw, phase=self._draw)

    def animate(self, on: bool) -> None:
        if on and self._anim is None:
            self._anim = Animation(phase=1.0, duration=1.6, t="in_out_quad") + Animation(phase=0.0, duration=0.6)
            self._anim.repeat = True
            self._anim.start(self)
        elif not on and self._anim is not None:
            self._anim.cancel(self)
            self._anim = None
            self.phase = 0.0

    def _draw(self, *_: object) -> None:
        self.canvas.clear()
        u = min(self.width, self.height) / 10.0
        cx, cy = self.center
        with self.canvas:
            Color(0.12, 0.2, 0.3, 1)
            RoundedRectangle(pos=self.pos, size=self.size, radius=[dp(12)])
            if self.kind == "card":
                self._card(cx, cy, u)
            elif self.kind == "oximeter":
                self._oximeter(cx, cy, u)
            elif self.kind == "blood_pressure":
                self._cuff(cx, cy, u)
            elif self.kind == "thermometer":
                self._thermometer(cx, cy, u)
            else:
                Color(1, 0.84, 0, 1)
                Line(circle=(cx, cy, 3 * u, 0, 360 * max(0.05, self.phase)), width=dp(4))

    def _card(self, cx: float, cy: float, u: float) -> None:
        # The reader: a slot at the bottom; the card (chip first) slides down into it.
        Color(0.75, 0.78, 0.82, 1)
        RoundedRectangle(pos=(cx - 3.5 * u, cy - 4.2 * u), size=(7 * u, 2.2 * u), radius=[u * 0.3])
        Color(0.1, 0.1, 0.1, 1)
        Rectangle(pos=(cx - 2.8 * u, cy - 2.2 * u), size=(5.6 * u, 0.3 * u))
        drop = self.phase * 2.6 * u
        Color(0.25, 0.65, 0.35, 1)
        RoundedRectangle(pos=(cx - 2.5 * u, cy - 1.0 * u - drop), size=(5 * u, 5 * u), radius=[u * 0.4])
        Color(0.95, 0.8, 0.3, 1)
        RoundedRectangle(pos=(cx - 0.7 * u, cy - 0.5 * u - drop), size=(1.4 * u, 1.1 * u), radius=[u * 0.15])
        Color(1, 1, 1, 1)
        Line(points=[cx, cy + 4.6 * u, cx, cy + 3.6 * u], width=dp(3))
        Line(points=[cx - 0.5 * u, cy + 4.1 * u, cx, cy + 3.6 * u, cx + 0.5 * u, cy + 4.1 * u], width=dp(3))

    def _oximeter(self, cx: float, cy: float, u: float) -> None:
        # A finger (index, nail up) slid fully into a clip.
        Color(0.93, 0.75, 0.6, 1)
        RoundedRectangle(pos=(cx - 4.5 * u, cy - 0.6 * u), size=(7.5 * u, 1.6 * u), radius=[u * 0.8])
        Color(0.98, 0.9, 0.85, 1)
        RoundedRectangle(pos=(cx + 1.4 * u, cy + 0.55 * u), size=(1.3 * u, 0.4 * u), radius=[u * 0.2])
        Color(0.2, 0.45, 0.85, 1)
        RoundedRectangle(pos=(cx - 0.2 * u, cy + 0.9 * u), size=(3.6 * u, 1.4 * u), radius=[u * 0.3])
        RoundedRectangle(pos=(cx - 0.2 * u, cy - 2.0 * u), size=(3.6 * u, 1.4 * u), radius=[u * 0.3])
        Color(0.1, 0.1, 0.1, 1)
        Rectangle(pos=(cx + 0.5 * u, cy + 1.3 * u), size=(1.8 * u, 0.6 * u))
        Color(0.3, 1, 0.5, 1)
        Line(
            points=[
                cx + 0.6 * u,
                cy + 1.6 * u,
                cx + 1.1 * u,
                cy + 1.6 * u,
                cx + 1.3 * u,
                cy + 1.85 * u,
                cx + 1.5 * u,
                cy + 1.35 * u,
                cx + 1.7 * u,
                cy + 1.6 * u,
                cx + 2.2 * u,
                cy + 1.6 * u,
            ],
            width=1.5,
        )

    def _cuff(self, cx: float, cy: float, u: float) -> None:
        # A bare upper arm with the cuff 2 cm above the elbow, the tube towards the hand.
        Color(0.93, 0.75, 0.6, 1)
        RoundedRectangle(pos=(cx - 1 * u, cy - 1 * u), size=(2 * u, 5.2 * u), radius=[u])
        RoundedRectangle(pos=(cx - 1 * u, cy - 1.6 * u), size=(5 * u, 1.8 * u), radius=[u * 0.9])
        Color(0.2, 0.45, 0.85, 1)
        RoundedRectangle(pos=(cx - 1.3 * u, cy + 0.8 * u), size=(2.6 * u, 2.2 * u), radius=[u * 0.3])
        Color(0.1, 0.1, 0.1, 1)
        Line(
            bezier=[cx, cy + 0.8 * u, cx + 0.5 * u, cy - 0.5 * u, cx + 3.5 * u, cy - 0.5 * u, cx + 4.2 * u, cy - 3 * u],
            width=dp(2.5),
        )
        Color(1, 0.84, 0, 1)
        Line(points=[cx - 2.0 * u, cy + 0.9 * u, cx - 2.0 * u, cy + 0.1 * u], width=dp(2))
        Line(points=[cx - 2.3 * u, cy + 0.9 * u, cx - 1.7 * u, cy + 0.9 * u], width=dp(2))
        Line(points=[cx - 2.3 * u, cy + 0.1 * u, cx - 1.7 * u, cy + 0.1 * u], width=dp(2))

    def _thermometer(self, cx: float, cy: float, u: float) -> None:
        # A head in profile, the thermometer facing the forehead at a small distance.
        Color(0.93, 0.75, 0.6, 1)
        Ellipse(pos=(cx - 4.2 * u, cy - 2.5 * u), size=(4.5 * u, 5.5 * u))
        Color(0.85, 0.85, 0.9, 1)
        RoundedRectangle(pos=(cx + 1.4 * u, cy + 0.8 * u), size=(2.6 * u, 1.0 * u), radius=[u * 0.3])
        RoundedRectangle(pos=(cx + 3.0 * u, cy - 2.0 * u), size=(1.0 * u, 3.0 * u), radius=[u * 0.3])
        Color(1, 0.84, 0, 1)
        for i in range(3):
            a = math.radians(160 + i * 20)
            Line(
                points=[
                    cx + 1.2 * u,
                    cy + 1.3 * u,
                    cx + 1.2 * u + math.cos(a) * 0.8 * u,
                    cy + 1.3 * u + math.sin(a) * 0.8 * u,
                ],
                width=dp(1.5),
            )


Builder.load_file(str(Path(__file__).with_name("widgets.kv")))
