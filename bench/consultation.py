"""Consultation: a real hub, a real booth process and the doctor's console in headless Chromium.

Everything runs on this machine: ``kiosk-hub serve`` on a throwaway
development state, ``kiosk-booth --emulate`` (emulated peripherals through
the production drivers, cameras at ``--video-size``/``--fps``, the room
camera's frames stamped with their capture time: ``--stamp-frames``, see
:mod:`kiosk.session.stamp`), and Debian's Chromium driven by Playwright,
trusting the dev fleet CA, logged in as the demo doctor with TOTP. Times on
the doctor side are taken in the page (``performance.now()``, ``Date.now()``).

* ``call_setup``: the doctor clicks *accept* -> the first frame of the
  patient video is presented (``requestVideoFrameCallback`` on the
  ``video-patient`` element, its ``presentationTime``), over ``calls``
  calls: accept, first frame, hang up (console), the booth re-announces
  (stdin ``announce``), again. ``to_first_packet`` is the click to the
  reception of that frame's last packet (``receiveTime``).
* ``steady``: ``getStats`` inbound-rtp of mid 0 (booth camera) and mid 1
  (examination camera) once a second: ``framesPerSecond``, frame sizes,
  the average frame rate from ``framesDecoded``, Chromium's average
  jitter-buffer wait, decode time and receive-to-decoded delay per frame
  (also given over the glass-to-glass window); ``booth_cpu``: the
  ``kiosk-booth`` process's CPU (``/proc/PID/stat``) while it waits in the
  room (cameras running, no call) and over the same window with the call up;
  per video stream = (call - idle) / 2. The call figure also holds the audio
  (two Opus encoders), decoding the doctor's video and audio, SRTP and the
  data channel; all processes share the machine's cores (no pinning).
* ``glass_to_glass``: each frame presented in the page is drawn to a canvas,
  its stamp decoded, and ``Date.now() - stamp`` taken in the
  ``requestVideoFrameCallback`` callback (same machine, same clock). The
  stamp is the camera's read time, so the newest-frame slot, the encoder,
  the network stack, the jitter buffer, the decoder and the compositor all
  count. Frames whose stamp does not verify (CRC) are counted, not used.
  ``expected_display`` uses the frame's ``expectedDisplayTime`` instead of
  the callback's time (Chromium runs the callback after the frame went to the
  compositor, so it is the earlier of the two), ``to_receive`` its
  ``receiveTime`` (last packet of the frame in): the booth and the network's
  share.
* ``commands``: ``thermometer.read``: click on ``temp-read`` -> the result
  shown in ``temp-result`` (a MutationObserver), minus the booth's own
  ``device_seconds`` for the read (its ``command`` event on stdout);
  ``camera.select``: change of ``camera-select`` -> the ack shown in
  ``camera-status`` (no device time: a pure data-channel round trip).

    python -m bench.consultation [--calls N] [--frames N] [--steady-seconds S] [--reads N] [--selects N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.stats import percentile
from kiosk.demo.browser import CHROMIUM, BrowserUnavailable, home_with_ca, launch_chromium
from kiosk.demo.doctor import DoctorStepFailed, ScriptedDoctor
from kiosk.demo.hub import RELAXED_RATE_LIMIT, DevHub, HubError, tail

ROOT: Final = Path(__file__).resolve().parents[1]
VIDEO_SIZE: Final = "1280x720"
FPS: Final = 30
CALLS: Final = 10
FRAMES: Final = 400
"""Stamped frames read for glass-to-glass (at least 300 asked)."""
STEADY_SECONDS: Final = 20.0
IDLE_SECONDS: Final = 5.0
WARMUP_SECONDS: Final = 3.0
"""After the last call is up, before the steady window: the sender's bitrate ramps up."""
READS: Final = 20
SELECTS: Final = 20
VIDEO_STREAMS: Final = 2
STARTUP_TIMEOUT: Final = 60.0
STEP_TIMEOUT_MS: Final = 20_000

# Installed in the console page once logged in. Click and change times, the first frame of each call,
# results shown, and the stamp reader: kiosk/session/stamp.py's layout and CRC, in JavaScript.
PAGE_SCRIPT: Final = r"""
() => {
  if (window.__bench) return;
  const BLOCK = 16, VALUE_BITS = 48, CHECK_BITS = 16, BLOCKS = VALUE_BITS + CHECK_BITS, MARGIN = 4, THRESHOLD = 128;
  const crc16 = (bytes) => {
    let crc = 0xffff;
    for (const byte of bytes) {
      crc ^= byte << 8;
      for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
  };
  /** The stamp in RGBA pixels `data` of a strip `width` wide, or null. */
  const decode = (data, width) => {
    const columns = Math.floor(width / BLOCK);
    let value = 0, check = 0;
    for (let index = 0; index < BLOCKS; index++) {
      const x0 = (index % columns) * BLOCK, y0 = Math.floor(index / columns) * BLOCK;
      let sum = 0, count = 0;
      for (let y = y0 + MARGIN; y < y0 + BLOCK - MARGIN; y++) {
        for (let x = x0 + MARGIN; x < x0 + BLOCK - MARGIN; x++) {
          const p = (y * width + x) * 4;
          sum += data[p] + data[p + 1] + data[p + 2];
          count += 3;
        }
      }
      const bit = sum / count > THRESHOLD ? 1 : 0;
      if (index < VALUE_BITS) value = value * 2 + bit;
      else check = check * 2 + bit;
    }
    const bytes = [];
    for (let k = VALUE_BITS / 8 - 1; k >= 0; k--) bytes.push(Math.floor(value / 2 ** (8 * k)) % 256);
    return crc16(bytes) === check ? value : null;
  };
  const bench = {
    clicks: {},
    results: {},
    call: 0,
    firstFrame: null,
    trackAt: null,
    stamps: null,
  };
  window.__bench = bench;
  const mark = (event) => {
    const target = event.target?.closest?.("[data-testid]");
    if (target) bench.clicks[target.dataset.testid] = performance.now();
  };
  window.addEventListener("click", mark, true);
  window.addEventListener("change", mark, true);
  bench.newCall = () => {
    bench.call += 1;
    bench.firstFrame = null;
    bench.trackAt = null;
    delete bench.clicks.accept;
  };
  bench.expect = (testid) => {
    delete bench.clicks[testid === "temp-result" ? "temp-read" : "camera-select"];
    bench.results[testid] = null;
  };
  const watch = (id, done) => {
    const node = document.getElementById(id);
    new MutationObserver(() => {
      if (bench.results[id] === null && done(node)) bench.results[id] = performance.now();
    }).observe(node, { childList: true, characterData: true, subtree: true, attributes: true });
  };
  watch("temp-result", (node) => node.textContent.trim() !== "");
  watch("camera-status", (node) => node.dataset.state === "done");

  const video = document.getElementById("video-patient");
  const srcObject = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, "srcObject");
  Object.defineProperty(video, "srcObject", {
    configurable: true,
    get() {
      return srcObject.get.call(this);
    },
    set(value) {
      srcObject.set.call(this, value);
      if (!value || bench.trackAt !== null) return;
      bench.trackAt = performance.now();
      const call = bench.call;
      this.requestVideoFrameCallback((now, meta) => {
        if (bench.call !== call) return;
        bench.firstFrame = {
          callback: now,
          presented: meta.presentationTime,
          received: meta.receiveTime ?? null,
          width: meta.width,
          height: meta.height,
        };
      });
    },
  });

  bench.startStamps = (wanted) => {
    const state = { wanted, samples: [], undecodable: 0, repeated: 0, sizes: {}, last: null, done: false };
    bench.stamps = state;
    const canvas = document.createElement("canvas");
    const context = canvas.getContext("2d", { willReadFrequently: true });
    const onFrame = (now, meta) => {
      if (state.done) return;
      const arrival = Date.now();
      const offset = arrival - performance.now(); // wall clock minus the page's monotonic clock, now
      const width = meta.width, rows = Math.ceil(BLOCKS / Math.floor(meta.width / BLOCK)) * BLOCK;
      if (canvas.width !== width || canvas.height !== rows) {
        canvas.width = width;
        canvas.height = rows;
      }
      context.drawImage(video, 0, 0, width, rows, 0, 0, width, rows);
      const value = decode(context.getImageData(0, 0, width, rows).data, width);
      const size = `${meta.width}x${meta.height}`;
      state.sizes[size] = (state.sizes[size] ?? 0) + 1;
      if (value === null) state.undecodable += 1;
      else if (value === state.last) state.repeated += 1;
      else {
        state.last = value;
        state.samples.push([
          arrival - value,
          offset + meta.expectedDisplayTime - value,
          meta.receiveTime === undefined ? null : offset + meta.receiveTime - value,
        ]);
      }
      if (state.samples.length >= state.wanted) {
        state.done = true;
        return;
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  };
  bench.stopStamps = () => {
    if (bench.stamps) bench.stamps.done = true;
  };
  bench.videoStats = async () => {
    const stats = await window.consoleDebug.getStats();
    return stats
      .filter((s) => s.type === "inbound-rtp" && s.kind === "video")
      .map((s) => ({
        mid: s.mid,
        fps: s.framesPerSecond ?? null,
        width: s.frameWidth ?? null,
        height: s.frameHeight ?? null,
        decoded: s.framesDecoded ?? 0,
        dropped: s.framesDropped ?? 0,
        freezes: s.freezeCount ?? 0,
        jitterBufferDelay: s.jitterBufferDelay ?? 0,
        jitterBufferEmitted: s.jitterBufferEmittedCount ?? 0,
        decodeTime: s.totalDecodeTime ?? 0,
        processingDelay: s.totalProcessingDelay ?? 0,
        timestamp: s.timestamp,
      }));
  };
}
"""


class BenchError(Exception):
    """The bench could not set up or run."""


# -- processes ---------------------------------------------------------------------------------------
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle by every core since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and every process under it (hub, booth, Playwright's driver, Chromium), by pid."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    tree: dict[int, float] = {}
    for pid, seconds in times.items():
        ancestor = pid
        while ancestor > 1 and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root:
            tree[pid] = seconds
    return tree


@dataclass
class _CpuWindow:
    """CPU use over a time window: the booth process, this bench's whole process tree, the machine."""

    booth_pid: int
    started: float = 0.0
    booth: float = 0.0
    machine: float = 0.0
    tree: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.booth = cpu_seconds(self.booth_pid)
        self.machine = machine_busy_seconds()
        self.tree = tree_cpu_seconds(os.getpid())

    def percents(self) -> dict[str, float]:
        """Percent of one core since the window opened; ``others``: the machine minus this bench's processes."""
        window = time.monotonic() - self.started
        tree = tree_cpu_seconds(os.getpid())
        tree_seconds = sum(seconds - self.tree.get(pid, 0.0) for pid, seconds in tree.items())
        machine = (machine_busy_seconds() - self.machine) / window * 100
        bench = tree_seconds / window * 100
        return {
            "booth": (cpu_seconds(self.booth_pid) - self.booth) / window * 100,
            "bench_processes": bench,
            "machine": machine,
            "others": max(0.0, machine - bench),
        }


def _script(name: str, module: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


@dataclass
class _Booth:
    """A ``kiosk-booth`` process: its JSON events, its stdin commands, its CPU time."""

    process: asyncio.subprocess.Process
    log: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    self.events.append(event)
                    self.changed.set()
        self.changed.set()

    async def wait(
        self, match: Callable[[dict[str, Any]], bool], start: int = 0, timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first event from index ``start`` on that ``match``es."""
        deadline = time.monotonic() + timeout
        index = start
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if match(event):
                    return event
            if self.process.returncode is not None or (self.reader is not None and self.reader.done()):
                raise BenchError(f"kiosk-booth exited ({self.process.returncode}): {tail(self.log)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"kiosk-booth: no matching event in {timeout} s; last: {self.events[-3:]}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    async def state(self, state: str, start: int, timeout: float = 20.0) -> dict[str, Any]:
        return await self.wait(lambda e: e.get("event") == "state" and e.get("state") == state, start, timeout)

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ConnectionError, OSError):
                await self.send("quit")
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.terminate()
                try:
                    await asyncio.wait_for(self.process.wait(), 5)
                except TimeoutError:
                    self.process.kill()
                    await self.process.wait()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


async def _start_booth(base: Path, state: Path, booth_port: int, video_size: str, fps: float) -> _Booth:
    log = base / "booth.log"
    command = [
        *_script("kiosk-booth", "kiosk.session.booth"),
        "--hub",
        f"wss://localhost:{booth_port}/ws",
        "--hub-state",
        str(state),
        "--emulate",
        str(base / "booth"),
        "--video-size",
        video_size,
        "--fps",
        str(fps),
        "--stamp-frames",
        "--first-name",
        "Bench",
        "--reason",
        "Bench",
    ]
    with log.open("w") as log_file:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log_file
        )
    booth = _Booth(process, log)
    booth.reader = asyncio.get_running_loop().create_task(booth.read())
    try:
        await booth.wait(lambda e: e.get("event") == "ready", timeout=STARTUP_TIMEOUT)
    except BaseException:
        await booth.stop()
        raise
    return booth


# -- measurements ------------------------------------------------------------------------------------------
def _ms(values: Sequence[float], *fractions: float) -> dict[str, float | int]:
    """Percentiles of millisecond values."""
    out: dict[str, float | int] = {"samples": len(values)}
    for fraction in fractions:
        out[f"p{round(fraction * 100)}_ms"] = round(percentile(values, fraction), 1)
    out["mean_ms"] = round(statistics.fmean(values), 1)
    out["max_ms"] = round(max(values), 1)
    return out


async def _call(page: Any, booth: _Booth) -> dict[str, Any]:
    """Accept the waiting patient; the times of the first frame of the patient video."""
    start = len(booth.events)
    await page.locator("[data-testid=accept]:not([disabled])").first.wait_for()
    await page.evaluate("() => window.__bench.newCall()")
    await page.locator("[data-testid=accept]:not([disabled])").first.click()
    await page.wait_for_function("() => window.__bench.firstFrame !== null", timeout=STEP_TIMEOUT_MS)
    marks: dict[str, Any] = await page.evaluate(
        "() => ({click: window.__bench.clicks.accept, track: window.__bench.trackAt, first: window.__bench.firstFrame})"
    )
    await booth.state("in_call", start)
    first = marks["first"]
    return {
        "setup_ms": first["presented"] - marks["click"],
        "to_track_ms": marks["track"] - marks["click"],
        "to_first_packet_ms": first["received"] - marks["click"] if first["received"] is not None else None,
        "size": f"{first['width']}x{first['height']}",
    }


async def _hang_up(page: Any, booth: _Booth) -> None:
    start = len(booth.events)
    await page.get_by_test_id("end-call").click()
    await booth.state("ended", start)
    await page.wait_for_function("() => window.consoleDebug.view() === 'waiting-room'")
    start = len(booth.events)
    await booth.send("announce")
    await booth.state("waiting", start)


def _receiver_delays(first: dict[str, Any], last: dict[str, Any]) -> dict[str, float | None]:
    """Chromium's average jitter-buffer wait, decode time and receive-to-decoded delay per frame, between two stats."""

    def mean_ms(total: str, count: str) -> float | None:
        frames = last[count] - first[count]
        return round((last[total] - first[total]) / frames * 1000, 1) if frames > 0 else None

    return {
        "jitter_buffer_ms": mean_ms("jitterBufferDelay", "jitterBufferEmitted"),
        "decode_ms": mean_ms("decodeTime", "decoded"),
        "receive_to_decoded_ms": mean_ms("processingDelay", "decoded"),
    }


def _mid(stats: list[dict[str, Any]], mid: str) -> dict[str, Any] | None:
    return next((s for s in stats if s["mid"] == mid), None)


async def _steady(page: Any, booth: _Booth, seconds: float) -> tuple[dict[str, Any], dict[str, float]]:
    """Inbound video stats once a second; the booth's CPU and the machine's over the window."""
    samples: list[list[dict[str, Any]]] = []
    cpu = _CpuWindow(booth.pid)
    started = time.monotonic()
    first = await page.evaluate("() => window.__bench.videoStats()")
    next_at = started
    while time.monotonic() - started < seconds:
        next_at += 1.0
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        samples.append(await page.evaluate("() => window.__bench.videoStats()"))
    window = time.monotonic() - started
    percents = cpu.percents()
    streams: dict[str, Any] = {}
    for mid in ("0", "1"):
        seen = [s for s in (_mid(sample, mid) for sample in samples) if s is not None]
        start_stat = _mid(first, mid)
        if not seen or start_stat is None:
            streams[f"mid{mid}"] = None
            continue
        rates = [s["fps"] for s in seen if s["fps"] is not None]
        sizes: dict[str, int] = {}
        for s in seen:
            key = f"{s['width']}x{s['height']}"
            sizes[key] = sizes.get(key, 0) + 1
        last = seen[-1]
        elapsed = (last["timestamp"] - start_stat["timestamp"]) / 1000
        streams[f"mid{mid}"] = {
            "samples": len(seen),
            "fps_p50": round(statistics.median(rates), 1) if rates else None,
            "fps_min": round(min(rates), 1) if rates else None,
            "fps_max": round(max(rates), 1) if rates else None,
            "fps_from_frames_decoded": round((last["decoded"] - start_stat["decoded"]) / elapsed, 1)
            if elapsed > 0
            else None,
            "resolution": max(sizes, key=lambda k: sizes[k]),
            "resolutions_seen": sizes,
            "frames_dropped": last["dropped"] - start_stat["dropped"],
            "freezes": last["freezes"] - start_stat["freezes"],
            **_receiver_delays(start_stat, last),
        }
    return {"seconds": round(window, 1), **streams}, percents


async def _glass_to_glass(page: Any, frames: int, fps: float) -> dict[str, Any]:
    before = _mid(await page.evaluate("() => window.__bench.videoStats()"), "0")
    await page.evaluate("(wanted) => window.__bench.startStamps(wanted)", frames)
    with contextlib.suppress(Exception):
        await page.wait_for_function(
            "() => window.__bench.stamps.done", timeout=max(STEP_TIMEOUT_MS, int(frames / fps * 4000))
        )
    await page.evaluate("() => window.__bench.stopStamps()")
    after = _mid(await page.evaluate("() => window.__bench.videoStats()"), "0")
    state: dict[str, Any] = await page.evaluate("() => window.__bench.stamps")
    samples = state["samples"]
    if not samples:
        raise BenchError(f"no stamped frame decoded in the page: {state['undecodable']} undecodable")
    latency = [s[0] for s in samples]
    report: dict[str, Any] = {
        **_ms(latency, 0.5, 0.9, 0.99),
        "min_ms": round(min(latency), 1),
        "undecodable": state["undecodable"],
        "repeated": state["repeated"],
        "sizes": state["sizes"],
        "expected_display": _ms([s[1] for s in samples], 0.5, 0.99),
    }
    received = [s[2] for s in samples if s[2] is not None]
    if received:
        report["to_receive"] = _ms(received, 0.5, 0.99)
    if before is not None and after is not None:
        report["receiver_mid0"] = _receiver_delays(before, after)
    return report


async def _temperature_reads(page: Any, booth: _Booth, count: int) -> dict[str, Any]:
    round_trips: list[float] = []
    device: list[float] = []
    for _ in range(count):
        await page.locator("[data-testid=temp-read]:not([disabled])").wait_for()
        start = len(booth.events)
        await page.evaluate("() => window.__bench.expect('temp-result')")
        await page.get_by_test_id("temp-read").click()
        await page.wait_for_function("() => window.__bench.results['temp-result'] !== null", timeout=STEP_TIMEOUT_MS)
        marks = await page.evaluate(
            "() => ({click: window.__bench.clicks['temp-read'], shown: window.__bench.results['temp-result']})"
        )
        done = await booth.wait(
            lambda e: (
                e.get("event") == "command" and e.get("command") == "thermometer.read" and e.get("phase") == "done"
            ),
            start,
        )
        seconds = float(done["device_seconds"])
        round_trips.append(marks["shown"] - marks["click"])
        device.append(seconds * 1000)
    protocol = [rt - d for rt, d in zip(round_trips, device, strict=True)]
    return {
        **_ms(protocol, 0.5, 0.9, 0.99),
        "round_trip": _ms(round_trips, 0.5, 0.9, 0.99),
        "device": _ms(device, 0.5, 0.9, 0.99),
    }


async def _camera_selects(page: Any, count: int) -> dict[str, Any]:
    round_trips: list[float] = []
    for index in range(count):
        camera = ("dermatoscope", "otoscope")[index % 2]
        await page.locator("[data-testid=camera-select]:not([disabled])").wait_for()
        await page.evaluate("() => window.__bench.expect('camera-status')")
        await page.get_by_test_id("camera-select").select_option(camera)
        await page.wait_for_function("() => window.__bench.results['camera-status'] !== null", timeout=STEP_TIMEOUT_MS)
        marks = await page.evaluate(
            "() => ({click: window.__bench.clicks['camera-select'], shown: window.__bench.results['camera-status']})"
        )
        round_trips.append(marks["shown"] - marks["click"])
    return _ms(round_trips, 0.5, 0.9, 0.99)


async def _measure(
    base: Path,
    *,
    calls: int,
    frames: int,
    steady_seconds: float,
    idle_seconds: float,
    warmup_seconds: float,
    reads: int,
    selects: int,
    video_size: str,
    fps: float,
) -> dict[str, Any]:
    hub = DevHub(base / "state", run_dir=base, settings=RELAXED_RATE_LIMIT, startup_timeout=STARTUP_TIMEOUT)
    booth: _Booth | None = None
    try:
        hub.start()
        home = home_with_ca(base / "chromium-home", hub.paths.fleet_ca)
        booth = await _start_booth(base, hub.state, hub.booth_port, video_size, fps)
        async with launch_chromium(home) as browser:
            doctor = await ScriptedDoctor.open(browser, hub.origin, hub.doctor, step_timeout=STEP_TIMEOUT_MS / 1000)
            page = doctor.page
            await doctor.login()
            await page.evaluate(PAGE_SCRIPT)

            # The booth waits in the room: cameras and emulators running, no call.
            await asyncio.sleep(1.0)
            cpu = _CpuWindow(booth.pid)
            await asyncio.sleep(idle_seconds)
            idle = cpu.percents()

            setups: list[dict[str, Any]] = []
            for index in range(calls):
                setups.append(await _call(page, booth))
                if index < calls - 1:
                    await _hang_up(page, booth)
            # The last call stays up.
            await asyncio.sleep(warmup_seconds)
            steady, call = await _steady(page, booth, steady_seconds)
            glass = await _glass_to_glass(page, frames, fps)
            await page.get_by_test_id("sas-verified").click()
            temperature = await _temperature_reads(page, booth, reads)
            camera = await _camera_selects(page, selects)
            await _hang_up(page, booth)
    except (HubError, BrowserUnavailable, DoctorStepFailed) as exc:
        raise BenchError(str(exc)) from exc
    finally:
        if booth is not None:
            await booth.stop()
        hub.stop()

    setup_ms = [s["setup_ms"] for s in setups]
    first_packet = [s["to_first_packet_ms"] for s in setups if s["to_first_packet_ms"] is not None]
    return {
        "call_setup": {
            **_ms(setup_ms, 0.5, 0.9),
            "to_track": _ms([s["to_track_ms"] for s in setups], 0.5, 0.9),
            **({"to_first_packet": _ms(first_packet, 0.5, 0.9)} if first_packet else {}),
            "first_frame_sizes": sorted({s["size"] for s in setups}),
        },
        "glass_to_glass": glass,
        "steady": steady,
        "booth_cpu": {
            "idle_percent": round(idle["booth"], 1),
            "call_percent": round(call["booth"], 1),
            "video_streams": VIDEO_STREAMS,
            "per_video_stream_percent": round((call["booth"] - idle["booth"]) / VIDEO_STREAMS, 1),
            "machine_idle_window": {key: round(value, 1) for key, value in idle.items() if key != "booth"},
            "machine_call_window": {key: round(value, 1) for key, value in call.items() if key != "booth"},
        },
        "commands": {"thermometer.read": temperature, "camera.select": camera},
    }


def run(
    *,
    calls: int = CALLS,
    frames: int = FRAMES,
    steady_seconds: float = STEADY_SECONDS,
    idle_seconds: float = IDLE_SECONDS,
    warmup_seconds: float = WARMUP_SECONDS,
    reads: int = READS,
    selects: int = SELECTS,
    video_size: str = VIDEO_SIZE,
    fps: float = FPS,
) -> dict[str, Any]:
    """Run the whole consultation bench; the figures as a JSON-ready dict."""
    if min(calls, frames, reads, selects) < 1 or steady_seconds < 1 or idle_seconds <= 0:
        raise ValueError("calls, frames, reads, selects must be at least 1, steady_seconds at least 1")
    if not Path(CHROMIUM).exists():
        raise BenchError(f"{CHROMIUM} is not installed")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-consultation-") as tmp:
        figures = asyncio.run(
            _measure(
                Path(tmp),
                calls=calls,
                frames=frames,
                steady_seconds=steady_seconds,
                idle_seconds=idle_seconds,
                warmup_seconds=warmup_seconds,
                reads=reads,
                selects=selects,
                video_size=video_size,
                fps=fps,
            )
        )
    cores = os.cpu_count() or 1
    return {
        "bench": "consultation",
        "video": {"size": video_size, "fps": fps},
        "cores": cores,
        **figures,
        "notes": [
            f"hub, booth and Chromium share this machine's {cores} cores (no pinning); CPU % is of one core",
            "machine_*_window: bench_processes = this bench's process tree (hub, booth, Chromium, driver), "
            "others = the rest of the machine (other work running meanwhile skews every figure); "
            "approximate: per-process times and /proc/stat are accounted differently",
            "booth_cpu.idle_percent: the patient waits, the emulated cameras (OpenCV reading their video files) "
            "and peripheral emulators run; per_video_stream_percent is at the frame rate reached (steady)",
            "booth_cpu.call_percent includes audio, the doctor's media decoded by the booth, SRTP and the data channel",
            "glass_to_glass stamps are the camera read time (wall clock) drawn into the room camera's frames",
        ],
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consultation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=CALLS, help="calls for the setup time (default %(default)s)")
    parser.add_argument("--frames", type=int, default=FRAMES, help="stamped frames read (default %(default)s)")
    parser.add_argument("--steady-seconds", type=float, default=STEADY_SECONDS, help="(default %(default)s)")
    parser.add_argument("--reads", type=int, default=READS, help="thermometer reads (default %(default)s)")
    parser.add_argument("--selects", type=int, default=SELECTS, help="camera selections (default %(default)s)")
    parser.add_argument("--video-size", default=VIDEO_SIZE, help="booth video size WxH (default %(default)s)")
    parser.add_argument("--fps", type=float, default=FPS, help="booth camera rate (default %(default)s)")
    args = parser.parse_args(argv)
    report = run(
        calls=args.calls,
        frames=args.frames,
        steady_seconds=args.steady_seconds,
        reads=args.reads,
        selects=args.selects,
        video_size=args.video_size,
        fps=args.fps,
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
