"""The patient app's figures: cold start, card to identity, touch to next screen, memory over sessions.

    python -m bench.run patient_app                 # all, as JSON
    python -m bench.patient_app [--sessions N]      # the same

Everything runs under a private Xvfb. Each measurement that needs the Kivy
window runs in its own process (Kivy opens one window per process):

- ``cold_start``: process start → welcome screen drawn, app only (its services
  idle), 5 runs.
- ``video_redraw``: one redraw of the call's video (upload, draw, buffer swap),
  alone, medians of 60.
- In one booth process on the real stack (development hub, emulated
  peripherals streaming 1280x720 at 15 frames/s, private pcscd with the virtual card, doctor in
  headless Chromium), N consecutive whole sessions (default 20):
  ``card_to_identity`` (vpcd took the card → beneficiary screen drawn),
  ``touch_to_screen`` (touch → next screen drawn, every touch that changes the
  screen), and the booth process's RSS during each 720p call and after each
  wipe, at rest (once the booth has trimmed its heap again, ten seconds after
  the wipe, as it does between patients); also 1 s after each wipe. Growth is
  measured from the first session's wipe to the last one's, at rest. Also how
  late the booth's event loop runs during the calls (``event_loop_lag_in_call``)
  and how many calls had to reconnect (``call_reconnects``, from the booth's
  audit trail).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.stats import percentile, summary_ms

if TYPE_CHECKING:
    from kiosk.ui.app import BoothApp

COLD_STARTS = 5
SCREEN = (1280, 800)


class Diagnosis:
    """``--diagnose``: after each wipe, what grew (stderr).

    Counts every live object by type (gc) and reads glibc's allocator totals
    (``mallinfo2``): a per-session leak shows as a type whose count climbs by
    the same step each session, or as bytes in use that climb; RSS climbing
    while bytes in use stay flat is the allocator keeping freed pages.
    """

    def __init__(self) -> None:
        import ctypes

        self._libc = ctypes.CDLL("libc.so.6")
        self._counts = self._type_counts()

    @staticmethod
    def _type_counts() -> dict[str, int]:
        counts: dict[str, int] = {}
        for obj in gc.get_objects():
            name = f"{type(obj).__module__}.{type(obj).__qualname__}"
            counts[name] = counts.get(name, 0) + 1
        return counts

    def _malloc_mib(self) -> tuple[float, float]:
        """(bytes in use, free bytes held in the arenas), MiB."""
        import ctypes

        class Mallinfo2(ctypes.Structure):
            _fields_ = [
                (name, ctypes.c_size_t)
                for name in (
                    "arena",
                    "ordblks",
                    "smblks",
                    "hblks",
                    "hblkhd",
                    "usmblks",
                    "fsmblks",
                    "uordblks",
                    "fordblks",
                    "keepcost",
                )
            ]

        self._libc.mallinfo2.restype = Mallinfo2
        info = self._libc.mallinfo2()
        return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20

    def report(self, session: int) -> None:
        counts = self._type_counts()
        grown = sorted(((counts[name] - self._counts.get(name, 0), name) for name in counts), reverse=True)[:12]
        in_use, free = self._malloc_mib()
        print(
            f"== session {session}: rss {rss_mib():.1f} MiB, malloc in use {in_use:.1f} MiB, free in arenas"
            f" {free:.1f} MiB, python blocks {sys.getallocatedblocks()}",
            file=sys.stderr,
        )
        for delta, name in grown:
            if delta > 0:
                print(f"   +{delta:6d} {name}", file=sys.stderr)
        self._counts = counts


class LoopLag:
    """How late the booth's event loop wakes a 10 ms sleep, and how long the garbage collector paused the
    interpreter, sampled while ``recording`` is set.

    The booth's loop runs the UI's drawing and the call's packets: when it wakes late, the kernel queues the
    call's datagrams meanwhile, and drops them once the socket's buffer is full.
    """

    period = 0.01

    def __init__(self) -> None:
        self.recording = False
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self.gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._gc_started = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # The cyclic collector stops the whole interpreter, the loop included.
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self.recording:
            self.gc_pauses[info["generation"]].append(time.perf_counter() - self._gc_started)

    def gc_report(self) -> dict[str, Any]:
        return {
            f"generation_{generation}": {
                "count": len(pauses),
                "max_ms": round(max(pauses) * 1000, 1) if pauses else 0.0,
                "total_ms": round(sum(pauses) * 1000, 1),
            }
            for generation, pauses in self.gc_pauses.items()
        }

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.period)
            if self.recording:
                self.samples.append(max(0.0, loop.time() - before - self.period))


def _audit_events(path: Path, name: str) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if json.loads(line).get("event") == name)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def drawn(app: BoothApp, *names: str, timeout: float = 30.0) -> float:
    """Wait until one of ``names`` shows and one more frame was drawn; the monotonic time of that frame's end."""
    from kivy.clock import Clock

    deadline = time.monotonic() + timeout
    while not set(names) & set(app.showing()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{names} not shown (showing {app.showing()})")
        await asyncio.sleep(0.001)
    frame = Clock.frames_displayed
    # Kivy has no "frame drawn" event to await; a 1 ms poll is well under the 16.7 ms frame period.
    while Clock.frames_displayed <= frame:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    return time.monotonic()


# -- cold start (child process) -------------------------------------------------------------------
class _Idle:
    """Services that do nothing: the cold start measures the app itself."""

    confirm: Any = None

    async def events(self) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield None

    def add_listener(self, listener: Callable[[Any], None]) -> None:
        return None

    async def run(self) -> AsyncIterator[Any]:
        return
        yield None


async def _cold_start(spawned_at: float) -> dict[str, float]:
    from kiosk.ui.main import prepare_state

    prepare_state(Path(tempfile.mkdtemp(prefix="bench-app-")))
    from kiosk.ui.app import BoothApp, run_app
    from kiosk.ui.controller import Controller
    from kiosk.ui.services import Services

    idle = _Idle()
    controller = Controller(Services(card=idle, session=idle, selfcheck=idle))  # type: ignore[arg-type]
    app = BoothApp(controller)
    running = asyncio.create_task(run_app(controller, size=SCREEN, app=app))
    await drawn(app, "welcome")
    shown = time.time()
    app.stop()
    await running
    return {"cold_start_s": shown - spawned_at}


# -- one video redraw (child process) --------------------------------------------------------------
def _frame_cost(frames: int = 60) -> dict[str, Any]:
    """What one redraw of the call's video costs the booth's loop: a new 1280x720 RGB frame uploaded
    (``blit``), the window drawn with it at the doctor view's size and at the self view's (``draw``), and
    the buffer swap, which waits for the renderer (``flip``: under Mesa's software renderer, the
    rasterisation of the whole window). Medians over ``frames`` redraws, nothing else running."""
    from kiosk.ui import kivyenv  # noqa: F401  (before Kivy)

    # isort: split
    import numpy as np
    from kivy.core.window import Window
    from kivy.graphics import Color, Rectangle
    from kivy.graphics.texture import Texture

    Window.size = SCREEN
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8).tobytes() for _ in range(4)]
    texture = Texture.create(size=(1280, 720), colorfmt="rgb")
    with Window.canvas:
        Color(1, 1, 1, 1)
        Rectangle(texture=texture, pos=(16, 80), size=(712, 400))  # the doctor, 58 % of the width
        Rectangle(texture=texture, pos=(500, 96), size=(213, 120))  # the self view, a third of that
    phases: dict[str, list[float]] = {"blit": [], "draw": [], "flip": []}
    for index in range(frames + 5):
        started = time.perf_counter()
        texture.blit_buffer(pictures[index % len(pictures)], colorfmt="rgb", bufferfmt="ubyte")
        blitted = time.perf_counter()
        Window.dispatch("on_draw")
        drawn = time.perf_counter()
        Window.dispatch("on_flip")
        flipped = time.perf_counter()
        if index >= 5:  # the first ones compile shaders
            phases["blit"].append(blitted - started)
            phases["draw"].append(drawn - blitted)
            phases["flip"].append(flipped - drawn)
    Window.close()
    return {f"{name}_ms_p50": round(percentile(values, 0.5) * 1000, 2) for name, values in phases.items()}


# -- sessions (child process) ---------------------------------------------------------------------
async def _sessions(count: int, out: Path, diagnose: bool = False) -> dict[str, Any]:
    from kiosk.demo.browser import home_with_ca, launch_chromium
    from kiosk.demo.card import DemoCard
    from kiosk.demo.consultation import booth, wait_for
    from kiosk.demo.doctor import ScriptedDoctor
    from kiosk.demo.hub import DevHub
    from kiosk.session.emulated import EmulationSettings
    from kiosk.ui.app import BoothApp, run_app

    touches: list[float] = []
    card_to_identity: list[float] = []
    card_seen: list[float] = []
    in_call: list[float] = []
    after_wipe: list[float] = []
    right_after_wipe: list[float] = []
    diagnosis: Diagnosis | None = None
    lag = LoopLag()

    async def touch(app: BoothApp, widget: str, *next_screens: str) -> None:
        started = time.monotonic()
        app.tap(widget)
        touches.append(await drawn(app, *next_screens) - started)

    hub = DevHub(out / "hub", run_dir=out)
    hub.start()
    try:
        with DemoCard(out / "pcscd") as card:
            # 720p at 15 frames/s: at 30 the 2-core bench machine, which also runs the doctor's Chromium and
            # the hub, is the bottleneck rather than the booth.
            settings = EmulationSettings(stream_size=(1280, 720), fps=15, nibp_speed=4.0)
            async with booth(out, hub, card, settings=settings) as stack:
                controller = stack.controller
                app = BoothApp(controller)
                running = asyncio.create_task(run_app(controller, size=SCREEN, app=app))
                home = home_with_ca(out / "chromium", hub.paths.fleet_ca)
                async with launch_chromium(home, headless=True) as browser:
                    doctor = await ScriptedDoctor.open(browser, hub.origin, hub.doctor)
                    await doctor.login()
                    first_name = card.expected()[0].first_name
                    await drawn(app, "welcome")
                    lag.start()
                    for _ in range(count):
                        await touch(app, "lang_fr", "consent")
                        await touch(app, "consent_accept", "identification")
                        await asyncio.sleep(0.3)  # the patient reads, then inserts
                        await card.insert()
                        inserted = time.monotonic()
                        shown = await drawn(app, "beneficiary")
                        card_to_identity.append(shown - inserted)
                        if card.inserted_at is not None:
                            card_seen.append(shown - card.inserted_at)
                        await touch(app, "beneficiary_0", "reason")
                        await touch(app, "reason_infection", "selfcheck", "waiting")  # a quick self-check skips a frame
                        await wait_for(lambda: controller.screen == "waiting", 30, "the waiting room")
                        await doctor.accept_next(60, first_name=first_name)
                        lag.recording = True
                        await doctor.sas()
                        await doctor.verify()
                        await asyncio.sleep(5)  # the call runs: 720p both ways
                        in_call.append(rss_mib())
                        await doctor.end()
                        lag.recording = False
                        await drawn(app, "end")
                        await touch(app, "end_finish", "welcome")
                        await card.remove()
                        await asyncio.sleep(1.0)
                        gc.collect()
                        right_after_wipe.append(rss_mib())
                        # The booth at rest between patients: after its second trim (Controller._trim_at_rest).
                        trims = len(after_wipe) + 1
                        await wait_for(lambda: controller.rest_trims >= trims, 60, "the booth at rest")  # noqa: B023
                        after_wipe.append(rss_mib())
                        if diagnose:
                            if diagnosis is None:
                                diagnosis = Diagnosis()
                            else:
                                diagnosis.report(len(after_wipe))
                    lag.stop()
                    await doctor.close()
                app.stop()
                await running
    finally:
        hub.stop()
    growth = (after_wipe[-1] - after_wipe[0]) / after_wipe[0] * 100
    # The second call allocates what the first one did not (codec and buffer pools): growth from there on
    # is what a leak would show.
    warmed = after_wipe[1] if len(after_wipe) > 1 else after_wipe[0]
    growth_warmed = (after_wipe[-1] - warmed) / warmed * 100
    return {
        "sessions": count,
        "card_to_identity": summary_ms(card_to_identity),
        "card_in_reader_to_identity": summary_ms(card_seen) if card_seen else None,
        "touch_to_screen": summary_ms(touches),
        "rss_mib_in_720p_call": {"first": round(in_call[0], 1), "max": round(max(in_call), 1)},
        "rss_mib_after_wipe": {"first": round(after_wipe[0], 1), "last": round(after_wipe[-1], 1)},
        "rss_growth_percent_over_sessions": round(growth, 2),
        "rss_growth_percent_from_second_session": round(growth_warmed, 2),
        "rss_after_each_session_mib": [round(value, 1) for value in after_wipe],
        "rss_1s_after_each_wipe_mib": [round(value, 1) for value in right_after_wipe],
        "event_loop_lag_in_call": summary_ms(lag.samples) if lag.samples else None,
        "gc_pauses_in_call": lag.gc_report(),
        # Each one is a call that lost its connection and made it again (an ICE restart): none expected on loopback.
        "call_reconnects": _audit_events(out / "state" / "booth" / "audit" / "audit.log", "consultation_reconnecting"),
    }


# -- parent -----------------------------------------------------------------------------------------
def _child(arguments: list[str], timeout: float) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.patient_app", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"bench child {arguments[0]} failed ({result.returncode}): {result.stderr[-3000:]}")
    document: dict[str, Any] = json.loads(lines[-1])
    return document


def run(sessions: int = 20) -> dict[str, Any]:
    from kiosk.demo.display import virtual_display

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-patient-") as work, virtual_display(SCREEN):
        starts = [_child(["cold-start", repr(time.time())], 120)["cold_start_s"] for _ in range(COLD_STARTS)]
        results["cold_start_to_welcome"] = summary_ms(starts)
        results["video_redraw"] = _child(["frame-cost"], 120)
        results.update(_child(["sessions", str(sessions), work], 60 + 150 * sessions))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.patient_app")
    sub = parser.add_subparsers(dest="mode")
    cold = sub.add_parser("cold-start")
    cold.add_argument("spawned_at", type=float)
    sub.add_parser("frame-cost")
    many = sub.add_parser("sessions")
    many.add_argument("count", type=int)
    many.add_argument("out", type=Path)
    many.add_argument("--diagnose", action="store_true", help="per-session object and allocation growth on stderr")
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    if args.mode == "cold-start":
        print(json.dumps(asyncio.run(_cold_start(args.spawned_at))))
    elif args.mode == "frame-cost":
        print(json.dumps(_frame_cost()))
    elif args.mode == "sessions":
        from kiosk.memory import limit_arenas

        limit_arenas()  # the booth in this process allocates as kiosk-app's does
        print(json.dumps(asyncio.run(_sessions(args.count, args.out, args.diagnose))))
    else:
        print(json.dumps(run(args.sessions), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
