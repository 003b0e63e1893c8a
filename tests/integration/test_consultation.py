"""A whole consultation through a real hub (TLS 1.3, mutual TLS), emulated peripherals and aiortc on both ends.

The booth runs the production session service (kiosk.session.consultation)
on emulated hardware; the doctor is the scripted Python doctor of
tests/support_doctor.py, which follows the console's contract. The browser
console itself is exercised by tests/browser/.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import hashlib
import re
import shutil
import ssl
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from hub import pki
from hub.app import RunningHub, StatePaths, init_dev_state, start
from hub.config import HubConfig
from hub.messages import Message
from kiosk.session.binding import FleetTrust, IdentityKey, sign_fingerprint
from kiosk.session.consultation import (
    BoothCredentials,
    BoothSession,
    ChatEvent,
    FileEvent,
    MeasurementEvent,
    SessionEvent,
    SessionState,
    StateEvent,
    VerifiedEvent,
    WaitingPatient,
)
from kiosk.session.emulated import EmulatedBooth, EmulationSettings, emulated_booth
from kiosk.session.hub_link import HubEndpoint
from kiosk.session.peer import PINNED_SRTP_PROFILE_NAME, PeerState, only_sha256_fingerprints
from tests.support_doctor import TIMEOUT, ScriptedDoctor

pytestmark = pytest.mark.timeout(180)

PATIENT = WaitingPatient("Synthia", 67, "Toux depuis 3 jours")
SETTINGS = EmulationSettings(stream_size=(320, 180), still_size=(1280, 720), fps=15, nibp_speed=6.0)


@dataclass
class Credentials:
    root: Path
    username: str
    password: str
    secret: str


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    root = tmp_path_factory.mktemp("consult") / "state"
    created = init_dev_state(root)
    return Credentials(root, created["username"], created["password"], created["totp_secret"])


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("booth-work")


@pytest.fixture
async def hub(template: Credentials, tmp_path: Path) -> AsyncIterator[tuple[RunningHub, Credentials]]:
    root = tmp_path / "hub"
    shutil.copytree(template.root, root)
    running = await start(HubConfig(state=root, port=0, booth_port=0))
    try:
        yield running, Credentials(root, template.username, template.password, template.secret)
    finally:
        await running.stop()


@pytest.fixture
async def equipment(media_dir: Path, tmp_path: Path) -> AsyncIterator[EmulatedBooth]:
    work = tmp_path / "booth"
    shutil.copytree(media_dir, work, dirs_exist_ok=True)
    async with emulated_booth(work, SETTINGS) as booth:
        # Media files are generated once per module and shared.
        shutil.copytree(work / "media", media_dir / "media", dirs_exist_ok=True)
        yield booth


class Recorder:
    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self.changed = asyncio.Event()

    def __call__(self, event: SessionEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(
        self, kind: type, timeout: float = TIMEOUT, where: Callable[[Any], bool] = lambda _: True
    ) -> SessionEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if isinstance(event, kind) and where(event):
                        return event
                self.changed.clear()
                await self.changed.wait()

    async def wait_state(self, state: SessionState, timeout: float = TIMEOUT) -> StateEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if isinstance(event, StateEvent) and event.state is state:
                        return event
                self.changed.clear()
                await self.changed.wait()


def measurements(recorder: Recorder, name: str) -> list[dict[str, float]]:
    return [dict(e.values) for e in recorder.events if isinstance(e, MeasurementEvent) and e.name == name]


def booth_session(running: RunningHub, creds: Credentials, booth: EmulatedBooth) -> tuple[BoothSession, Recorder]:
    paths = StatePaths(creds.root)
    key = load_pem_private_key(paths.booth_key("booth-0001").read_bytes(), password=None)
    assert isinstance(key, IdentityKey)
    session = BoothSession(
        hub=HubEndpoint(
            f"wss://localhost:{running.booth_port}/ws",
            paths.fleet_ca,
            paths.booth_cert("booth-0001"),
            paths.booth_key("booth-0001"),
        ),
        credentials=BoothCredentials(
            "booth-0001", paths.booth_cert("booth-0001").read_text(), key, FleetTrust(paths.fleet_ca.read_bytes())
        ),
        media=booth.media,
        peripherals=booth.peripherals,
    )
    recorder = Recorder()
    session.add_listener(recorder)
    return session, recorder


def scripted_doctor(running: RunningHub, creds: Credentials) -> ScriptedDoctor:
    paths = StatePaths(creds.root)
    context = ssl.create_default_context(cafile=str(paths.fleet_ca))
    return ScriptedDoctor(f"https://127.0.0.1:{running.doctor_port}", context, FleetTrust(paths.fleet_ca.read_bytes()))


async def start_call(session: BoothSession, recorder: Recorder, doctor: ScriptedDoctor, creds: Credentials) -> None:
    await session.start()
    await session.link.wait_connected(TIMEOUT)
    await doctor.login(creds.username, creds.password, creds.secret)
    await session.announce(PATIENT)
    entry = await doctor.wait_entry("booth-0001")
    await doctor.accept(entry)
    await doctor.wait_connected()
    await recorder.wait_state(SessionState.IN_CALL)


async def test_whole_consultation(hub: tuple[RunningHub, Credentials], equipment: EmulatedBooth) -> None:
    running, creds = hub
    session, recorder = booth_session(running, creds, equipment)
    doctor = scripted_doctor(running, creds)
    try:
        await start_call(session, recorder, doctor, creds)

        # The same short authentication string on both ends, and the pinned SRTP profile.
        verified = await recorder.wait_for(VerifiedEvent)
        assert isinstance(verified, VerifiedEvent)
        assert doctor.sas == verified.sas
        assert verified.doctor_account == creds.username
        call = session.call
        assert call is not None
        assert call.peer.srtp_profile == PINNED_SRTP_PROFILE_NAME
        assert doctor.transport_profile() == PINNED_SRTP_PROFILE_NAME

        # Peripheral status comes unasked.
        async with asyncio.timeout(TIMEOUT):
            while len(doctor.statuses) < 3:
                await asyncio.sleep(0.05)
        assert doctor.statuses["nibp"] == doctor.statuses["thermometer"] == "connected"
        assert doctor.statuses["oximeter"] in ("connected", "measuring")

        # Oximeter stream with a plethysmogram.
        streaming = asyncio.get_running_loop().time()
        log = await doctor.run_command("oximeter.start")
        assert log.ack is not None and log.ack.ok
        async with asyncio.timeout(TIMEOUT):
            while sum(len(r.pleth) for r in doctor.readings) < 120 or doctor.readings[-1].spo2 is None:
                await asyncio.sleep(0.05)
        last = doctor.readings[-1]
        assert last.spo2 is not None and 90 <= last.spo2 <= 100
        assert last.pulse is not None and 40 <= last.pulse <= 140
        await doctor.run_command("oximeter.stop")
        streaming = asyncio.get_running_loop().time() - streaming
        await asyncio.sleep(0.3)
        count = len(doctor.readings)
        await asyncio.sleep(0.5)
        assert len(doctor.readings) <= count + 1, "the stream goes on after oximeter.stop"
        # The patient's screen sees the values the doctor got, at most twice a second.
        shown = measurements(recorder, "oximeter")
        assert shown and len(shown) <= streaming / 0.5 + 1
        sent = {(r.spo2, r.pulse) for r in doctor.readings}
        assert all(set(values) == {"spo2", "pulse"} and (values["spo2"], values["pulse"]) in sent for values in shown)

        # Blood pressure: live cuff pressure, then the result.
        log = await doctor.run_command("bp.start", timeout=60)
        assert log.ack is not None and log.ack.ok
        assert log.progress and max(log.progress) > 100
        assert log.result is not None and log.result.readings is not None
        values = {m.kind: m.value for m in log.result.readings}
        assert set(values) == {"systolic", "diastolic", "mean", "pulse"}
        assert values["systolic"] is not None and values["diastolic"] is not None
        assert values["systolic"] > values["diastolic"]
        assert [values["pressure"] for values in measurements(recorder, "cuff")] == log.progress
        assert measurements(recorder, "blood_pressure") == [{k: values[k] for k in ("systolic", "diastolic", "pulse")}]

        # Temperature.
        log = await doctor.run_command("thermometer.read")
        assert log.result is not None and log.result.readings is not None
        (temperature,) = log.result.readings
        assert temperature.kind == "celsius" and temperature.value is not None and 35 < temperature.value < 39
        assert measurements(recorder, "temperature") == [{"celsius": temperature.value}]

        # Camera switch, then a full-resolution still, which arrives as a verified file.
        log = await doctor.run_command("camera.select", camera="dermatoscope")
        assert log.ack is not None and log.ack.ok
        assert equipment.peripherals.selected_camera == "dermatoscope"
        log = await doctor.run_command("camera.still")
        assert log.result is not None and log.result.still is not None
        assert log.result.still.camera == "dermatoscope"
        transfer = log.result.still.transfer
        async with asyncio.timeout(TIMEOUT):
            while transfer not in doctor.files:
                await asyncio.sleep(0.05)
        image = cv2.imdecode(np.frombuffer(doctor.files[transfer].data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (SETTINGS.still_size[1], SETTINGS.still_size[0])

        # Stethoscope on and off.
        for name in ("stethoscope.start", "stethoscope.stop"):
            log = await doctor.run_command(name)
            assert log.ack is not None and log.ack.ok

        # Chat both ways.
        doctor.chat("Bonjour, je vous entends bien.")
        chat = await recorder.wait_for(ChatEvent)
        assert isinstance(chat, ChatEvent) and chat.text == "Bonjour, je vous entends bien." and chat.from_doctor
        await session.send_chat("Moi aussi.")
        async with asyncio.timeout(TIMEOUT):
            while "Moi aussi." not in doctor.chats:
                await asyncio.sleep(0.05)

        # A file each way, checked by SHA-256 at the receiver.
        document = b"%PDF-1.4 synthetic\n" + bytes(range(256)) * 700
        doctor.send_file(document, "ordonnance.pdf", "application/pdf", "t-doctor-1")
        received = await recorder.wait_for(FileEvent, where=lambda event: event.from_doctor)
        assert isinstance(received, FileEvent) and received.data == document and received.name == "ordonnance.pdf"
        photo = bytes(200_000)
        await session.send_file("photo.jpg", "image/jpeg", photo)
        async with asyncio.timeout(TIMEOUT):
            while not any(f.name == "photo.jpg" for f in doctor.files.values()):
                await asyncio.sleep(0.05)
        arrived = next(f for f in doctor.files.values() if f.name == "photo.jpg")
        assert hashlib.sha256(arrived.data).hexdigest() == hashlib.sha256(photo).hexdigest()

        # Hang up: the booth ends the call and forgets the peer.
        ended_call = weakref.ref(call)
        del call
        await doctor.hang_up()
        ended = await recorder.wait_state(SessionState.ENDED)
        assert ended.reason == "doctor-ended"
        assert session.call is None
        # ... all of it, while the session goes on to the next patient: no task of the session still holds
        # the ended call (its peer connection and queued frames), no peripheral subscription is left filling.
        await asyncio.sleep(0.2)
        gc.collect()
        assert ended_call() is None, [type(r).__name__ for r in gc.get_referrers(ended_call())]
        for driver in (equipment.peripherals.oximeter, equipment.peripherals.nibp, equipment.peripherals.thermometer):
            assert driver is not None and driver.subscriber_count == 0, driver.kind
    finally:
        await doctor.close()
        await session.close()


async def test_stop_from_the_booth_wins(hub: tuple[RunningHub, Credentials], equipment: EmulatedBooth) -> None:
    running, creds = hub
    session, recorder = booth_session(running, creds, equipment)
    doctor = scripted_doctor(running, creds)
    nibp = equipment.peripherals.nibp
    assert nibp is not None
    try:
        await start_call(session, recorder, doctor, creds)
        doctor.command("oximeter.start")
        ref = doctor.command("bp.start")
        async with asyncio.timeout(TIMEOUT):
            while not doctor.commands[ref].progress or max(doctor.commands[ref].progress) < 60:
                await asyncio.sleep(0.05)
        assert nibp.measuring
        await session.stop()
        assert not nibp.measuring, "the cuff must be released before stop() returns"
        async with asyncio.timeout(TIMEOUT):
            await doctor.commands[ref].done.wait()
            while doctor.stops == 0:
                await asyncio.sleep(0.05)
        assert doctor.protocol.open_commands == {}
        # No stream after the stop.
        await asyncio.sleep(0.3)
        count = len(doctor.readings)
        await asyncio.sleep(0.5)
        assert len(doctor.readings) == count
        # A command that crossed the stop on the wire is refused.
        log = await doctor.run_command("bp.start")
        assert log.ack is not None and not log.ack.ok and log.ack.reason == "stopped by the patient"
        assert not nibp.measuring
        assert session.state is SessionState.IN_CALL
        # The STOP ends measurements, not the peripherals' status relay to the doctor.
        call = session.call
        assert call is not None and not call.tasks["statuses"].done()
    finally:
        await doctor.close()
        await session.close()


async def test_patient_declining_refuses_the_cuff(
    hub: tuple[RunningHub, Credentials], equipment: EmulatedBooth
) -> None:
    running, creds = hub
    session, recorder = booth_session(running, creds, equipment)
    asked: list[str] = []

    async def decline(command: str) -> bool:
        asked.append(command)
        return False

    session.confirm = decline
    doctor = scripted_doctor(running, creds)
    try:
        await start_call(session, recorder, doctor, creds)
        log = await doctor.run_command("bp.start")
        assert asked == ["bp.start"]
        assert log.ack is not None and not log.ack.ok and log.ack.reason == "the patient declined"
        assert equipment.peripherals.nibp is not None and not equipment.peripherals.nibp.measuring
    finally:
        await doctor.close()
        await session.close()


class _Blackhole:
    """A datagram transport on a dead network: everything sent is lost; closing still closes the socket."""

    def __init__(self, real: asyncio.DatagramTransport) -> None:
        self.real = real

    def sendto(self, data: bytes, addr: object = None) -> None:
        pass

    def close(self) -> None:
        self.real.close()


async def test_network_drop_recovers_in_the_same_session(
    hub: tuple[RunningHub, Credentials], equipment: EmulatedBooth, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aioice.ice

    # ICE consent freshness (RFC 7675) notices the dead path; aioice's defaults take 30 s, a call tolerates 1.
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.3)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 3)
    running, creds = hub
    session, recorder = booth_session(running, creds, equipment)
    doctor = scripted_doctor(running, creds)
    try:
        await start_call(session, recorder, doctor, creds)
        call = session.call
        assert call is not None
        first_sas = doctor.sas
        pc = call.peer.connection
        assert pc is not None
        # The network dies under the booth: every packet it sends on this connection is lost.
        connection = pc.getTransceivers()[0].sender.transport.transport._connection
        for protocol in connection._protocols:
            protocol.transport = _Blackhole(protocol.transport)
        await recorder.wait_state(SessionState.RECONNECTING)
        async with asyncio.timeout(TIMEOUT):
            while call.peer.state is not PeerState.CONNECTED or session.state is not SessionState.IN_CALL:
                await asyncio.sleep(0.05)
        assert session.call is call, "recovery keeps the session"
        assert doctor.sas == first_sas
        await doctor.channel_open.wait()
        log = await doctor.run_command("thermometer.read")
        assert log.result is not None and log.result.readings is not None
    finally:
        await doctor.close()
        await session.close()


# -- a rogue hub ----------------------------------------------------------------------------------------
_FINGERPRINT_LINE = re.compile(r"a=fingerprint:sha-256 [0-9A-F:]+")


async def test_rogue_hub_swapping_the_doctor_fingerprint_is_refused(
    hub: tuple[RunningHub, Credentials], equipment: EmulatedBooth
) -> None:
    """The hub replaces the doctor's DTLS fingerprint by its own (to sit in the middle); it cannot re-sign it."""
    running, creds = hub
    room = running.room
    honest = room.from_doctor
    rogue_fingerprint = "sha-256 " + ":".join(["AB"] * 32)

    def swap(link: object, message: Message, now: float) -> None:
        if message.type == "signal" and message["payload"]["kind"] == "answer":
            sdp = _FINGERPRINT_LINE.sub(f"a=fingerprint:{rogue_fingerprint}", message["payload"]["sdp"])
            message = Message("signal", {"session": message["session"], "payload": {"kind": "answer", "sdp": sdp}})
        honest(link, message, now)  # type: ignore[arg-type]

    room.from_doctor = swap  # type: ignore[method-assign]
    session, recorder = booth_session(running, creds, equipment)
    doctor = scripted_doctor(running, creds)
    try:
        await session.start()
        await session.link.wait_connected(TIMEOUT)
        await doctor.login(creds.username, creds.password, creds.secret)
        await session.announce(PATIENT)
        await doctor.accept(await doctor.wait_entry("booth-0001"))
        refused = await recorder.wait_state(SessionState.REFUSED)
        assert "fingerprint" in refused.reason
        async with asyncio.timeout(TIMEOUT):
            await doctor.ended.wait()
        assert not any(isinstance(e, VerifiedEvent) for e in recorder.events), "no SAS for a refused call"
        assert session.call is None
        assert doctor.pc is not None and doctor.pc.connectionState != "connected"
    finally:
        await doctor.close()
        await session.close()


async def test_rogue_hub_with_its_own_doctor_key_gets_a_different_sas(
    hub: tuple[RunningHub, Credentials], equipment: EmulatedBooth
) -> None:
    """A hub that issues doctor certificates can pass the booth's check with a key of its own;
    the short authentication string is what catches it: the booth's and the doctor's differ."""
    running, creds = hub
    room = running.room
    honest = room.from_doctor
    paths = StatePaths(creds.root)
    doctor_ca = pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key)
    rogue_key = pki.new_key()
    now = datetime.datetime.now(datetime.UTC)
    rogue_cert = pki.issue_doctor_certificate(
        doctor_ca, rogue_key.public_key(), creds.username, now=now, not_after=now + datetime.timedelta(hours=1)
    )
    rogue_chain = pki.pem(rogue_cert) + pki.pem(doctor_ca.certificate)
    honest_to_booth = room.from_booth

    # The rogue answers the booth with its own DTLS key (an aiortc peer), signed by its own doctor key,
    # and forwards the real doctor nothing but the booth's identity (the doctor's SAS uses its own leg).
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.rtcconfiguration import RTCBundlePolicy

    from kiosk.session.binding import fingerprint_of_sdp

    rogue_pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    tasks: set[asyncio.Task[None]] = set()

    async def answer_booth(session_id: str, offer: str) -> None:
        await rogue_pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await rogue_pc.setLocalDescription(await rogue_pc.createAnswer())
        sdp = only_sha256_fingerprints(rogue_pc.localDescription.sdp)
        fingerprint = fingerprint_of_sdp(sdp)
        signature = sign_fingerprint(fingerprint, rogue_key, role="doctor", session=session_id)
        booth_link = room.booths["booth-0001"]
        from hub.messages import Direction, encode

        for payload in (
            {"kind": "identity", "fingerprint": fingerprint, "signature": signature, "certificate": rogue_chain},
            {"kind": "answer", "sdp": sdp},
        ):
            booth_link.endpoint.send(
                encode(Message("signal", {"session": session_id, "payload": payload}), Direction.HUB_TO_BOOTH)
            )

    def from_booth(link: object, message: Message, now: float) -> None:
        if message.type == "signal" and message["payload"]["kind"] == "offer":
            # Forward the offer to the doctor too, but the booth only ever talks to the rogue.
            task = asyncio.ensure_future(answer_booth(message["session"], message["payload"]["sdp"]))
            tasks.add(task)
        honest_to_booth(link, message, now)  # type: ignore[arg-type]

    def from_doctor(link: object, message: Message, now: float) -> None:
        if message.type == "signal" and message["payload"]["kind"] in ("identity", "answer", "ice"):
            return  # swallowed: the booth hears the rogue instead
        honest(link, message, now)  # type: ignore[arg-type]

    room.from_booth = from_booth  # type: ignore[method-assign]
    room.from_doctor = from_doctor  # type: ignore[method-assign]
    # The accepted message carries the rogue's chain as the announced doctor.
    original_identity_chain: dict[str, object] = {}

    session, recorder = booth_session(running, creds, equipment)
    doctor = scripted_doctor(running, creds)
    try:
        await session.start()
        await session.link.wait_connected(TIMEOUT)
        await doctor.login(creds.username, creds.password, creds.secret)
        for link in room.doctors:
            original_identity_chain["chain"] = link.identity_chain
            link.identity_chain = lambda: rogue_chain
        await session.announce(PATIENT)
        await doctor.accept(await doctor.wait_entry("booth-0001"))
        verified = await recorder.wait_for(VerifiedEvent)
        assert isinstance(verified, VerifiedEvent)
        async with asyncio.timeout(TIMEOUT):
            while doctor.sas is None:
                await asyncio.sleep(0.05)
        # The booth accepted a fleet doctor key, so only the comparison aloud can tell: and it does.
        assert verified.sas != doctor.sas
        assert verified.sas.digits != doctor.sas.digits
        assert verified.sas.words != doctor.sas.words
    finally:
        for task in tasks:
            task.cancel()
        await rogue_pc.close()
        await doctor.close()
        await session.close()
