"""``kiosk-devices``: the peripherals from the command line.

The interface is stable: tests, benchmarks and checks outside the project use
it. Every subcommand that reports prints JSON; errors are one line on stderr
and a non-zero exit status, never a traceback.

    kiosk-devices simulate KIND [--scenario NAME] [--link PATH]
    kiosk-devices read KIND --port PATH [--json]
    kiosk-devices watch KIND --port PATH
    kiosk-devices decode PROTOCOL FILE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from devices.errors import DeviceError, DeviceTimeout, RemoteProtocolError
from devices.events import DeviceEvent, Reading, StateChanged
from devices.protocols import NEED_DATA
from devices.simulators.base import UnknownScenario

EXIT_OK = 0
EXIT_DEVICE = 1
EXIT_USAGE = 2
CONNECT_TIMEOUT = 5.0
"""Seconds ``read`` waits for the port to appear before giving up."""


class Parser(Protocol):
    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> object: ...


@dataclass(frozen=True)
class ProtocolEntry:
    module: str
    parser: str


PROTOCOLS: dict[str, ProtocolEntry] = {
    "contec-cms50-legacy": ProtocolEntry("devices.protocols.contec_legacy", "LegacyOximeterParser"),
    "contec-cms50": ProtocolEntry("devices.protocols.contec", "OximeterParser"),
    "suntech-nibp": ProtocolEntry("devices.protocols.suntech", "NibpParser"),
    "lu90614": ProtocolEntry("devices.protocols.lu90614", "ThermometerParser"),
}
"""Protocol names accepted by ``decode``, as a technician names a capture."""

SERIAL_FIRMWARES: dict[str, tuple[str, str]] = {
    "oximeter": ("devices.simulators.oximeter", "OximeterFirmware"),
    "oximeter-legacy": ("devices.simulators.oximeter", "LegacyOximeterFirmware"),
    "nibp": ("devices.simulators.nibp", "NibpFirmware"),
    "thermometer": ("devices.simulators.thermometer", "ThermometerFirmware"),
}
CAMERA_KINDS = ("otoscope", "dermatoscope", "booth-camera")
SIMULATED_KINDS = (*SERIAL_FIRMWARES, *CAMERA_KINDS, "stethoscope")
DRIVER_KINDS = ("oximeter", "oximeter-legacy", "nibp", "thermometer", *CAMERA_KINDS, "stethoscope")


class UsageError(Exception):
    """The command line asks for something that does not exist."""


# -- output ----------------------------------------------------------------
def _json_value(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def reading_to_json(reading: Reading) -> dict[str, object]:
    return {
        "kind": reading.kind,
        "value": _json_value(reading.value),
        "unit": reading.unit,
        "time": round(reading.time, 6),
        "quality": sorted(flag.value for flag in reading.quality),
    }


def event_to_json(event: DeviceEvent) -> dict[str, object]:
    if isinstance(event, Reading):
        return reading_to_json(event)
    assert isinstance(event, StateChanged)
    line: dict[str, object] = {"state": event.new.value, "device": event.device, "time": round(event.time, 6)}
    if event.error is not None:
        line["error"] = event.error.reason.value
        line["message"] = event.error.message
    return line


def _print_json(payload: object, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(payload, separators=(",", ":")) + "\n")
    out.flush()


# -- decode ----------------------------------------------------------------
def decode(protocol: str, data: bytes, out: TextIO, err: TextIO, chunk: int = 4096) -> tuple[int, int]:
    """Decode a raw capture into JSON lines; return (frames, skipped bytes)."""
    entry = PROTOCOLS.get(protocol)
    if entry is None:
        raise UsageError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    module = importlib.import_module(entry.module)
    parser: Parser = getattr(module, entry.parser)()
    to_json: Callable[[object], dict[str, object]] = module.to_json
    frames = skipped = 0
    # Feeding in chunks exercises the parser as a port would, frames split
    # anywhere, and keeps memory flat on long captures.
    for start in range(0, max(len(data), 1), chunk):
        parser.receive_data(data[start : start + chunk])
        while True:
            try:
                event = parser.next_event()
            except RemoteProtocolError as exc:
                dropped = getattr(exc, "skipped", b"")
                skipped += len(dropped)
                err.write(f"skipped {len(dropped)} byte(s): {exc.message}\n")
                continue
            if event is NEED_DATA:
                break
            frames += 1
            out.write(json.dumps({k: _json_value(v) for k, v in to_json(event).items()}) + "\n")
    out.flush()
    return frames, skipped


# -- simulate --------------------------------------------------------------
async def _simulate(kind: str, scenario: str | None, link: str | None, seed: int, speed: float) -> None:
    from devices.simulators.base import PtyRunner, split_scenario

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    if kind in SERIAL_FIRMWARES:
        module_name, class_name = SERIAL_FIRMWARES[kind]
        firmware_class = getattr(importlib.import_module(module_name), class_name)
        firmware_scenario, fault = split_scenario(scenario, firmware_class.scenarios)

        def factory() -> Any:
            if kind == "nibp":
                return firmware_class(firmware_scenario, seed=seed, speed=speed)
            return firmware_class(firmware_scenario, seed=seed)

        # Fail on a bad scenario before printing a port.
        factory()
        runner = PtyRunner(factory, link=link, fault=fault, seed=seed)
        port = runner.plug()
        print(port, flush=True)
        try:
            await stop.wait()
        finally:
            runner.close()
        return

    path = await asyncio.to_thread(_write_media, kind, scenario, link)
    print(path, flush=True)
    try:
        await stop.wait()
    finally:
        # Like a serial emulator's link, the medium goes when the emulator stops.
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()


def _write_media(kind: str, scenario: str | None, link: str | None) -> str:
    if kind == "stethoscope":
        from devices.simulators.stethoscope import write_heart_sounds

        bpm = {"tachycardia": 130, None: 72, "normal": 72, "hypertension": 80}.get(scenario)
        if bpm is None:
            raise UsageError("stethoscope scenarios: normal, hypertension, tachycardia")
        path = link or _temp_path("kiosk-stethoscope-", ".wav")
        write_heart_sounds(path, bpm=bpm, seconds=6)
        return path
    from devices.simulators.camera import write_synthetic_video

    if scenario not in (None, "normal"):
        raise UsageError(f"{kind} scenarios: normal")
    video_kind: Literal["otoscope", "dermatoscope", "room"] = (
        "room" if kind == "booth-camera" else "dermatoscope" if kind == "dermatoscope" else "otoscope"
    )
    path = link or _temp_path(f"kiosk-{kind}-", ".avi")
    write_synthetic_video(path, kind=video_kind)
    return path


def _temp_path(prefix: str, suffix: str) -> str:
    handle, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    os.close(handle)
    return path


# -- read and watch --------------------------------------------------------
def _serial_driver(kind: str, port: str, protocol: str | None) -> Any:
    if kind in ("oximeter", "oximeter-legacy"):
        from devices.oximeter import Oximeter

        generation = {
            None: "legacy" if kind == "oximeter-legacy" else "auto",
            "contec-cms50": "current",
            "contec-cms50-legacy": "legacy",
            "auto": "auto",
        }.get(protocol)
        if generation is None:
            raise UsageError("oximeter protocol: contec-cms50, contec-cms50-legacy or auto")
        return Oximeter(port, generation=generation)  # type: ignore[arg-type]
    if kind == "nibp":
        from devices.nibp import BloodPressureMonitor

        return BloodPressureMonitor(port)
    if kind == "thermometer":
        from devices.thermometer import Thermometer

        return Thermometer(port)
    raise UsageError(f"unknown serial device {kind!r}")


async def _read(kind: str, port: str, protocol: str | None, as_json: bool, timeout: float) -> dict[str, object]:
    if kind in CAMERA_KINDS:
        return await _read_camera(kind, port, timeout)
    if kind == "stethoscope":
        return await _read_stethoscope(port, timeout)
    driver = _serial_driver(kind, port, protocol)
    async with driver:
        await _connect(driver, timeout)
        if kind.startswith("oximeter"):
            spo2, pulse = await driver.read_once(timeout=timeout)
            return {"spo2": spo2.value, "pulse": pulse.value, "unit_spo2": spo2.unit, "unit_pulse": pulse.unit}
        if kind == "nibp":
            progress = asyncio.create_task(_print_progress(driver, as_json))
            try:
                result = await driver.measure()
            finally:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress
            return {
                "systolic": result.systolic.value,
                "diastolic": result.diastolic.value,
                "mean": result.mean.value,
                "pulse": result.pulse.value,
            }
        reading = await driver.read(timeout=min(timeout, 5.0))
        return {"celsius": reading.value, "quality": sorted(flag.value for flag in reading.quality)}


async def _connect(driver: Any, timeout: float) -> None:
    """Wait for the port; a port that is not there is reported as such, quickly."""
    try:
        await driver.wait_connected(min(timeout, CONNECT_TIMEOUT))
    except TimeoutError:
        raise driver.last_error or DeviceTimeout(f"{driver.name} did not connect") from None


async def _print_progress(driver: Any, as_json: bool) -> None:
    shown = False
    try:
        async for event in driver.events():
            if isinstance(event, Reading) and event.kind == "cuff_pressure":
                if as_json:
                    _print_json({"cuff_pressure": event.value}, sys.stderr)
                else:
                    sys.stderr.write(f"\rcuff {event.value:5.0f} mmHg")
                    sys.stderr.flush()
                    shown = True
    finally:
        if shown:
            # End the live line so what follows (result or error) starts clean.
            sys.stderr.write("\n")


async def _read_camera(kind: str, port: str, timeout: float) -> dict[str, object]:
    from devices.camera import UvcCamera

    camera = UvcCamera(port, name=kind)
    await camera.start()
    try:
        async with asyncio.timeout(timeout):
            await camera.wait_connected()
            still = await camera.capture_still()
    finally:
        await camera.stop()
    out = Path(tempfile.mkdtemp(prefix="kiosk-still-")) / f"{kind}.png"
    out.write_bytes(still.encode_png())
    return {"width": still.width, "height": still.height, "path": str(out)}


async def _read_stethoscope(port: str, timeout: float) -> dict[str, object]:
    from devices.stethoscope import Stethoscope

    source = Stethoscope(port)
    await source.start()
    samples = 0
    rate = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in source.frames():
                samples += len(chunk.samples)
                rate = chunk.sample_rate
                if samples >= rate:  # one second of sound
                    break
    finally:
        await source.stop()
    return {"sample_rate": rate, "samples": samples}


async def _watch(kind: str, port: str, protocol: str | None, count: int | None, seconds: float | None) -> None:
    if kind in (*CAMERA_KINDS, "stethoscope"):
        raise UsageError("watch streams serial peripherals; use read for cameras and the stethoscope")
    driver = _serial_driver(kind, port, protocol)
    printed = 0
    async with driver:
        try:
            async with asyncio.timeout(seconds):
                async for event in driver.events():
                    _print_json(event_to_json(event))
                    printed += 1
                    if count is not None and printed >= count:
                        return
        except TimeoutError:
            return


# -- entry point -----------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk-devices", description="The booth's peripherals.")
    sub = parser.add_subparsers(dest="command", required=True)

    simulate = sub.add_parser("simulate", help="run a firmware emulator and print the port it serves")
    simulate.add_argument("kind", choices=SIMULATED_KINDS)
    simulate.add_argument("--scenario", default=None)
    simulate.add_argument("--link", default=None, help="keep a symlink at PATH pointing to the port")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--speed", type=float, default=1.0, help="NIBP cycle speed-up factor")

    read = sub.add_parser("read", help="take one measurement with the real driver")
    read.add_argument("kind", choices=DRIVER_KINDS)
    read.add_argument("--port", required=True)
    read.add_argument("--protocol", default=None)
    read.add_argument("--json", action="store_true")
    read.add_argument("--timeout", type=float, default=180.0)

    watch = sub.add_parser("watch", help="stream readings as JSON lines")
    watch.add_argument("kind", choices=DRIVER_KINDS)
    watch.add_argument("--port", required=True)
    watch.add_argument("--protocol", default=None)
    watch.add_argument("--count", type=int, default=None, help="stop after N lines")
    watch.add_argument("--seconds", type=float, default=None, help="stop after S seconds")

    dec = sub.add_parser("decode", help="decode a raw byte capture into JSON lines")
    dec.add_argument("protocol", choices=sorted(PROTOCOLS))
    dec.add_argument("file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "decode":
            data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
            decode(args.protocol, data, sys.stdout, sys.stderr)
        elif args.command == "simulate":
            asyncio.run(_simulate(args.kind, args.scenario, args.link, args.seed, args.speed))
        elif args.command == "read":
            result = asyncio.run(_read(args.kind, args.port, args.protocol, args.json, args.timeout))
            if args.json:
                _print_json(result)
            else:
                print("  ".join(f"{key}={value}" for key, value in result.items()))
        elif args.command == "watch":
            asyncio.run(_watch(args.kind, args.port, args.protocol, args.count, args.seconds))
    except (UsageError, UnknownScenario) as exc:
        print(f"kiosk-devices: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeviceError as exc:
        print(f"kiosk-devices: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return EXIT_DEVICE
    except TimeoutError:
        print("kiosk-devices: no answer from the device in time", file=sys.stderr)
        return EXIT_DEVICE
    except OSError as exc:
        print(f"kiosk-devices: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_DEVICE
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
