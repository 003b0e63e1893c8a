"""Drives the booth app under a display, for tests/ui: every screen in every language, a whole flow by touch,
the idle timeout. Writes screenshots and a JSON report the pytest side checks.

Run by ``test_screens.py`` in one subprocess (Kivy makes one window per process)::

    python -m tests.ui.driver --out test-artifacts/screens --report report.json

Kivy is imported only inside :func:`main`, so the test module can import the scenario lists.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

LANGS = ("fr", "en", "es", "pt", "ar")
VARIANTS = (*LANGS, "fr-large", "ar-large")
SHOTS = (
    "welcome",
    "consent",
    "declined",
    "identification",
    "identification_reading",
    "failure.card_unreadable",
    "manual_entry",
    "beneficiary",
    "reason",
    "idle",
    "selfcheck",
    "failure.peripheral_failing",
    "waiting",
    "quit",
    "failure.network_lost",
    "consultation",
    "measure_oximeter",
    "measure_thermometer",
    "measure_blood_pressure",
    "measure_running",
    "measure_stopped",
    "failure.doctor_gone",
    "end",
    "cleaning",
    "staff_pin",
    "staff",
)
"""Screenshots taken in every variant (``wipe`` is taken once, in the flow test)."""
PIN = "2468"
SAS_WORDS = ("abricot", "baleine", "citron", "dauphin")


class Problems(Exception):
    pass


def check_layout(app: Any) -> list[str]:
    """Clipped or overflowing text, small touch targets, wrong alignment or unshaped text in RTL."""
    from kivy.core.window import Window
    from kivy.metrics import mm
    from kivy.uix.behaviors import ButtonBehavior
    from kivy.uix.label import Label
    from kivy.uix.scrollview import ScrollView

    from kiosk.ui import text as t
    from kiosk.ui.app import _visible
    from kiosk.ui.widgets import BLabel

    problems: list[str] = []
    tol = 2.0
    min_touch = mm(15) - 0.5
    containers = list(app._containers())
    for container in containers:
        for widget in container.walk(restrict=True):
            if not _visible(widget):
                continue
            name = getattr(widget, "wid", "") or next(
                (
                    key
                    for node in _ancestors(widget)
                    for key, value in getattr(node, "ids", {}).items()
                    if value is widget
                ),
                type(widget).__name__,
            )
            in_scroll = any(isinstance(node, ScrollView) for node in _ancestors(widget)[1:])
            x0, y0 = widget.to_window(widget.x, widget.y)
            x1, y1 = widget.to_window(widget.right, widget.top)
            if isinstance(widget, Label) and widget.text:
                tw, th = widget.texture_size
                if tw > widget.width + tol or th > widget.height + tol:
                    problems.append(f"{name}: text {tw:.0f}x{th:.0f} overflows {widget.width:.0f}x{widget.height:.0f}")
                if widget.text_size[0] is None:
                    problems.append(f"{name}: no text_size (text does not wrap)")
                else:
                    problems += _broken_words(widget, name)
                if not in_scroll and (x0 < -tol or y0 < -tol or x1 > Window.width + tol or y1 > Window.height + tol):
                    problems.append(f"{name}: outside the window ({x0:.0f},{y0:.0f})-({x1:.0f},{y1:.0f})")
                if in_scroll:
                    scroll = next(n for n in _ancestors(widget)[1:] if isinstance(n, ScrollView))
                    sx0, _ = scroll.to_window(scroll.x, scroll.y)
                    sx1, _ = scroll.to_window(scroll.right, scroll.y)
                    if x0 < sx0 - 0.5 or x1 > sx1 + 0.5:
                        problems.append(f"{name}: wider than its scroll view")
                if t.has_rtl_script(widget.text) and any("\u0621" <= c <= "\u064a" for c in widget.text):
                    problems.append(f"{name}: Arabic text not shaped")
                if isinstance(widget, BLabel) and widget.align == "start":
                    expected = "right" if app.rtl else "left"
                    if widget.halign != expected:
                        problems.append(f"{name}: halign {widget.halign}, expected {expected}")
            if isinstance(widget, ButtonBehavior) and not widget.disabled:
                if widget.width < min_touch or widget.height < min_touch:
                    problems.append(f"{name}: touch target {widget.width:.0f}x{widget.height:.0f} < 15 mm")
                if not in_scroll and (x0 < -tol or y0 < -tol or x1 > Window.width + tol or y1 > Window.height + tol):
                    problems.append(f"{name}: button outside the window")
    return problems


def _broken_words(label: Any, name: str) -> list[str]:
    """Words wider than the room the label gives them: Kivy would cut them in two."""
    from kivy.core.text import Label as CoreLabel

    pad = label.padding[0] + label.padding[2]
    room = label.text_size[0] - pad
    core = CoreLabel(font_name=label.font_name, font_size=label.font_size, bold=label.bold)
    return [
        f"{name}: word {word!r} ({core.get_extents(word)[0]:.0f} px) wider than its box ({room:.0f} px)"
        for word in set(label.text.split())
        if core.get_extents(word)[0] > room + 1
    ]


def _id_of(widget: Any) -> str:
    for node in _ancestors(widget):
        for key, value in getattr(node, "ids", {}).items():
            if value is widget:
                return str(key)
    return type(widget).__name__


def _ancestors(widget: Any) -> list[Any]:
    nodes = []
    node = widget
    while node is not None and node not in nodes:
        nodes.append(node)
        node = node.parent
    return nodes


class Driver:
    def __init__(self, out: Path) -> None:
        from kiosk.ui import flow as f
        from kiosk.ui.app import BoothApp
        from kiosk.ui.controller import Controller
        from tests.ui import fakes

        self.f = f
        self.out = out
        self.timeouts = dict(f.DEFAULT_TIMEOUTS)
        config = f.FlowConfig(
            staff_pin_hash=f.hash_pin(PIN, iterations=1000), cleaning_required=True, timeouts=self.timeouts
        )
        self.services, self.card, self.session, self.selfcheck, self.frames = fakes.services()
        self.fakes = fakes
        self.controller = Controller(self.services, config)
        self.app = BoothApp(self.controller)
        self.report: dict[str, Any] = {"shots": {}, "mirror": {}, "flow": {}, "idle": {}, "errors": []}
        self.variant = ""

    # -- helpers
    async def top(self, name: str, timeout: float = 5.0) -> None:
        """Wait until ``name`` is the topmost thing showing, drawn."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.app.showing() or self.app.showing()[0] != name or self.app._refresh_trigger.is_triggered:
            if loop.time() > deadline:
                raise TimeoutError(f"{name!r} not on top within {timeout} s (showing {self.app.showing()})")
            await asyncio.sleep(0.01)
        await self.app.settle()

    async def shot(self, name: str) -> None:
        await self.app.settle()
        path = self.out / self.variant / f"{name}.png"
        self.app.screenshot(path)
        self.report["shots"].setdefault(self.variant, {})[name] = {
            "path": str(path),
            "problems": check_layout(self.app),
            "showing": self.app.showing(),
        }

    def emit(self, event: Any) -> None:
        self.session.emit(event)

    # -- every screen in one language
    async def variant_run(self, variant: str) -> None:
        from kiosk.documents import PRESCRIPTION_MIME
        from kiosk.session.binding import Sas
        from kiosk.session.consultation import (
            ChatEvent,
            CommandEvent,
            FileEvent,
            LinkEvent,
            MeasurementEvent,
            SessionState,
            StateEvent,
            VerifiedEvent,
            WaitingEvent,
        )
        from kiosk.ui.services import CardFailed, CardIdentityRead, CardPresented

        f, c, app = self.f, self.controller, self.app
        self.variant = variant
        lang, large = variant.split("-")[0], variant.endswith("-large")

        def start(accept: bool) -> None:
            c.choose_language(lang)
            c.set_large_text(large)
            if accept:
                c.accept_consent()

        await self.top("welcome")
        await self.shot("welcome")
        start(False)
        await self.top("consent")
        await self.shot("consent")
        mirror = {}
        for wid in ("back", "consent_accept", "consent_decline", "large_text"):
            w = app.find(wid)
            mirror[wid] = w.to_window(*w.center)[0]
        mirror["window"] = app.root.width
        self.report["mirror"][variant] = mirror
        c.decline_consent()
        await self.top("declined")
        await self.shot("declined")
        c.finish()
        await self.top("welcome")

        start(True)
        await self.top("identification")
        await self.shot("identification")
        self.card.push(CardPresented())
        while c.view.card.value != "reading":
            await asyncio.sleep(0.01)
        await self.top("identification")
        await self.shot("identification_reading")
        self.card.push(CardFailed("unreadable"))
        await self.top("failure.card_unreadable")
        await self.shot("failure.card_unreadable")
        c.dismiss()
        await self.top("identification")
        c.no_card()
        await self.top("manual_entry")
        await self.shot("manual_entry")
        c.back()
        await self.top("identification")
        self.card.push(CardIdentityRead(self.fakes.identity(3)))
        await self.top("beneficiary")
        await self.shot("beneficiary")
        c.choose_beneficiary(1)
        await self.top("reason")
        await self.shot("reason")
        # The idle warning, shown at once and kept: a warning phase almost as long as the timeout.
        self.timeouts[f.Step.REASON] = f.Timeout(600, warn=599.8)
        c.touch()
        await self.top("idle")
        await self.shot("idle")
        self.timeouts[f.Step.REASON] = f.DEFAULT_TIMEOUTS[f.Step.REASON]
        c.keep_going()
        await self.top("reason")

        self.selfcheck.gate.clear()
        c.choose_reason(f.VisitReason.PAIN)
        await self.top("selfcheck")
        while c.view.selfcheck["camera"].value == "pending":
            await asyncio.sleep(0.01)
        await self.top("selfcheck")
        await self.shot("selfcheck")
        self.selfcheck.failing = {"devices"}
        self.selfcheck.gate.set()
        await self.top("failure.peripheral_failing")
        await self.shot("failure.peripheral_failing")
        self.selfcheck.failing = set()
        c.retry_selfcheck()
        await self.top("waiting")
        self.emit(WaitingEvent(3, 12))
        await self.app.settle()
        await self.shot("waiting")
        c.ask_quit()
        await self.top("quit")
        await self.shot("quit")
        c.cancel_quit()
        self.emit(LinkEvent(False))
        await self.top("failure.network_lost")
        await self.shot("failure.network_lost")
        self.emit(LinkEvent(True))
        await self.top("waiting")

        self.emit(StateEvent(SessionState.CONNECTING))
        await self.top("consultation")
        self.emit(VerifiedEvent(Sas("042 917", SAS_WORDS), "Dr Durand", "durand"))
        self.emit(StateEvent(SessionState.IN_CALL))
        self.emit(ChatEvent("Bonjour, je vous entends bien.", from_doctor=True))
        c.send_chat("Bonjour docteur")
        await self.app.settle()
        await self.shot("consultation")
        self.emit(CommandEvent("oximeter.start", "started"))
        await self.app.settle()
        await self.shot("measure_oximeter")
        self.emit(MeasurementEvent("oximeter", {"spo2": 97, "pulse": 72}))
        self.emit(CommandEvent("oximeter.stop", "started"))
        self.emit(CommandEvent("thermometer.read", "started"))
        await self.app.settle()
        await self.shot("measure_thermometer")
        self.emit(MeasurementEvent("thermometer", {"celsius": 37.2}))
        self.emit(CommandEvent("thermometer.read", "done"))
        confirm = asyncio.ensure_future(self.session.confirm("bp.start"))
        while c.flow.measurement is not f.Measurement.BLOOD_PRESSURE:
            await asyncio.sleep(0.01)
        await self.app.settle()
        await self.shot("measure_blood_pressure")
        c.confirm_measurement()
        assert await confirm is True
        self.emit(MeasurementEvent("cuff", {"pressure": 142}))
        await self.app.settle()
        await self.shot("measure_running")
        c.stop()
        await self.app.settle()
        await self.shot("measure_stopped")
        self.emit(StateEvent(SessionState.ENDED, "doctor-left"))
        await self.top("failure.doctor_gone")
        await self.shot("failure.doctor_gone")
        self.emit(StateEvent(SessionState.CONNECTING))
        await self.top("consultation")
        self.emit(VerifiedEvent(Sas("042 917", SAS_WORDS), "Dr Durand", "durand"))
        self.emit(MeasurementEvent("blood_pressure", {"systolic": 128, "diastolic": 82, "pulse": 70}))
        self.emit(FileEvent("RX.pdf", PRESCRIPTION_MIME, b"%PDF-1.4"))
        self.emit(StateEvent(SessionState.ENDED, "doctor-ended"))
        await self.top("end")
        await self.shot("end")
        c.finish()
        await self.top("cleaning")
        await self.shot("cleaning")
        c.staff_gesture()
        await self.top("staff_pin")
        c.enter_pin("0000")
        await self.app.settle()
        await self.shot("staff_pin")
        c.staff_selftest()  # ignored on the keypad; the staff screen does it below
        c.enter_pin(PIN)
        await self.top("staff")
        c.staff_selftest()
        while self.selfcheck.runs < 3:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await self.shot("staff")
        c.staff_cleaning_done()
        c.staff_exit()
        await self.top("welcome")

    # -- a whole patient flow by touch
    async def touch_flow(self) -> None:
        from kiosk.session.binding import Sas
        from kiosk.session.consultation import (
            CommandEvent,
            MeasurementEvent,
            SessionState,
            StateEvent,
            VerifiedEvent,
            WaitingEvent,
        )
        from kiosk.ui.services import CardIdentityRead, CardPresented

        f, c, app = self.f, self.controller, self.app
        self.variant = "flow"
        steps: list[str] = []
        result = self.report["flow"]
        result["steps"] = steps

        async def at(name: str) -> None:
            await self.top(name)
            steps.append(name)

        await at("welcome")
        app.tap("lang_fr")
        await at("consent")
        app.tap("consent_accept")
        await at("identification")
        self.card.push(CardPresented())
        self.card.push(CardIdentityRead(self.fakes.identity(2)))
        await at("beneficiary")
        app.tap("beneficiary_1")
        await at("reason")
        result["chosen_beneficiary"] = c.flow.beneficiary
        app.tap("reason_infection")
        await at("waiting")  # the self-check passes by itself with the fakes
        result["announced"] = "announce" in self.session.calls
        self.emit(WaitingEvent(2, 5))
        await app.settle()
        result["waiting_text"] = app.find("position").source + " | " + app.find("estimate").source
        self.emit(WaitingEvent(1, 2))
        await app.settle()
        result["waiting_text_updated"] = app.find("position").source + " | " + app.find("estimate").source
        self.emit(StateEvent(SessionState.CONNECTING))
        await at("consultation")
        self.emit(VerifiedEvent(Sas("042 917", SAS_WORDS), "Dr Durand", "durand"))
        self.emit(StateEvent(SessionState.IN_CALL))
        await app.settle()
        result["sas_digits"] = app.find("sas_digits").text
        result["sas_words"] = app.find("sas_words").text
        await asyncio.sleep(0.2)  # a few video polls
        result["doctor_picture"] = bool(app.find("doctor_view").has_picture)
        result["self_picture"] = bool(app.find("self_view").has_picture)
        result["doctor_view_size"] = list(app.find("doctor_view").size)
        result["self_view_size"] = list(app.find("self_view").size)
        result["self_view_watchers_in_call"] = self.frames.self_watchers
        from kivy.core.window import Window
        from kivy.uix.vkeyboard import VKeyboard

        app.tap("chat_input")  # the on-screen keyboard comes up; STOP must stay in sight above it
        await app.settle(5)
        keyboards = [w for w in Window.children if isinstance(w, VKeyboard)]
        stop = app.find("stop")
        field = app.find("chat_input")
        keyboard_top = keyboards[0].y + keyboards[0].height * keyboards[0].scale if keyboards else 0
        result["chat_keyboard_shown"] = bool(keyboards)
        result["stop_above_keyboard"] = stop.to_window(stop.x, stop.y)[1] >= keyboard_top
        result["chat_field_above_keyboard"] = field.to_window(field.x, field.y)[1] >= keyboard_top
        self.variant = "fr"
        await self.shot("consultation_keyboard")
        self.variant = "flow"
        field.focus = False
        await app.settle(5)
        app.find("chat_input").text = "J'ai mal à la gorge"
        app.tap("chat_send")
        await app.settle()
        result["chat_sent"] = list(self.session.chat_sent)
        self.emit(CommandEvent("oximeter.start", "started"))
        await app.settle()
        app.tap("measure_confirm")
        self.emit(MeasurementEvent("oximeter", {"spo2": 98, "pulse": 66}))
        self.emit(CommandEvent("oximeter.stop", "started"))
        confirm = asyncio.ensure_future(self.session.confirm("bp.start"))
        while c.flow.measurement is not f.Measurement.BLOOD_PRESSURE:
            await asyncio.sleep(0.01)
        await app.settle()
        await asyncio.sleep(0.1)
        result["cuff_waits_for_patient"] = not confirm.done()
        await self.shot("measure_blood_pressure")
        app.tap("measure_confirm")
        result["cuff_allowed_after_confirm"] = await confirm
        self.emit(MeasurementEvent("cuff", {"pressure": 120}))
        await app.settle()
        calls_before = self.session.calls.count("stop")
        app.tap("stop")
        await app.settle()
        await asyncio.sleep(0.05)
        result["stop_sent"] = self.session.calls.count("stop") > calls_before
        result["measurement_after_stop"] = None if c.flow.measurement is None else c.flow.measurement.value
        self.emit(StateEvent(SessionState.ENDED, "doctor-ended"))
        await at("end")
        result["readings"] = app.find("readings").source
        await self.shot("end")
        app.tap("end_finish")
        # The wipe waits for nothing here; the cleaning gate shows next.
        await at("cleaning")
        result["patient_data_after_wipe"] = c.flow.patient_data_present()
        result["self_view_watchers_after_wipe"] = self.frames.self_watchers
        result["view_after_wipe"] = repr(c.view)
        await app.press("staff_corner", 3.3)
        await at("staff_pin")
        for key in PIN:
            app.tap(f"pin_{key}")
        app.tap("pin_ok")
        await at("staff")
        app.tap("staff_cleaning")
        app.tap("staff_exit")
        await at("welcome")
        # The wipe screen: a consultation left from the waiting room, with the session slow to answer.
        app.tap("lang_fr")
        await at("consent")
        app.tap("consent_accept")
        await at("identification")
        app.tap("no_card")
        await at("manual_entry")
        from kivy.core.window import Window
        from kivy.uix.vkeyboard import VKeyboard

        app.tap("manual_birth_date")  # a real touch focuses the field: the on-screen keyboard comes up
        await app.settle(5)
        keyboards = [w for w in Window.children if isinstance(w, VKeyboard)]
        result["keyboard_shown"] = bool(keyboards)
        field = app.find("manual_birth_date")
        keyboard_top = keyboards[0].y + keyboards[0].height * keyboards[0].scale if keyboards else 0
        result["manual_field_above_keyboard"] = field.to_window(field.x, field.y)[1] >= keyboard_top
        self.variant = "fr"
        await self.shot("manual_entry_keyboard")
        self.variant = "flow"
        field.focus = False
        await app.settle(5)
        app.find("manual_surname").text = "Durand"
        app.find("manual_first_name").text = "Alix"
        app.find("manual_birth_date").text = "31/02/1990"
        app.tap("manual_confirm")
        await app.settle()
        result["bad_date_refused"] = c.flow.step.value == "manual_entry"
        app.find("manual_birth_date").text = "28/02/1990"
        app.tap("manual_confirm")
        await at("reason")
        app.tap("back")
        await at("identification")
        app.tap("no_card")
        await at("manual_entry")
        result["manual_fields_cleared"] = app.find("manual_surname").text == ""
        app.find("manual_surname").text = "Durand"
        app.find("manual_first_name").text = "Alix"
        app.find("manual_birth_date").text = "28/02/1990"
        app.tap("manual_confirm")
        await at("reason")
        app.tap("reason_other")
        await at("waiting")
        self.emit(StateEvent(SessionState.CONNECTING))
        await at("consultation")
        self.session.hold.clear()  # hanging up and withdrawing now take a while
        app.tap("hang_up")
        await at("quit")
        app.tap("quit_yes")
        await at("wipe")
        self.variant = "fr"
        await self.shot("wipe")
        self.variant = "flow"
        self.session.hold.set()
        await at("cleaning")
        await app.press("staff_corner", 3.3)
        await at("staff_pin")
        for key in PIN:
            app.tap(f"pin_{key}")
        app.tap("pin_ok")
        await at("staff")
        app.tap("staff_cleaning")
        app.tap("staff_exit")
        await at("welcome")
        result["ok"] = True

    # -- the idle timeout, on the real clock
    async def idle_timeout(self) -> None:
        f, c, app = self.f, self.controller, self.app
        result = self.report["idle"]
        self.variant = "idle"
        await self.top("welcome")
        app.tap("lang_en")
        await self.top("consent")
        wipes = c.wipes
        self.timeouts[f.Step.CONSENT] = f.Timeout(2.0, warn=1.2)
        app.tap("consent_accept")  # to identification, with its default timeout
        await self.top("identification")
        app.tap("back")  # back on consent: the short timeout runs from this touch
        await self.top("consent")
        started = time.monotonic()
        await self.top("idle", timeout=10)
        result["warning_after"] = time.monotonic() - started
        result["countdown"] = app.find("idle_continue") is not None and app._overlays["idle"].seconds
        await self.shot("idle_en")
        app.tap("idle_continue")
        await self.top("consent")
        result["still_consent_after_continue"] = c.flow.step.value == "consent"
        await self.top("idle", timeout=10)
        await self.top("welcome", timeout=10)
        result["wiped"] = c.wipes == wipes + 1
        result["language_reset"] = c.flow.language
        result["timed_out_after"] = time.monotonic() - started
        self.timeouts[f.Step.CONSENT] = f.DEFAULT_TIMEOUTS[f.Step.CONSENT]
        result["ok"] = True

    async def scenarios(self, only: list[str]) -> None:
        began = time.monotonic()
        await self.app.wait_screen("welcome", 30)
        self.report.setdefault("timings", {})["startup"] = round(time.monotonic() - began, 2)
        try:
            jobs: list[tuple[str, Any]] = [(v, lambda v=v: self.variant_run(v)) for v in VARIANTS]
            jobs += [("flow", self.touch_flow), ("idle", self.idle_timeout)]
            for name, job in jobs:
                if only and name not in only:
                    continue
                began = time.monotonic()
                try:
                    await asyncio.wait_for(job(), 60)
                except Exception:
                    self.report["errors"].append(f"{name}: {traceback.format_exc()}")
                    await self.recover()
                self.report.setdefault("timings", {})[name] = round(time.monotonic() - began, 2)
        finally:
            self.app.stop()

    async def recover(self) -> None:
        """Back to the welcome screen after a failed scenario, so the next one starts clean."""
        c = self.controller
        self.session.hold.set()
        self.selfcheck.gate.set()
        for _ in range(5):
            step = c.flow.step.value
            if step == "welcome":
                return
            if step == "staff_pin":
                c.enter_pin(PIN)
            elif step == "staff":
                c.staff_cleaning_done()
                c.staff_exit()
            elif step == "cleaning":
                c.staff_gesture()
            else:
                c.quit()
                c.finish()
            await asyncio.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()

    os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="kiosk-ui-test-")
    from kiosk.ui.app import run_app

    driver = Driver(args.out)

    async def run() -> None:
        await asyncio.gather(run_app(driver.controller, app=driver.app), driver.scenarios(args.only))

    started = time.monotonic()
    asyncio.run(run())
    driver.report["seconds"] = time.monotonic() - started
    args.report.write_text(json.dumps(driver.report, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
