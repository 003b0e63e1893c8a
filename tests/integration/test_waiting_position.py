"""Waiting booths hear their place and an honest estimated wait from a real hub; the link's ups and downs too.

Two production booth sessions (booth-0001 on emulated peripherals, booth-0002
with only the test pattern tracks: it never gets a call) and the scripted
aiortc doctor of tests/support_doctor.py, through a real hub over mutual TLS.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from hub import pki
from hub.app import RunningHub, StatePaths
from hub.waiting_room import CLOSE_REPLACED
from kiosk.session.binding import FleetTrust, IdentityKey
from kiosk.session.consultation import (
    BoothCredentials,
    BoothMedia,
    BoothSession,
    LinkEvent,
    SessionEvent,
    SessionState,
    WaitingEvent,
    WaitingPatient,
)
from kiosk.session.emulated import EmulatedBooth
from kiosk.session.hub_link import HubEndpoint
from kiosk.session.peripherals import Peripherals
from tests.integration import test_consultation as support
from tests.integration.test_consultation import Credentials, Recorder, booth_session, scripted_doctor
from tests.support_doctor import TIMEOUT

# The hub and booth fixtures live with the consultation tests; pytest finds fixtures by module attribute.
template = support.template
media_dir = support.media_dir
hub = support.hub
equipment = support.equipment

pytestmark = pytest.mark.timeout(120)


def second_booth(running: RunningHub, creds: Credentials) -> tuple[BoothSession, Recorder]:
    """booth-0002: certified by the fleet CA now, no peripherals, test-pattern media."""
    paths = StatePaths(creds.root)
    fleet = pki.load_issuer(paths.fleet_ca, paths.fleet_ca_key)
    key = pki.new_key()
    now = datetime.datetime.now(datetime.UTC)
    pki.save_certificate(
        paths.booth_cert("booth-0002"), pki.issue_booth_certificate(fleet, key.public_key(), "booth-0002", now=now)
    )
    pki.save_key(paths.booth_key("booth-0002"), key)
    loaded = load_pem_private_key(paths.booth_key("booth-0002").read_bytes(), password=None)
    assert isinstance(loaded, IdentityKey)
    session = BoothSession(
        hub=HubEndpoint(
            f"wss://localhost:{running.booth_port}/ws",
            paths.fleet_ca,
            paths.booth_cert("booth-0002"),
            paths.booth_key("booth-0002"),
        ),
        credentials=BoothCredentials(
            "booth-0002", paths.booth_cert("booth-0002").read_text(), loaded, FleetTrust(paths.fleet_ca.read_bytes())
        ),
        media=BoothMedia(VideoStreamTrack(), VideoStreamTrack(), AudioStreamTrack(), AudioStreamTrack()),
        peripherals=Peripherals(),
    )
    recorder = Recorder()
    session.add_listener(recorder)
    return session, recorder


class Heard:
    """The events a recorder got since the last look."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.seen = 0

    async def next(self, kind: type, where: Callable[[Any], bool] = lambda _: True) -> SessionEvent:
        """The first event of ``kind`` after the last one returned."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                for index in range(self.seen, len(self.recorder.events)):
                    event = self.recorder.events[index]
                    if isinstance(event, kind) and where(event):
                        self.seen = index + 1
                        return event
                self.recorder.changed.clear()
                await self.recorder.changed.wait()

    def since(self, kind: type) -> list[SessionEvent]:
        return [e for e in self.recorder.events[self.seen :] if isinstance(e, kind)]


PATIENT_B = WaitingPatient("Bertille", 81, "Vertiges")


async def test_waiting_booths_hear_their_place_and_an_honest_estimate(
    hub: tuple[RunningHub, Credentials], equipment: EmulatedBooth
) -> None:
    running, creds = hub
    a, recorder_a = booth_session(running, creds, equipment)
    b, recorder_b = second_booth(running, creds)
    heard_a, heard_b = Heard(recorder_a), Heard(recorder_b)
    doctor = scripted_doctor(running, creds)
    try:
        for session, heard in ((a, heard_a), (b, heard_b)):
            await session.start()
            await session.link.wait_connected(TIMEOUT)
            assert await heard.next(LinkEvent) == LinkEvent(True)

        # In order of arrival; no doctor yet, so no estimate.
        await a.announce(support.PATIENT)
        assert await heard_a.next(WaitingEvent) == WaitingEvent(1, None)
        await b.announce(PATIENT_B)
        assert await heard_b.next(WaitingEvent) == WaitingEvent(2, None)
        # The first one leaves: the second moves up; back in, the first is now behind it.
        await a.withdraw()
        assert await heard_b.next(WaitingEvent) == WaitingEvent(1, None)
        await a.announce(support.PATIENT)
        assert await heard_a.next(WaitingEvent) == WaitingEvent(2, None)

        # A doctor, but no consultation has finished yet: still no honest estimate. The doctor takes booth-0001.
        await doctor.login(creds.username, creds.password, creds.secret)
        await doctor.accept(await doctor.wait_entry("booth-0001"))
        await doctor.wait_connected()
        await recorder_a.wait_state(SessionState.IN_CALL)
        # booth-0002 leaves and comes back during the call: it hears its place, booth-0001 hears nothing.
        await b.withdraw()
        await b.announce(PATIENT_B)
        assert await heard_b.next(WaitingEvent) == WaitingEvent(1, None)
        assert heard_a.since(WaitingEvent) == []

        # Once the call has ended, with the doctor still there: the doctor is free now, and the next
        # patient after booth-0002 waits about one consultation as long as that one (a few seconds: 1 minute).
        await doctor.hang_up()
        await recorder_a.wait_state(SessionState.ENDED)
        assert await heard_b.next(WaitingEvent) == WaitingEvent(1, 0)
        assert len(running.room.history) == 1 and 0 < running.room.history[0] < 60
        await a.announce(support.PATIENT)
        assert await heard_a.next(WaitingEvent) == WaitingEvent(2, 1)

        # booth-0002's connection drops: the link goes down and up again, the patient is announced again
        # (at the back of the queue), and booth-0001 moves up.
        running.room.booths["booth-0002"].endpoint.close(CLOSE_REPLACED, "test: drop")
        assert await heard_b.next(LinkEvent) == LinkEvent(False)
        assert await heard_a.next(WaitingEvent) == WaitingEvent(1, 0)
        assert await heard_b.next(LinkEvent) == LinkEvent(True)
        assert await heard_b.next(WaitingEvent) == WaitingEvent(2, 1)
    finally:
        await doctor.close()
        await a.close()
        await b.close()
    assert recorder_b.events[-1] == LinkEvent(False)
