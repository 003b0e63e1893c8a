"""``make demo``: the booth's peripherals and card reader on embedded defaults.

Everything runs through the production code paths: firmware emulators serve
real pseudo-terminals behind stable links (as udev's ``/dev/serial/by-id``),
the drivers read them through pyserial; the cameras and the stethoscope read
generated media through OpenCV and PyAV; a virtual Carte Vitale plugs into a
private pcscd through the vpcd driver and is read through pyscard.

Readings are printed live; ``demo-out/summary.json`` records each step.
``DEMO_CARD=FILE`` (JSON: surname, first_name, birth_date, nir) replaces the
synthetic identity on the virtual card. The demo prints identities masked and
writes none of them to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.camera import UvcCamera
from devices.events import DeviceState, Reading, StateChanged
from devices.nibp import BloodPressureMonitor
from devices.oximeter import Oximeter
from devices.simulators.base import PtyRunner
from devices.simulators.camera import write_synthetic_video
from devices.simulators.nibp import NibpFirmware
from devices.simulators.oximeter import OximeterFirmware
from devices.simulators.stethoscope import write_heart_sounds
from devices.simulators.thermometer import ThermometerFirmware
from devices.stethoscope import Stethoscope
from devices.thermometer import Thermometer

OUT = Path(os.environ.get("DEMO_OUT", "demo-out"))
SPARKS = " ▁▂▃▄▅▆▇█"


@dataclass
class Step:
    name: str
    ok: bool = False
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Demo:
    out: Path
    steps: list[Step] = field(default_factory=list)
    readings: dict[str, float | None] = field(default_factory=dict)
    live: bool = sys.stdout.isatty()
    _last_status: float = 0.0

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def status(self, text: str) -> None:
        # A live line on a terminal; in a log, one line a second.
        now = time.monotonic()
        if self.live:
            sys.stdout.write("\r\033[K" + text)
            sys.stdout.flush()
        elif now - self._last_status >= 1.0:
            self._last_status = now
            print(text, flush=True)

    async def step(self, name: str, body: Callable[[], Awaitable[str]]) -> None:
        self.say(f"\n== {name}")
        step = Step(name)
        started = time.monotonic()
        try:
            step.detail = await body()
            step.ok = True
        except Exception as exc:  # a failed step is reported, the demo goes on
            step.detail = f"{exc.__class__.__name__}: {exc}"
        step.seconds = round(time.monotonic() - started, 2)
        if self.live:
            sys.stdout.write("\n")
        self.say(f"   {'ok' if step.ok else 'FAILED'} ({step.seconds:.1f} s) {step.detail}")
        self.steps.append(step)


@contextlib.asynccontextmanager
async def emulated(factory: Callable[[], Any], link: Path) -> AsyncIterator[PtyRunner]:
    runner = PtyRunner(factory, link=str(link))
    runner.plug()
    try:
        yield runner
    finally:
        runner.close()


async def oximeter_step(demo: Demo, oximeter: Oximeter, seconds: float = 6.0) -> str:
    pleth: list[float] = []
    spo2 = pulse = None
    deadline = time.monotonic() + seconds
    last_print = 0.0
    async with oximeter.events() as events:
        async for event in events:
            if time.monotonic() > deadline:
                break
            if not isinstance(event, Reading):
                continue
            if event.kind == "pleth" and event.value is not None:
                pleth = [*pleth[-39:], event.value]
            elif event.kind == "spo2":
                spo2 = event.value
            elif event.kind == "pulse":
                pulse = event.value
            now = time.monotonic()
            if now - last_print > 0.05:
                last_print = now
                wave = "".join(SPARKS[min(8, int(v) * 9 // 128)] for v in pleth)
                demo.status(f"   SpO2 {fmt(spo2)} %   pulse {fmt(pulse)} /min   {wave}")
    spo2_reading, pulse_reading = await oximeter.read_once(timeout=10)
    demo.readings["spo2"] = spo2_reading.value
    demo.readings["pulse"] = pulse_reading.value
    return f"SpO2 {fmt(spo2_reading.value)} %, pulse {fmt(pulse_reading.value)} /min"


async def nibp_step(demo: Demo, nibp: BloodPressureMonitor) -> str:
    demo.say("   The patient has been told the cuff will inflate; starting the cycle.")

    async def show_pressure() -> None:
        async with nibp.events() as events:
            async for event in events:
                if isinstance(event, Reading) and event.kind == "cuff_pressure":
                    demo.status(f"   cuff {fmt(event.value)} mmHg")

    shower = asyncio.create_task(show_pressure())
    try:
        result = await nibp.measure(timeout=120)
    finally:
        shower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shower
    demo.readings["systolic"] = result.systolic.value
    demo.readings["diastolic"] = result.diastolic.value
    return (
        f"{fmt(result.systolic.value)}/{fmt(result.diastolic.value)} mmHg, "
        f"mean {fmt(result.mean.value)}, pulse {fmt(result.pulse.value)} /min"
    )


async def thermometer_step(demo: Demo, thermometer: Thermometer) -> str:
    reading = await thermometer.read()
    demo.readings["celsius"] = reading.value
    return f"{reading.value:.2f} °C" if reading.value is not None else "no value"


async def unplug_step(demo: Demo, runner: PtyRunner, oximeter: Oximeter) -> str:
    async with oximeter.events() as events:
        demo.say("   pulling the oximeter's cable...")
        runner.unplug()
        lost = await _wait_state(events, DeviceState.DISCONNECTED)
        demo.say(f"   driver: disconnected ({lost.error.message if lost.error else 'no reason'})")
        await asyncio.sleep(1.0)
        demo.say("   plugging it back...")
        runner.plug()
        await _wait_state(events, DeviceState.CONNECTED)
    spo2, _ = await oximeter.read_once(timeout=10)
    return f"reconnected by itself; SpO2 {fmt(spo2.value)} % again"


async def _wait_state(events: AsyncIterator[Any], state: DeviceState) -> StateChanged:
    async with asyncio.timeout(10):
        async for event in events:
            if isinstance(event, StateChanged) and event.new is state:
                return event
    raise TimeoutError(f"no {state.value} state")


async def camera_step(demo: Demo, video: Path) -> str:
    camera = UvcCamera(str(video), name="otoscope", stream_size=(1280, 720))
    await camera.start()
    try:
        await camera.wait_connected(10)
        frames = 0
        async with asyncio.timeout(10):
            async for frame in camera.frames():
                frames += 1
                if frames >= 15:
                    stream = frame.image.shape
                    break
        still = await camera.capture_still()
    finally:
        await camera.stop()
    path = demo.out / "otoscope-still.png"
    await asyncio.to_thread(path.write_bytes, still.encode_png())
    return f"stream {stream[1]}x{stream[0]}, still {still.width}x{still.height} saved to {path}"


async def stethoscope_step(demo: Demo, wav: Path) -> str:
    source = Stethoscope(str(wav))
    await source.start()
    samples = 0
    peak = 0
    rate = 0
    try:
        async with asyncio.timeout(10):
            async for chunk in source.frames():
                rate = chunk.sample_rate
                samples += len(chunk.samples)
                peak = max(peak, int(abs(chunk.samples.astype("int32")).max()))
                bar = "#" * min(40, peak * 40 // 32768)
                demo.status(f"   {samples / rate:4.1f} s  peak {bar}")
                if samples >= 2 * rate:
                    break
    finally:
        await source.stop()
    return f"{samples} samples at {rate} Hz, unprocessed"


async def card_step(demo: Demo, workdir: Path) -> str:
    from kiosk.demo.card import DemoCard
    from kiosk.identity.pcsc import PcscMonitor, read_card

    with DemoCard(workdir, DemoCard.identity_from_env()) as card:
        assert card.daemon is not None
        readers = ", ".join(card.daemon.reader_names)
        demo.say(f"   private pcscd with vpcd on port {card.daemon.port}; readers: {readers}")
        async with PcscMonitor() as monitor:
            reading = asyncio.create_task(read_card(monitor, timeout=20))
            await asyncio.sleep(0.5)
            demo.say("   inserting the virtual Carte Vitale...")
            await card.insert()
            try:
                result = await reading
            finally:
                await card.remove()
    assert card.inserted_at is not None
    people = result.identity.beneficiaries
    for person in people:
        born = person.birth_date.isoformat() if person.birth_date else person.birth_date_text
        demo.say(f"   - {person.first_name} {person.surname[:1]}., born {born}, NIR {person.nir.masked()}")
    took = (result.identity_at - card.inserted_at) * 1000
    return f"{len(people)} beneficiary(ies), identity available {took:.0f} ms after insertion"


def fmt(value: float | None) -> str:
    return "--" if value is None else f"{value:.0f}"


async def run(out: Path) -> Demo:
    demo = Demo(out)
    dev = out / "dev"
    media = out / "media"
    for folder in (dev, media, out / "state"):
        folder.mkdir(parents=True, exist_ok=True)
    demo.say("Teleconsultation booth: peripherals and card reader on emulated hardware.")
    video, wav = media / "otoscope.avi", media / "stethoscope.wav"
    await asyncio.to_thread(write_synthetic_video, str(video), kind="otoscope", size=(1920, 1080), seconds=2)
    await asyncio.to_thread(write_heart_sounds, str(wav), bpm=72, seconds=3, sample_rate=16000)

    async with (
        emulated(lambda: OximeterFirmware("normal"), dev / "oximeter") as oxi_runner,
        emulated(lambda: NibpFirmware("normal", speed=3.0), dev / "nibp") as _nibp_runner,
        emulated(lambda: ThermometerFirmware("normal"), dev / "thermometer") as _thermo_runner,
    ):
        oximeter = Oximeter(str(dev / "oximeter"), generation="auto")
        nibp = BloodPressureMonitor(str(dev / "nibp"))
        thermometer = Thermometer(str(dev / "thermometer"))
        async with oximeter, nibp, thermometer:
            for driver in (oximeter, nibp, thermometer):
                await driver.wait_connected(10)
            demo.say(f"peripherals on {dev}/: oximeter, nibp, thermometer (pseudo-terminals behind stable links)")
            await demo.step("pulse oximeter", lambda: oximeter_step(demo, oximeter))
            await demo.step("blood pressure", lambda: nibp_step(demo, nibp))
            await demo.step("temperature", lambda: thermometer_step(demo, thermometer))
            await demo.step("oximeter unplugged and replugged", lambda: unplug_step(demo, oxi_runner, oximeter))
    await demo.step("otoscope", lambda: camera_step(demo, video))
    await demo.step("stethoscope", lambda: stethoscope_step(demo, wav))
    await demo.step("Carte Vitale", lambda: card_step(demo, out / "state" / "pcscd"))
    return demo


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    OUT.mkdir(parents=True, exist_ok=True)
    demo = asyncio.run(run(OUT))
    ok = all(step.ok for step in demo.steps)
    summary = {
        "ok": ok,
        "readings": demo.readings,
        "steps": [{"name": s.name, "ok": s.ok, "seconds": s.seconds} for s in demo.steps],
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{'all steps ok' if ok else 'some steps FAILED'}; summary in {OUT / 'summary.json'}")
    return 0 if ok else 1


if __name__ == "__main__":  # python -m kiosk.demo.devices
    sys.exit(main())
