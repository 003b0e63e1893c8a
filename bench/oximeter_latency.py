"""Oximeter: byte written on the pty to reading event at the caller.

A legacy-firmware frame (PROTOCOLS.md: 5 bytes, sync bit on byte 0) is written
on the master side of a real pseudo-terminal at the device's own pace, 60 a
second; the plethysmogram sample carries a sequence number so each reading is
matched to the write that caused it. The driver is the production one
(`devices.oximeter.Oximeter`) reading the slave through pyserial.
"""

from __future__ import annotations

import asyncio
import os
import time
import tty
from typing import Any

from bench.stats import summary_ms
from devices.events import Reading
from devices.oximeter import Oximeter

FRAMES = 600
INTERVAL = 1 / 60


def legacy_frame(pleth: int) -> bytes:
    # strength 5, bar graph 5, pulse 70 bpm, SpO2 97 %.
    return bytes([0x80 | 5, pleth & 0x7F, 5, 70, 97])


async def _measure() -> dict[str, Any]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    driver = Oximeter(path, generation="legacy")
    to_event: list[float] = []
    to_arrival: list[float] = []
    written: dict[int, float] = {}
    done = asyncio.Event()

    async def consume() -> None:
        async for event in driver.events():
            if isinstance(event, Reading) and event.kind == "pleth" and event.value is not None:
                now = time.monotonic()
                sent = written.pop(int(event.value), None)
                if sent is not None:
                    to_event.append(now - sent)
                    to_arrival.append(event.time - sent)
                if len(to_event) >= FRAMES:
                    done.set()
                    return

    consumer = asyncio.create_task(consume())
    async with driver:
        await driver.wait_connected(5)
        for index in range(FRAMES + 20):
            sequence = index % 128
            written[sequence] = time.monotonic()
            os.write(master, legacy_frame(sequence))
            await asyncio.sleep(INTERVAL)
            if done.is_set():
                break
        await asyncio.wait_for(done.wait(), 5)
    consumer.cancel()
    os.close(master)
    os.close(slave)
    return {
        "write_to_event": summary_ms(to_event),
        "write_to_port_read": summary_ms(to_arrival),
        "frames_per_second": 60,
    }


def run() -> dict[str, Any]:
    return asyncio.run(_measure())
