"""Parser throughput per protocol, in frames per second.

Each capture is what the device would put on the wire: the oximeter captures
come from the firmware emulators run on simulated time (so the plethysmogram
and flags vary as on a real stream), the NIBP capture is a measurement cycle's
mix of acknowledgements, cuff pressures and data blocks, the thermometer's a
run of replies. The parser is fed 4 KiB at a time, as a port delivers bytes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from devices.errors import RemoteProtocolError
from devices.protocols import NEED_DATA, contec, contec_legacy, lu90614, suntech
from devices.simulators.base import Firmware
from devices.simulators.oximeter import LegacyOximeterFirmware, OximeterFirmware

REPEATS = 5
CHUNK = 4096


def _stream(firmware: Firmware, seconds: float, *, start: bytes = b"", keep_alive: bytes = b"") -> bytes:
    out = bytearray()
    now = 0.0
    if start:
        firmware.receive_data(start, now)
    next_keep_alive = 1.0
    while now < seconds:
        when = firmware.get_timer()
        if when is None:
            break
        now = max(now, when)
        firmware.handle_timer(now)
        out += firmware.data_to_send()
        if keep_alive and now >= next_keep_alive:
            firmware.receive_data(keep_alive, now)
            next_keep_alive = now + 1.0
    return bytes(out)


def _nibp_capture(cycles: int) -> bytes:
    out = bytearray()
    for cycle in range(cycles):
        out += suntech.ack_frame("O")
        for mmhg in (*range(0, 170, 5), *range(170, 0, -4)):
            out += suntech.cuff_pressure_frame(mmhg)
        out += suntech.bp_data_frame(systolic=118 + cycle % 7, diastolic=78, mean=91, pulse=70, status=1)
        out += suntech.ack_frame("K")
    return bytes(out)


def captures() -> dict[str, tuple[Any, bytes]]:
    legacy = _stream(LegacyOximeterFirmware("normal"), 600)
    current = _stream(OximeterFirmware("normal"), 600, start=contec.START_LIVE, keep_alive=contec.KEEP_ALIVE)
    thermo = b"".join(lu90614.reply_frame(36.0 + (i % 150) / 100) for i in range(20000))
    return {
        "contec-cms50-legacy": (contec_legacy.LegacyOximeterParser, legacy),
        "contec-cms50": (contec.OximeterParser, current),
        "suntech-nibp": (suntech.NibpParser, _nibp_capture(300)),
        "lu90614": (lu90614.ThermometerParser, thermo),
    }


def _parse_all(parser_class: Any, data: bytes) -> tuple[int, int]:
    parser = parser_class()
    frames = errors = 0
    for start in range(0, len(data), CHUNK):
        parser.receive_data(data[start : start + CHUNK])
        while True:
            try:
                event = parser.next_event()
            except RemoteProtocolError:
                errors += 1
                continue
            if event is NEED_DATA:
                break
            frames += 1
    return frames, errors


def run() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, (parser_class, data) in captures().items():
        rates = []
        frames = errors = 0
        for _ in range(REPEATS):
            started = time.perf_counter()
            frames, errors = _parse_all(parser_class, data)
            rates.append(frames / (time.perf_counter() - started))
        results[name] = {
            "frames": frames,
            "bytes": len(data),
            "protocol_errors": errors,
            "frames_per_second_median": round(statistics.median(rates)),
            "frames_per_second_best": round(max(rates)),
        }
    return results
