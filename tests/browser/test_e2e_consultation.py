"""A whole consultation: the console in headless Chromium, a real hub, and a real ``kiosk-booth`` process.

The booth is the production runner (``kiosk-booth --emulate``): firmware emulators on pseudo-terminals
behind the real drivers, generated media behind the real camera and microphone tracks, aiortc for the
link. It reports on stdout (JSON lines, no patient data) and takes the patient's actions on stdin. The
console runs with Chromium's fake camera and microphone.

* ``test_whole_consultation``: TOTP login, the booth's patient in the queue, accept; media both ways
  (both booth videos decode and play in the page, the doctor's camera goes out and the booth reports
  it back in RTCP); the same SAS on both screens; AES-256-GCM SRTP on both ends; then, once the doctor
  confirms the SAS: oximeter stream, a BP cycle, temperature, dermatoscope still at full resolution,
  chat and a file each way, the patient's STOP during a second BP cycle, and the doctor hanging up.
* ``test_security_key_login_and_call``: the doctor logs in with a (virtual) security key registered
  after a TOTP login; accept, same SAS, one command, hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from kiosk.demo.doctor import DoctorStepFailed, ScriptedDoctor
from tests.browser.conftest import Console, Doctor, Hub

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]

BOOTH_START_TIMEOUT = 30.0
"""Emulators, drivers and the hub link; the first run also generates the media files."""
EVENT_TIMEOUT = 15.0
"""One booth event (the link coming up, a command's outcome)."""
MEDIA_TIMEOUT_MS = 15_000
BP_TIMEOUT_MS = 30_000
"""A whole emulated BP cycle (the runner's NIBP emulator runs 3x a real cuff: about 10 s)."""
STOPPED = "Arrêté par le patient."
SRTP_BOOTH = "SRTP_AEAD_AES_256_GCM"
"""The booth's profile name: the IANA DTLS-SRTP registry's."""
SRTP_BROWSER = {"AEAD_AES_256_GCM", "SRTP_AEAD_AES_256_GCM"}
"""RTCTransportStats.srtpCipher: older Chromium said AEAD_AES_256_GCM, Chromium 156 gives the IANA name."""
NUMBER = re.compile(r"^\d+$")
DECIMAL = re.compile(r"^\d+(\.\d+)?$")


# -- the booth process ------------------------------------------------------------------------------------
class BoothProcess:
    """A running ``kiosk-booth``: its stdout events as they come, its stdin for the patient's actions."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            while line := await self.process.stdout.readline():
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))
                self._changed.set()
        finally:
            self._changed.set()

    def mark(self) -> int:
        """An index into the events: ``wait_for(..., since=mark)`` ignores what came before it."""
        return len(self.events)

    def find(self, event: str, since: int = 0, **fields: Any) -> dict[str, Any] | None:
        for found in self.events[since:]:
            if found.get("event") == event and all(found.get(key) == value for key, value in fields.items()):
                return found
        return None

    async def wait_for(
        self, event: str, *, since: int = 0, timeout: float = EVENT_TIMEOUT, **fields: Any
    ) -> dict[str, Any]:
        """The first ``event`` (from index ``since``) whose fields have these values."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(event, since, **fields)
            if found is not None:
                return found
            if self._reader.done():
                raise AssertionError(
                    f"kiosk-booth exited ({self.process.returncode}) before {event} {fields}\n{self.tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no booth event {event} {fields} in {timeout} s: {self.events[since:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:]) if self.log.exists() else ""

    async def close(self) -> None:
        """``quit``, then SIGTERM, then SIGKILL; every wait bounded."""
        process = self.process
        if process.returncode is None:
            with contextlib.suppress(ConnectionError, AssertionError):
                await self.send("quit")
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await asyncio.wait_for(process.wait(), 5)
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(self._reader, 5)
        except TimeoutError:
            self._reader.cancel()


@pytest.fixture(scope="session")
def booth_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emulator's work directory: its generated media are made once and shared by both tests."""
    return tmp_path_factory.mktemp("booth-emulated")


@contextlib.asynccontextmanager
async def running_booth(hub: Hub, workdir: Path, logs: Path, *, first_name: str) -> AsyncIterator[BoothProcess]:
    """Start ``kiosk-booth`` with its own booth certificate (minted with the fleet CA); always stopped."""
    booth_id = f"booth-{900_000 + secrets.randbelow(100_000)}"  # apart from the other tests' booths
    hub.new_booth(booth_id)
    script = Path(sys.executable).with_name("kiosk-booth")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kiosk.session.booth"]
    command += [
        "--hub", f"wss://localhost:{hub.booth_port}/ws",
        "--hub-state", str(hub.state),
        "--booth-id", booth_id,
        "--emulate", str(workdir),
        "--video-size", "320x180",
        "--fps", "15",
        "--first-name", first_name,
        "--age", "67",
        "--reason", "Toux depuis 3 jours",
    ]  # fmt: skip
    log = logs / f"{booth_id}.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    booth = BoothProcess(process, log)
    try:
        yield booth
    finally:
        await booth.close()


# -- console helpers --------------------------------------------------------------------------------------------
async def wait_view(page: Page, view: str) -> None:
    await page.wait_for_function("(view) => window.consoleDebug.view() === view", arg=view)


async def accept_patient(doctor: ScriptedDoctor, first_name: str) -> None:
    shown = await doctor.accept_next(timeout=EVENT_TIMEOUT, first_name=first_name)
    assert (shown["first_name"], shown["age"]) == (first_name, "67 ans")


async def connected_with_same_sas(doctor: ScriptedDoctor, booth: BoothProcess, account: Doctor) -> dict[str, Any]:
    """The booth verified the doctor and both ends show the same SAS; the link is up on both ends."""
    page = doctor.page
    verified = await booth.wait_for("verified")
    assert verified["doctor"] == account.username
    # The binding shows as verified, and the SAS on the page (digits, words, consoleDebug) is the booth's.
    sas = await doctor.sas()
    await expect(page.get_by_test_id("binding-status")).to_have_attribute("data-state", "ok")
    assert (sas.digits, list(sas.words)) == (verified["sas_digits"], verified["sas_words"])
    await booth.wait_for("state", state="in_call")
    await page.wait_for_function("() => window.consoleDebug.state() === 'connected'")
    # Once connected the booth reports the SRTP profile its DTLS handshake negotiated.
    secured = await booth.wait_for("verified", srtp=SRTP_BOOTH)
    assert (secured["sas_digits"], secured["sas_words"]) == (verified["sas_digits"], verified["sas_words"])
    assert await doctor.srtp_cipher() in SRTP_BROWSER
    stats = await page.evaluate("() => window.consoleDebug.getStats()")
    assert any(s["type"] == "transport" and s.get("srtpCipher") in SRTP_BROWSER for s in stats), stats
    return verified


MEDIA_FLOWING = """async () => {
  const stats = await window.consoleDebug.getStats();
  const decoded = (mid) =>
    stats.some((s) => s.type === "inbound-rtp" && s.kind === "video" && s.mid === mid && s.framesDecoded > 0);
  const playing = (id) => {
    const video = document.getElementById(id);
    return video.videoWidth > 0 && !video.paused && video.readyState >= 2;
  };
  const outbound = stats.find((s) => s.type === "outbound-rtp" && s.kind === "video");
  // remote-inbound-rtp: the booth's RTCP receiver reports on the doctor's camera stream.
  const reported = stats.some((s) => s.type === "remote-inbound-rtp" && s.kind === "video"
    && s.localId === outbound?.id);
  return decoded("0") && decoded("1") && playing("video-patient") && playing("video-exam")
    && outbound !== undefined && outbound.packetsSent > 0 && reported;
}"""

PLETH_TRACE_PIXELS = """() => {
  // Pixels off the grid lines (every quarter of the height): only the trace draws there.
  const canvas = document.getElementById("pleth-canvas");
  const { width, height } = canvas;
  const data = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  const quarter = height / 4;
  let count = 0;
  for (let y = 0; y < height; y++) {
    const offGrid = Math.abs(y - Math.round(y / quarter) * quarter) > 3;
    if (!offGrid) continue;
    for (let x = 0; x < width; x++) if (data[(y * width + x) * 4 + 3] > 0) count++;
  }
  return count;
}"""

RECORD_CUFF = """() => {
  // Every cuff pressure the page shows, in order (progress messages come faster than a poll).
  window.cuffSeen = [];
  const output = document.getElementById("cuff-pressure");
  new MutationObserver(() => {
    if (output.dataset.value !== undefined) window.cuffSeen.push(Number(output.dataset.value));
  }).observe(output, { attributes: true, attributeFilter: ["data-value"] });
}"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rising(values: list[float]) -> bool:
    """An inflation: the pressures climb for a while (several increases, well above zero)."""
    increases = sum(1 for before, after in itertools.pairwise(values) if after > before)
    return increases >= 3 and max(values) > 60


async def until(check: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.1)
    return result


# -- the tests -------------------------------------------------------------------------------------------------
async def test_whole_consultation(console: Console, hub: Hub, booth_workdir: Path, tmp_path: Path) -> None:
    page = console.page
    first_name = "Synthia"
    doctor = hub.new_doctor("Dr Martin")
    async with running_booth(hub, booth_workdir, tmp_path, first_name=first_name) as booth:
        await console.open()
        scripted = await console.login(doctor)
        await booth.wait_for("ready", timeout=BOOTH_START_TIMEOUT)
        await booth.wait_for("state", state="waiting")

        # 1. The patient in the queue; accept; media both ways.
        await accept_patient(scripted, first_name)
        await booth.wait_for("state", state="connecting")
        await connected_with_same_sas(scripted, booth, doctor)
        await page.wait_for_function(MEDIA_FLOWING, polling=250, timeout=MEDIA_TIMEOUT_MS)

        # 2. The peripherals open once the doctor confirms the SAS.
        await expect(page.get_by_test_id("oxi-toggle")).to_be_disabled()
        await page.get_by_test_id("sas-verified").click()
        await expect(page.get_by_test_id("oxi-toggle")).to_be_enabled()

        # Oximeter: numbers and a drawn plethysmogram.
        await page.get_by_test_id("oxi-toggle").click()
        await expect(page.get_by_test_id("oxi-toggle")).to_have_attribute("aria-pressed", "true")
        await expect(page.get_by_test_id("vital-spo2")).to_have_text(NUMBER)
        await expect(page.get_by_test_id("vital-pulse")).to_have_text(NUMBER)
        assert 70 <= int(await page.get_by_test_id("vital-spo2").inner_text()) <= 100
        await page.wait_for_function(
            "() => Number(document.getElementById('pleth-canvas').dataset.samples) > 30", timeout=MEDIA_TIMEOUT_MS
        )
        await until(lambda: page.evaluate(f"({PLETH_TRACE_PIXELS})() > 200"), 5, "the plethysmogram was not drawn")

        # A BP cycle runs (about 10 s) while the rest of the examination goes on.
        await page.evaluate(RECORD_CUFF)
        mark = booth.mark()
        await page.get_by_test_id("bp-start").click()
        await booth.wait_for("command", since=mark, command="bp.start", phase="started")

        # Temperature.
        await page.get_by_test_id("temp-read").click()
        await expect(page.get_by_test_id("temp-result")).to_have_attribute("data-value", DECIMAL)
        celsius = float(await page.get_by_test_id("temp-result").get_attribute("data-value") or "nan")
        assert 34.0 <= celsius <= 42.0, celsius
        await expect(page.get_by_test_id("temp-result")).to_contain_text("°C")

        # The dermatoscope, and a still at the camera's full resolution.
        await page.get_by_test_id("camera-select").select_option("dermatoscope")
        await expect(page.get_by_test_id("camera-status")).to_contain_text("Dermatoscope")
        mark = booth.mark()
        await page.get_by_test_id("still-capture").click()
        item = page.get_by_test_id("gallery-item")
        await expect(item).to_have_count(1, timeout=MEDIA_TIMEOUT_MS)
        await expect(item).to_have_attribute("data-camera", "dermatoscope")
        await expect(item).to_have_attribute("data-width", "1920")
        await expect(item).to_have_attribute("data-height", "1080")
        captured = await booth.wait_for("command", since=mark, command="camera.still", phase="done")
        assert captured["detail"] == "1920x1080"

        # Chat both ways.
        await booth.send("chat Bonjour docteur")
        await scripted.wait_chat("Bonjour docteur")  # a message from the booth (data-from="booth")
        mark = booth.mark()
        await scripted.chat("Bonjour Synthia")
        chat = await booth.wait_for("chat", since=mark, from_doctor=True)
        assert chat["length"] == len("Bonjour Synthia")

        # A file from the doctor: the booth checks it and reports its digest.
        prescription = b"%PDF-1.4\n" + os.urandom(150_000)
        mark = booth.mark()
        await page.get_by_test_id("file-input").set_input_files(
            {"name": "ordonnance.pdf", "mimeType": "application/pdf", "buffer": prescription}
        )
        received = await booth.wait_for("file", since=mark, from_doctor=True)
        assert (received["size"], received["sha256"]) == (len(prescription), sha256(prescription))
        await expect(page.get_by_test_id("file-status")).to_contain_text("reçu par la cabine")

        # A file from the booth: offered as a download whose bytes are the ones sent.
        report = b"%PDF-1.4\n" + os.urandom(200_000)
        path = tmp_path / "compte-rendu.pdf"
        path.write_bytes(report)
        await booth.send(f"file {path}")
        link = page.get_by_test_id("file-received")
        await expect(link).to_have_attribute("data-sha256", sha256(report))
        await expect(link).to_have_attribute("download", "compte-rendu.pdf")
        await expect(link).to_have_attribute("data-size", str(len(report)))
        async with page.expect_download() as download_info:
            await link.click()
        download = await download_info.value
        assert sha256(Path(await download.path()).read_bytes()) == sha256(report)

        # The BP cycle's result, after a cuff pressure that rose.
        await expect(page.get_by_test_id("bp-result")).to_have_attribute("data-systolic", NUMBER, timeout=BP_TIMEOUT_MS)
        result = page.get_by_test_id("bp-result")
        systolic = int(await result.get_attribute("data-systolic") or 0)
        diastolic = int(await result.get_attribute("data-diastolic") or 0)
        assert 60 <= diastolic < systolic <= 250, (systolic, diastolic)
        await expect(result).to_contain_text(f"{systolic}/{diastolic} mmHg")
        cuff = await page.evaluate("() => window.cuffSeen")
        assert rising(cuff), cuff

        # The patient's STOP during a second cycle: the cuff is released and the doctor sees why.
        await page.evaluate(RECORD_CUFF)
        mark = booth.mark()
        await page.get_by_test_id("bp-start").click()
        await booth.wait_for("command", since=mark, command="bp.start", phase="started")
        await until(lambda: page.evaluate("() => window.cuffSeen.length >= 3"), 10, "the cuff did not inflate")
        await booth.send("stop")
        await expect(page.get_by_test_id("bp-status")).to_have_text(STOPPED)
        await expect(page.get_by_test_id("bp-status")).to_have_attribute("data-state", "stopped")
        await booth.wait_for("command", since=mark, command="stop", phase="stopped")
        await expect(page.get_by_test_id("bp-start")).to_be_enabled()
        await expect(page.get_by_test_id("bp-abort")).to_be_disabled()
        await expect(page.get_by_test_id("bp-result")).to_have_text("")
        # Every stream stops with it: the oximeter too.
        await expect(page.get_by_test_id("oxi-status")).to_have_text(STOPPED)
        await expect(page.get_by_test_id("oxi-toggle")).to_have_attribute("aria-pressed", "false")
        await asyncio.sleep(1.0)
        assert booth.find("command", mark, command="bp.start", phase="done") is None

        # The doctor hangs up: the booth's call ends, the page forgets it.
        mark = booth.mark()
        await page.get_by_test_id("end-call").click()
        ended = await booth.wait_for("state", since=mark, state="ended")
        assert ended["reason"] == "doctor-ended"
        await wait_view(page, "waiting-room")
        assert await page.get_by_test_id("gallery").locator("li").count() == 0
        assert await page.get_by_test_id("chat-log").locator("li").count() == 0
        assert not [e for e in booth.events if e["event"] == "error"], booth.events


async def test_security_key_login_and_call(console: Console, hub: Hub, booth_workdir: Path, tmp_path: Path) -> None:
    page = console.page
    cdp, authenticator = await console.virtual_authenticator()
    first_name = "Octave"
    doctor = hub.new_doctor("Dr Clef")
    async with running_booth(hub, booth_workdir, tmp_path, first_name=first_name) as booth:
        # The key is registered after a TOTP login, then used for the next one.
        await console.open()
        await console.login(doctor)
        await page.get_by_test_id("register-key").click()
        await expect(page.get_by_test_id("notice")).to_have_text("Clé de sécurité enregistrée (1 au total).")
        await page.get_by_test_id("logout").click()
        await wait_view(page, "login")
        await page.get_by_test_id("login-username").fill(doctor.username)
        await page.get_by_test_id("login-password").fill(doctor.password)
        await page.get_by_test_id("login-submit").click()
        await page.get_by_test_id("webauthn-login").click()
        await wait_view(page, "waiting-room")
        await expect(page.get_by_test_id("identity-status")).to_contain_text("certifiée")
        used = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]})
        assert used["credentials"][0]["signCount"] >= 1

        await booth.wait_for("ready", timeout=BOOTH_START_TIMEOUT)
        scripted = console.scripted(doctor)
        await accept_patient(scripted, first_name)
        await connected_with_same_sas(scripted, booth, doctor)
        await scripted.verify()

        mark = booth.mark()
        await page.get_by_test_id("temp-read").click()
        await expect(page.get_by_test_id("temp-result")).to_have_attribute("data-value", DECIMAL)
        await booth.wait_for("command", since=mark, command="thermometer.read", phase="done")

        mark = booth.mark()
        await scripted.end()
        await booth.wait_for("state", since=mark, state="ended", reason="doctor-ended")
    await cdp.detach()


async def test_scripted_doctor_runs_the_demo_consultation(
    console: Console, hub: Hub, booth_workdir: Path, tmp_path: Path
) -> None:
    """``kiosk.demo.doctor.ScriptedDoctor``, as ``make demo`` runs it, against the real booth."""
    first_name = "Demoiselle"
    account = hub.new_doctor("Dr Démo")
    doctor = console.scripted(account)
    async with running_booth(hub, booth_workdir, tmp_path, first_name=first_name) as booth:
        await doctor.login()
        await booth.wait_for("ready", timeout=BOOTH_START_TIMEOUT)
        shown = await doctor.accept_next(timeout=EVENT_TIMEOUT)
        assert shown == {"first_name": first_name, "age": "67 ans", "reason": "Toux depuis 3 jours"}

        verified = await booth.wait_for("verified")
        sas = await doctor.sas()
        assert (sas.digits, list(sas.words)) == (verified["sas_digits"], verified["sas_words"])
        await doctor.verify()
        assert await doctor.srtp_cipher() in SRTP_BROWSER

        oximetry = await doctor.oximeter(1.0)
        assert oximetry["spo2"] is not None and 70 <= oximetry["spo2"] <= 100
        assert oximetry["pulse"] is not None and 30 <= oximetry["pulse"] <= 200
        assert await doctor.page.get_by_test_id("oxi-toggle").get_attribute("aria-pressed") == "false"
        systolic, diastolic = await doctor.blood_pressure(timeout=BP_TIMEOUT_MS / 1000)
        assert 60 <= diastolic < systolic <= 250
        celsius = await doctor.temperature()
        assert 34.0 <= celsius <= 42.0
        mark = booth.mark()
        still = await doctor.otoscope_still()
        assert still == {"camera": "otoscope", "width": 1920, "height": 1080}
        await booth.wait_for("command", since=mark, command="camera.still", phase="done")

        mark = booth.mark()
        await doctor.chat("Bonjour, je vous entends bien.")
        assert (await booth.wait_for("chat", since=mark, from_doctor=True))["length"] == 30
        await booth.send("chat Merci docteur")
        await doctor.wait_chat("Merci docteur")
        with pytest.raises(DoctorStepFailed) as failed:
            await doctor.wait_chat("never sent", timeout=0.5)
        assert failed.value.step == "wait_chat"

        assert await doctor.readings() == {
            "spo2": oximetry["spo2"],
            "pulse": oximetry["pulse"],
            "systolic": systolic,
            "diastolic": diastolic,
            "celsius": celsius,
        }
        shot = await doctor.screenshot(tmp_path / "console.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        mark = booth.mark()
        await doctor.end()
        await booth.wait_for("state", since=mark, state="ended", reason="doctor-ended")
        assert not [e for e in booth.events if e["event"] == "error"], booth.events
