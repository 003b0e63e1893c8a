"""Card: virtual Carte Vitale inserted to identity available, through a real pcscd.

A private pcscd runs the vpcd driver; a virtual card (the project's vpcd
client, a family card with three synthetic beneficiaries) is inserted and
removed repeatedly. The time runs from the virtual card's connection to vpcd
(the insertion as pcscd sees it) to the identity read through pyscard. pcscd
polls vpcd for card presence (about every 400 ms), which bounds the figure.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path
from typing import Any

from bench.stats import summary_ms
from kiosk.identity.pcsc import CardRemoved, PcscMonitor, read_card
from kiosk.identity.virtual import pcscd
from kiosk.identity.virtual.cards import make_card
from kiosk.identity.virtual.vpcd import VirtualCardRunner

INSERTIONS = 30


async def _measure(daemon: pcscd.PrivatePcscd) -> dict[str, Any]:
    jitter = random.Random(7)
    totals: list[float] = []
    reads: list[float] = []
    async with PcscMonitor() as monitor:
        for _ in range(INSERTIONS):
            card = VirtualCardRunner(make_card("family"), port=daemon.port)
            pending = asyncio.create_task(read_card(monitor, timeout=10))
            # Insert at a random phase of pcscd's presence poll, as a patient
            # would, rather than in step with it.
            await asyncio.sleep(jitter.uniform(0.05, 0.45))
            await card.insert()
            result = await pending
            assert card.inserted_at is not None
            assert len(result.identity.beneficiaries) == 3
            totals.append(result.identity_at - card.inserted_at)
            reads.append(result.identity_at - result.inserted_at)
            removals = monitor.subscribe()
            await card.remove()
            # Let pcscd see the removal before the next insertion.
            async with asyncio.timeout(5):
                while not isinstance(await removals.get(), CardRemoved):
                    pass
            monitor.unsubscribe(removals)
    return {
        "insertion_to_identity": summary_ms(totals),
        "pcscd_card_event_to_identity": summary_ms(reads),
    }


def run() -> dict[str, Any]:
    missing = pcscd.available()
    if missing:
        return {"skipped": missing}
    with tempfile.TemporaryDirectory() as tmp, pcscd.private_pcscd(Path(tmp)) as daemon:
        return asyncio.run(_measure(daemon))
