"""The console page driven like a doctor would, with a booth in Python on the other side of a real hub.

* TOTP login, the live waiting room (an entry another doctor takes disappears), accept: the booth gets
  ``accepted`` with this login's certified doctor chain.
* Every identity binding the console must refuse is refused with a red message, ``bye`` and ``end``,
  and never an answer.
* A booth with a valid binding (an aiortc peer with the booth's fleet key) gets the doctor's identity and
  an answer that Python verifies; the link comes up, both sides show the same SAS, the peripheral panel
  opens only once the doctor confirms it, and the data channel carries readings, commands and STOP.
  An ICE restart is answered with the same fingerprint; a restart offer with another one is refused.
* The hub closing the socket with 4401 (session over) sends the page back to the login form.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import pytest
import pytest_asyncio
from aiortc import RTCCertificate, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import candidate_from_sdp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.async_api import Browser, Page, expect

from hub import pki
from kiosk.session import datachannel as dc
from kiosk.session.binding import (
    FleetTrust,
    fingerprint_of_sdp,
    short_authentication_string,
    sign_fingerprint,
    verify_binding,
)
from kiosk.session.peer import _use_certificate, only_sha256_fingerprints
from tests.browser.conftest import TIMEOUT_MS, Console, FakeBooth, Hub, fake_booth

pytestmark = pytest.mark.asyncio(loop_scope="session")


E = TypeVar("E")


def single(events: list[dc.Event], kind: type[E]) -> E:
    """The one event of a message, of the expected kind."""
    assert len(events) == 1 and isinstance(events[0], kind), events
    return events[0]


NOW = datetime.datetime.now(datetime.UTC)
FINGERPRINT = "sha-256 " + ":".join(["5A"] * 32)


def booth_key(hub: Hub, booth_id: str = "booth-0001") -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(hub.paths.booth_key(booth_id).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def still_jpeg(width: int, height: int) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 2] = np.linspace(0, 255, width, dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def offer_sdp(fingerprint: str) -> str:
    """Just enough of a description for the checks that come before any answer."""
    return "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=mid:0",
            f"a=fingerprint:{fingerprint}",
            "",
        ]
    )


async def wait_view(page: Page, view: str) -> None:
    await page.wait_for_function("(view) => window.consoleDebug.view() === view", arg=view)


async def accept(console: Console, booth: FakeBooth, first_name: str) -> dict[str, Any]:
    """Announce a patient, accept it in the page; the booth's ``accepted`` message."""
    await booth.announce(first_name=first_name)
    entry = console.page.get_by_test_id("queue-entry").filter(has_text=first_name)
    await entry.get_by_test_id("accept").click()
    accepted = await booth.expect("accepted")
    await wait_view(console.page, "call")
    return accepted


async def until_ended(booth: FakeBooth) -> list[dict[str, Any]]:
    """Everything the booth receives up to and including ``ended``."""
    received = []
    while True:
        message = await booth.receive()
        received.append(message)
        if message["type"] == "ended":
            return received


async def test_login_waiting_room_and_accept(console: Console, hub: Hub, browser: Browser) -> None:
    page = console.page
    await console.open()
    await expect(page.get_by_test_id("login-username")).to_be_focused()
    doctor = hub.new_doctor("Dr Martin")
    await console.login(doctor)
    await expect(page.get_by_test_id("account-name")).to_have_text("Connecté : Dr Martin")
    other = await browser.new_context()
    other.set_default_timeout(TIMEOUT_MS)
    try:
        colleague = Console(hub, other, await other.new_page())
        await colleague.open()
        await colleague.login(hub.new_doctor("Dr Autre"))
        async with fake_booth(hub) as booth, fake_booth(hub, "booth-0002") as second:
            await booth.announce("Camille", 42, "Toux depuis 3 jours")
            await second.announce("Louis", 7, "Otite ?")
            entries = page.get_by_test_id("queue-entry")
            await expect(entries).to_have_count(2)
            camille = entries.filter(has_text="Camille")
            await expect(camille.get_by_test_id("entry-age")).to_have_text("42 ans")
            await expect(camille.get_by_test_id("entry-reason")).to_have_text("Toux depuis 3 jours")
            await expect(camille.get_by_test_id("entry-waiting")).to_contain_text("attend depuis 0 min")
            # Another doctor takes Louis: the entry leaves this doctor's room at once.
            await colleague.page.get_by_test_id("queue-entry").filter(has_text="Louis").get_by_test_id("accept").click()
            await second.expect("accepted")
            await expect(entries).to_have_count(1)
            await expect(entries).to_contain_text("Camille")
            # This doctor accepts Camille: the booth learns who, with a chain the fleet vouches for.
            await camille.get_by_test_id("accept").click()
            accepted = await booth.expect("accepted")
            assert accepted["doctor"]["display_name"] == "Dr Martin"
            leaf = FleetTrust(hub.fleet_ca_pem).verify_chain(accepted["doctor"]["certificate"], now=NOW)
            assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [doctor.username]
            await wait_view(page, "call")
            assert await console.evaluate("() => window.consoleDebug.state()") == "waiting"
            await expect(page.get_by_test_id("binding-status")).to_have_attribute("data-state", "pending")
            await expect(page.get_by_test_id("oxi-toggle")).to_be_disabled()
            # The booth leaves: the hub ends the consultation and the console goes back to the room.
        await wait_view(page, "waiting-room")
        await expect(page.get_by_test_id("queue-entry")).to_have_count(0)
    finally:
        await other.close()


async def test_failed_verification_blocks_the_call(console: Console, hub: Hub) -> None:
    page = console.page
    await console.open()
    await console.login(hub.new_doctor())
    key = booth_key(hub)
    certificate = hub.paths.booth_cert("booth-0001").read_text()
    hub.new_booth("booth-0002")
    other_key, other_certificate = booth_key(hub, "booth-0002"), hub.paths.booth_cert("booth-0002").read_text()
    doctor_ca = pki.load_issuer(hub.paths.doctor_ca, hub.paths.doctor_ca_key)
    doctor_key = pki.new_key()
    doctor_chain = pki.pem(
        pki.issue_doctor_certificate(
            doctor_ca, doctor_key.public_key(), "dr.demo", now=NOW, not_after=NOW + datetime.timedelta(hours=1)
        )
    ) + pki.pem(doctor_ca.certificate)
    rogue = pki.create_fleet_ca(now=NOW, name="Rogue CA")
    rogue_key = pki.new_key()
    rogue_certificate = pki.pem(pki.issue_booth_certificate(rogue, rogue_key.public_key(), "booth-0001", now=NOW))
    other_fingerprint = "sha-256 " + ":".join(["A7"] * 32)

    def identity(session: str, signer: ec.EllipticCurvePrivateKey, chain: str, signed: str) -> dict[str, Any]:
        return {
            "kind": "identity",
            "fingerprint": FINGERPRINT,
            "signature": sign_fingerprint(signed, signer, role="booth", session=session),
            "certificate": chain,
        }

    # reason -> (signer, certificate, what the key signed, the offer's fingerprint); None: no identity at all
    cases: dict[str, tuple[ec.EllipticCurvePrivateKey, str, str, str] | None] = {
        "bad_signature": (key, certificate, other_fingerprint, FINGERPRINT),
        "fingerprint_mismatch": (key, certificate, FINGERPRINT, other_fingerprint),
        "wrong_role": (doctor_key, doctor_chain, FINGERPRINT, FINGERPRINT),
        "untrusted_certificate": (rogue_key, rogue_certificate, FINGERPRINT, FINGERPRINT),
        "wrong_name": (other_key, other_certificate, FINGERPRINT, FINGERPRINT),
        "missing_identity": None,
    }
    async with fake_booth(hub) as booth:
        for index, (reason, case) in enumerate(cases.items()):
            session = (await accept(console, booth, f"Patient{index}"))["session"]
            offered = FINGERPRINT
            if case is not None:
                signer, chain, signed, offered = case
                await booth.signal(session, identity(session, signer, chain, signed))
            await booth.signal(session, {"kind": "offer", "sdp": offer_sdp(offered)})
            received = await until_ended(booth)
            kinds = [m["payload"]["kind"] if m["type"] == "signal" else m["type"] for m in received]
            assert kinds == ["bye", "ended"], (reason, received)
            assert received[-1]["reason"] == "doctor-ended"
            status = page.get_by_test_id("binding-status")
            await expect(status).to_have_attribute("data-state", "refused")
            await expect(status).to_have_attribute("data-reason", reason)
            await expect(status).to_contain_text("Appel refusé")
            assert await console.evaluate("() => window.consoleDebug.state()") == "refused"
            assert await console.evaluate("() => window.consoleDebug.sas()") is None
            await expect(page.get_by_test_id("sas-digits")).to_be_hidden()
            await expect(page.get_by_test_id("oxi-toggle")).to_be_disabled()
            await page.get_by_test_id("back-to-room").click()
            await wait_view(page, "waiting-room")


class AiortcBooth:
    """The booth's WebRTC side in aiortc: the contract's m-lines, one certificate kept across restarts."""

    def __init__(self) -> None:
        self.certificate = RTCCertificate.generateCertificate()
        self.pc: RTCPeerConnection | None = None
        self.channel: Any = None
        self.messages: asyncio.Queue[str] = asyncio.Queue()

    async def offer(self, certificate: RTCCertificate | None = None) -> str:
        if self.pc is not None:
            await self.pc.close()
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        _use_certificate(pc, certificate or self.certificate)
        pc.addTransceiver("video", direction="sendrecv")
        pc.addTransceiver("video", direction="sendonly")
        pc.addTransceiver("audio", direction="sendrecv")
        pc.addTransceiver("audio", direction="sendonly")
        channel = pc.createDataChannel("consult", ordered=True)
        channel.on("message", self.messages.put_nowait)
        self.pc, self.channel = pc, channel
        await pc.setLocalDescription(await pc.createOffer())
        return only_sha256_fingerprints(pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def candidate(self, payload: dict[str, Any]) -> None:
        assert self.pc is not None
        candidate = candidate_from_sdp(payload["candidate"].removeprefix("candidate:"))
        candidate.sdpMid = payload["sdpMid"]
        candidate.sdpMLineIndex = payload["sdpMLineIndex"]
        await self.pc.addIceCandidate(candidate)

    async def connected(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.pc and self.pc.connectionState == "connected" and self.channel.readyState == "open"):
            assert time.monotonic() < deadline, f"no connection ({self.pc.connectionState if self.pc else None})"
            await asyncio.sleep(0.05)

    def send(self, text: str) -> None:
        self.channel.send(text)

    async def receive(self, protocol: dc.DataChannelProtocol, timeout: float = 10.0) -> list[dc.Event]:
        return protocol.receive_message(await asyncio.wait_for(self.messages.get(), timeout))


async def exchange(booth: FakeBooth, peer: AiortcBooth, session: str, *, expect_identity: bool) -> dict[str, Any]:
    """Signal until the console's answer is applied; its identity payload (or {}) back."""
    identity: dict[str, Any] = {}
    while True:
        message = await booth.expect("signal")
        payload = message["payload"]
        assert message["session"] == session
        if payload["kind"] == "identity":
            assert expect_identity, "the console re-sent its identity on a restart"
            identity = payload
        elif payload["kind"] == "answer":
            assert not expect_identity or identity, "the answer came before the identity"
            await peer.answer(payload["sdp"])
            return {"identity": identity, "answer": payload["sdp"]}
        else:
            raise AssertionError(f"unexpected {payload['kind']} before the answer")


async def apply_candidates(booth: FakeBooth, peer: AiortcBooth, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            message = await booth.receive(timeout=0.2)
        except TimeoutError:
            continue
        if message["type"] == "signal" and message["payload"]["kind"] == "ice":
            await peer.candidate(message["payload"])


@pytest_asyncio.fixture(loop_scope="session")
async def aiortc_booth() -> AsyncIterator[AiortcBooth]:
    peer = AiortcBooth()
    yield peer
    if peer.pc is not None:
        await peer.pc.close()


async def test_verified_call_sas_peripherals_and_restart(
    console: Console, hub: Hub, aiortc_booth: AiortcBooth, tmp_path: Path
) -> None:
    page = console.page
    await console.open()
    doctor = hub.new_doctor("Dr Martin")
    await console.login(doctor)
    trust = FleetTrust(hub.fleet_ca_pem)
    async with fake_booth(hub) as booth:
        session = (await accept(console, booth, "Camille"))["session"]
        sdp = await aiortc_booth.offer()
        booth_fingerprint = fingerprint_of_sdp(sdp)
        signature = sign_fingerprint(booth_fingerprint, booth_key(hub), role="booth", session=session)
        certificate = hub.paths.booth_cert("booth-0001").read_text()
        await booth.signal(
            session,
            {"kind": "identity", "fingerprint": booth_fingerprint, "signature": signature, "certificate": certificate},
        )
        await booth.signal(session, {"kind": "offer", "sdp": sdp})

        # The console's identity: the doctor who logged in, the fingerprint of its answer, signed for this session.
        got = await exchange(booth, aiortc_booth, session, expect_identity=True)
        identity = got["identity"]
        peer = verify_binding(
            identity["fingerprint"],
            identity["signature"],
            identity["certificate"],
            role="doctor",
            session=session,
            trust=trust,
            now=NOW,
        )
        assert peer.name == doctor.username
        assert fingerprint_of_sdp(got["answer"]) == peer.fingerprint
        await expect(page.get_by_test_id("binding-status")).to_have_attribute("data-state", "ok")
        await expect(page.get_by_test_id("binding-status")).to_contain_text("booth-0001")

        stop = asyncio.Event()
        candidates = asyncio.create_task(apply_candidates(booth, aiortc_booth, stop))
        try:
            await aiortc_booth.connected()
            await page.wait_for_function("() => window.consoleDebug.state() === 'connected'")

            # The same SAS on both screens, shown prominently.
            sas = short_authentication_string(booth_fingerprint, peer.fingerprint, session)
            assert await console.evaluate("() => window.consoleDebug.sas()") == {
                "digits": sas.digits,
                "words": list(sas.words),
            }
            await expect(page.get_by_test_id("sas-digits")).to_have_text(sas.digits)
            await expect(page.get_by_test_id("sas-words")).to_have_text(" · ".join(sas.words))
            stats = await console.evaluate("() => window.consoleDebug.getStats()")
            assert any(s["type"] == "transport" for s in stats)
            assert await console.evaluate("() => window.consoleDebug.srtpCipher()")

            # Peripherals wait for the doctor's confirmation of the SAS.
            protocol = dc.DataChannelProtocol("booth")
            aiortc_booth.send(protocol.send_status("oximeter", "connected"))
            aiortc_booth.send(protocol.send_reading(97, 72, tuple(range(0, 250, 5))))
            await expect(page.get_by_test_id("vital-spo2")).to_have_text("97")
            await expect(page.get_by_test_id("vital-pulse")).to_have_text("72")
            await expect(page.get_by_test_id("pleth-canvas")).to_have_attribute("data-samples", "50")
            await expect(page.locator("[data-testid=device-state][data-device=oximeter]")).to_have_attribute(
                "data-state", "connected"
            )
            await expect(page.get_by_test_id("oxi-toggle")).to_be_disabled()
            await page.get_by_test_id("sas-verified").click()
            await expect(page.get_by_test_id("oxi-toggle")).to_be_enabled()

            # A command goes out, the ack comes back; the patient's STOP ends the BP cycle.
            await page.get_by_test_id("oxi-toggle").click()
            command = single(await aiortc_booth.receive(protocol), dc.Command)
            assert isinstance(command, dc.Command) and command.command == "oximeter.start"
            aiortc_booth.send(protocol.send_ack(command.id, True))
            await expect(page.get_by_test_id("oxi-toggle")).to_have_attribute("aria-pressed", "true")
            await page.get_by_test_id("bp-start").click()
            bp = single(await aiortc_booth.receive(protocol), dc.Command)
            assert isinstance(bp, dc.Command) and bp.command == "bp.start"
            aiortc_booth.send(protocol.send_ack(bp.id, True))
            aiortc_booth.send(protocol.send_progress(bp.id, 142))
            await expect(page.get_by_test_id("cuff-pressure")).to_have_text("142")
            aiortc_booth.send(protocol.send_stop())
            await expect(page.get_by_test_id("bp-status")).to_have_text("Arrêté par le patient.")
            await expect(page.get_by_test_id("oxi-status")).to_have_text("Arrêté par le patient.")
            await expect(page.get_by_test_id("oxi-toggle")).to_have_attribute("aria-pressed", "false")

            # Camera, still capture: the image arrives as a file and lands in the gallery at full resolution.
            await page.get_by_test_id("camera-select").select_option("otoscope")
            select = single(await aiortc_booth.receive(protocol), dc.Command)
            assert isinstance(select, dc.Command) and (select.command, select.camera) == ("camera.select", "otoscope")
            aiortc_booth.send(protocol.send_ack(select.id, True))
            await expect(page.get_by_test_id("camera-status")).to_contain_text("Otoscope")
            await page.get_by_test_id("still-capture").click()
            still = single(await aiortc_booth.receive(protocol), dc.Command)
            assert isinstance(still, dc.Command) and still.command == "camera.still"
            jpeg = still_jpeg(1280, 960)
            aiortc_booth.send(protocol.send_ack(still.id, True))
            aiortc_booth.send(protocol.send_result(still.id, still=dc.Still("still-1", "otoscope")))
            for text in protocol.send_file(
                dc.FileSender(jpeg, name="otoscope.jpg", mime="image/jpeg", transfer="still-1")
            ):
                aiortc_booth.send(text)
            file_ack = single(await aiortc_booth.receive(protocol), dc.FileAck)
            assert file_ack == dc.FileAck(file_ack.id, "still-1", True)
            item = page.get_by_test_id("gallery-item")
            await expect(item).to_have_attribute("data-width", "1280")
            await expect(item).to_have_attribute("data-height", "960")
            await expect(item).to_have_attribute("data-camera", "otoscope")
            await item.click()
            await expect(page.get_by_test_id("still-full")).to_be_visible()
            assert await console.evaluate(
                "() => [document.getElementById('still-full').width, document.getElementById('still-full').height]"
            ) == [1280, 960]
            await page.keyboard.press("Escape")

            # Temperature and blood pressure results.
            await page.get_by_test_id("temp-read").click()
            thermometer = single(await aiortc_booth.receive(protocol), dc.Command)
            aiortc_booth.send(protocol.send_ack(thermometer.id, True))
            aiortc_booth.send(protocol.send_result(thermometer.id, readings=(dc.Measurement("celsius", 37.4, "°C"),)))
            await expect(page.get_by_test_id("temp-result")).to_have_attribute("data-value", "37.4")
            await expect(page.get_by_test_id("temp-result")).to_have_text("37,4 °C")
            await page.get_by_test_id("bp-start").click()
            bp = single(await aiortc_booth.receive(protocol), dc.Command)
            aiortc_booth.send(protocol.send_ack(bp.id, True))
            readings = (
                dc.Measurement("systolic", 128, "mmHg"),
                dc.Measurement("diastolic", 84, "mmHg"),
                dc.Measurement("mean", 99, "mmHg"),
                dc.Measurement("pulse", 70, "/min"),
            )
            aiortc_booth.send(protocol.send_result(bp.id, readings=readings))
            await expect(page.get_by_test_id("bp-result")).to_have_text("128/84 mmHg (moyenne 99, pouls 70)")

            # Files both ways; more than 20 MiB is refused before anything is sent.
            document = b"%PDF-1.4\n" + os.urandom(100_000)
            for text in protocol.send_file(
                dc.FileSender(document, name="analyse.pdf", mime="application/pdf", transfer="doc-1")
            ):
                aiortc_booth.send(text)
            file_ack = single(await aiortc_booth.receive(protocol), dc.FileAck)
            assert file_ack.ok
            link = page.get_by_test_id("file-received")
            await expect(link).to_have_attribute("data-sha256", hashlib.sha256(document).hexdigest())
            await expect(link).to_have_attribute("download", "analyse.pdf")
            big = tmp_path / "scanner.bin"
            with big.open("wb") as handle:
                handle.truncate(dc.MAX_FILE_BYTES + 1)  # sparse: a path, so nothing is copied into the browser
            await page.get_by_test_id("file-input").set_input_files(big)
            await expect(page.get_by_test_id("file-status")).to_contain_text("dépasse 20 Mio")
            prescription = os.urandom(dc.MAX_CHUNK_BYTES * 3 + 17)
            await page.get_by_test_id("file-input").set_input_files(
                {"name": "ordonnance.pdf", "mimeType": "application/pdf", "buffer": prescription}
            )
            events: list[dc.Event] = []
            while not any(isinstance(e, dc.FileReceived) for e in events):
                events += await aiortc_booth.receive(protocol)
            assert [type(e) for e in events] == [dc.FileOffer] + [dc.FileProgress] * 4 + [dc.FileReceived]
            assert isinstance(events[-1], dc.FileReceived)
            assert (events[-1].name, events[-1].mime, events[-1].data) == (
                "ordonnance.pdf",
                "application/pdf",
                prescription,
            )
            aiortc_booth.send(protocol.send_file_ack(events[-1].transfer, True))
            await expect(page.get_by_test_id("file-status")).to_contain_text("reçu par la cabine")

            # Chat both ways.
            aiortc_booth.send(protocol.send_chat("Bonjour docteur"))
            await expect(page.get_by_test_id("chat-log")).to_contain_text("Bonjour docteur")
            await page.get_by_test_id("chat-input").fill("Bonjour Camille")
            await page.get_by_test_id("chat-send").click()
            chat = single(await aiortc_booth.receive(protocol), dc.Chat)
            assert chat == dc.Chat(chat.id, "Bonjour Camille")

            # ICE restart: a new offer, same booth certificate; the answer keeps the console's fingerprint.
            restart = await aiortc_booth.offer()
            stop.set()
            await candidates
            await booth.signal(session, {"kind": "offer", "sdp": restart})
            again = await exchange(booth, aiortc_booth, session, expect_identity=False)
            assert fingerprint_of_sdp(again["answer"]) == peer.fingerprint
            stop.clear()
            candidates = asyncio.create_task(apply_candidates(booth, aiortc_booth, stop))
            await aiortc_booth.connected()
            await page.wait_for_function("() => window.consoleDebug.state() === 'connected'")
            assert (await console.evaluate("() => window.consoleDebug.sas()"))["digits"] == sas.digits
            protocol_after = protocol  # the booth keeps its protocol state behind the new channel
            aiortc_booth.send(protocol_after.send_chat("Vous m'entendez ?"))
            await expect(page.get_by_test_id("chat-log")).to_contain_text("Vous m'entendez ?")
            await expect(page.get_by_test_id("temp-read")).to_be_enabled()

            # A restart offer with another certificate is refused: bye, end, no answer.
            stop.set()
            await candidates
            await booth.signal(
                session, {"kind": "offer", "sdp": await aiortc_booth.offer(RTCCertificate.generateCertificate())}
            )
            received = await until_ended(booth)
            kinds = [m["payload"]["kind"] if m["type"] == "signal" else m["type"] for m in received]
            assert kinds == ["bye", "ended"], received
            await expect(page.get_by_test_id("binding-status")).to_have_attribute("data-reason", "fingerprint_mismatch")
        finally:
            stop.set()
            await candidates


async def test_end_call_and_session_end(console: Console, hub: Hub) -> None:
    """end-call sends bye and end; the hub closing the socket with 4401 brings the login form back."""
    page = console.page
    await console.open()
    await console.login(hub.new_doctor())
    async with fake_booth(hub) as booth:
        session = (await accept(console, booth, "Camille"))["session"]
        await page.get_by_test_id("end-call").click()
        received = await until_ended(booth)
        assert [m["payload"]["kind"] if m["type"] == "signal" else m["type"] for m in received] == ["bye", "ended"]
        assert received[-1]["session"] == session
        await wait_view(page, "waiting-room")
    # The session ends behind the page's back (here: a logout from the same browser): code 4401.
    status = await console.evaluate(
        """async () => {
          const me = await (await fetch('/api/me')).json();
          const response = await fetch('/api/logout', { method: 'POST', body: '{}',
            headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf } });
          return response.status;
        }"""
    )
    assert status == 200
    await wait_view(page, "login")
    await expect(page.get_by_test_id("notice")).to_have_text("Votre session a pris fin ; reconnectez-vous.")


async def test_logout_button(console: Console, hub: Hub) -> None:
    page = console.page
    await console.open()
    await console.login(hub.new_doctor())
    await page.get_by_test_id("logout").click()
    await wait_view(page, "login")
    assert await console.evaluate("async () => (await fetch('/api/me')).status") == 401
    # The per-login key is gone from IndexedDB too.
    stored = await console.evaluate(
        """() => new Promise((resolve) => {
          const open = indexedDB.open('kiosk-console', 1);
          open.onsuccess = () => {
            const request = open.result.transaction('identity').objectStore('identity').count();
            request.onsuccess = () => resolve(request.result);
          };
        })"""
    )
    assert stored == 0
