"""The doctor console in a real headless Chromium, against a real hub.

* ``hub``: one development state (``hub.app.init_dev_state``) served by ``kiosk-hub serve --port 0
  --booth-port 0`` in a subprocess for the whole session; its ``ready doctor=... booth=...`` line gives
  the real ports. Login rate limits are raised in its TOML settings (every test logs in from 127.0.0.1).
* ``browser``: Debian's Chromium with fake camera and microphone, and a throwaway HOME whose NSS
  database trusts the dev fleet CA, so https://localhost:PORT is a genuinely trusted origin (WebAuthn
  and the console's secure-context APIs refuse pages with certificate errors).
* ``console``: a fresh browser context on the console page; any page error or console error (a CSP
  violation, an uncaught exception) fails the test.
* ``FakeBooth``: the booth side of the signalling WebSocket in Python, over mutual TLS with a booth
  certificate of the dev state.

Each test creates its own doctor account (``hub.new_doctor()``): a TOTP code can be used once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import re
import secrets
import selectors
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, CDPSession, ConsoleMessage, Error, Page, async_playwright

from hub import pki
from hub.accounts import Accounts, totp_now
from hub.app import StatePaths, init_dev_state
from hub.config import HubConfig
from hub.store import Store

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
STARTUP_TIMEOUT = 30.0
TIMEOUT_MS = 10_000
"""Playwright's default wait for one step (a selector, a navigation) in these tests."""
READY = re.compile(r"^ready doctor=https://(?P<host>[^ ]+):(?P<port>\d+) booth=wss://(?P<bhost>[^ ]+):(?P<bport>\d+)$")
CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


@dataclass
class Doctor:
    """A doctor account created for one test."""

    username: str
    password: str
    secret: str

    def totp(self) -> str:
        return totp_now(self.secret, time.time())


@dataclass
class Hub:
    """A running ``kiosk-hub serve`` and its state directory."""

    state: Path
    credentials: dict[str, str]
    doctor_port: int
    booth_port: int
    log: Path

    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.state)

    @property
    def origin(self) -> str:
        """The console's origin: a host name, as WebAuthn requires."""
        return f"https://localhost:{self.doctor_port}"

    @property
    def fleet_ca_pem(self) -> str:
        return self.paths.fleet_ca.read_text()

    def new_doctor(self, display_name: str = "Dr Test") -> Doctor:
        """A fresh account in the hub's store (SQLite in WAL mode: the running hub sees it at once)."""
        username = f"dr.{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(18)
        store = Store(self.paths.database)
        try:
            secret = Accounts(store, HubConfig(state=self.state)).create_account(
                username, display_name, password, now=time.time()
            )
        finally:
            store.close()
        return Doctor(username, password, secret)

    def new_booth(self, booth_id: str) -> None:
        """Mint another booth certificate with the fleet CA (like ``kiosk-hub add-booth``)."""
        if self.paths.booth_cert(booth_id).exists():
            return
        fleet = pki.load_issuer(self.paths.fleet_ca, self.paths.fleet_ca_key)
        key = pki.new_key()
        now = datetime.datetime.now(datetime.UTC)
        pki.save_certificate(
            self.paths.booth_cert(booth_id), pki.issue_booth_certificate(fleet, key.public_key(), booth_id, now=now)
        )
        pki.save_key(self.paths.booth_key(booth_id), key)

    def booth_context(self, booth_id: str = "booth-0001") -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.paths.fleet_ca))
        context.load_cert_chain(self.paths.booth_cert(booth_id), self.paths.booth_key(booth_id))
        return context


def _read_ready_line(process: subprocess.Popen[str], deadline: float) -> re.Match[str]:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                continue
            line = process.stdout.readline()
            if line == "":
                raise RuntimeError(f"kiosk-hub exited with {process.wait(5)} before it was ready")
            match = READY.match(line.strip())
            if match is not None:
                return match
    finally:
        selector.close()
    raise TimeoutError("kiosk-hub did not print its ready line")


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    base = tmp_path_factory.mktemp("console-hub")
    state = base / "state"
    credentials = init_dev_state(state)
    settings = base / "hub.toml"
    settings.write_text(f'state = "{state}"\n\n[rate_limit]\nburst = 1000\nper_minute = 1000\n')
    log = base / "hub.log"
    script = Path(sys.executable).with_name("kiosk-hub")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "hub.cli"]
    command += ["serve", "--config", str(settings), "--port", "0", "--booth-port", "0"]
    with log.open("w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log_file, text=True)
    try:
        match = _read_ready_line(process, time.monotonic() + STARTUP_TIMEOUT)
        yield Hub(state, credentials, int(match["port"]), int(match["bport"]), log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="session")
def chromium_home(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose NSS database trusts the dev fleet CA (Chromium on Linux reads ~/.pki/nssdb)."""
    if shutil.which("certutil") is None:
        pytest.skip("certutil (libnss3-tools) is not installed")
    home = tmp_path_factory.mktemp("chromium-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    database = f"sql:{nssdb}"
    subprocess.run(["certutil", "-d", database, "-N", "--empty-password"], check=True, timeout=30)
    subprocess.run(
        ["certutil", "-d", database, "-A", "-t", "C,,", "-n", "fleet", "-i", str(hub.paths.fleet_ca)],
        check=True,
        timeout=30,
    )
    return home


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_home: Path) -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    environment: dict[str, str | float | bool] = {**os.environ, "HOME": str(chromium_home)}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, env=environment, timeout=30_000
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Console:
    """One browser context on the console page, with what it reported."""

    hub: Hub
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    async def virtual_authenticator(self) -> tuple[CDPSession, dict[str, Any]]:
        """A CTAP2 security key (DevTools WebAuthn domain) that says yes without a touch."""
        cdp = await self.context.new_cdp_session(self.page)
        await cdp.send("WebAuthn.enable", {"enableUI": False})
        options = {
            "protocol": "ctap2",
            "transport": "usb",
            "hasResidentKey": False,
            "hasUserVerification": True,
            "isUserVerified": True,
            "automaticPresenceSimulation": True,
        }
        authenticator = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
        return cdp, authenticator

    async def open(self) -> None:
        response = await self.page.goto(self.hub.origin + "/")
        assert response is not None and response.ok
        await self.page.wait_for_function("() => window.consoleDebug !== undefined")

    async def login(self, doctor: Doctor) -> None:
        """Password then TOTP through the page; returns once the waiting room shows with a certified key."""
        page = self.page
        await page.get_by_test_id("login-username").fill(doctor.username)
        await page.get_by_test_id("login-password").fill(doctor.password)
        await page.get_by_test_id("login-submit").click()
        await page.get_by_test_id("totp-code").wait_for(state="visible")
        await page.get_by_test_id("totp-code").fill(doctor.totp())
        await page.get_by_test_id("totp-submit").click()
        await page.wait_for_function("() => window.consoleDebug.view() === 'waiting-room'")
        # The per-login identity key is certified before the room is usable.
        await page.get_by_test_id("identity-status").filter(has_text="certifiée").wait_for()

    async def evaluate(self, script: str, argument: Any = None) -> Any:
        return await self.page.evaluate(script, argument)


@pytest_asyncio.fixture(loop_scope="session")
async def console(browser: Browser, hub: Hub) -> AsyncIterator[Console]:
    context = await browser.new_context(ignore_https_errors=False)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    console = Console(hub, context, page)

    def on_console(message: ConsoleMessage) -> None:
        url = message.location.get("url", "")
        if url.endswith("/api/me") and "status of 401" in message.text:
            return  # the page asks whether a session exists before showing the login form
        if message.type == "error":
            console.errors.append(f"console: {message.text} ({url})")

    def on_page_error(error: Error) -> None:
        console.errors.append(f"page error: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    try:
        yield console
    finally:
        await context.close()
    assert console.errors == [], console.errors


# -- a booth in Python ----------------------------------------------------------------------------------
class FakeBooth:
    """The booth end of the signalling WebSocket (mutual TLS), for tests that need a booth but no media."""

    def __init__(self, hub: Hub, booth_id: str = "booth-0001") -> None:
        self.hub = hub
        self.booth_id = booth_id
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> FakeBooth:
        self.hub.new_booth(self.booth_id)
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(
            f"wss://127.0.0.1:{self.hub.booth_port}/ws",
            ssl=self.hub.booth_context(self.booth_id),
            timeout=aiohttp.ClientWSTimeout(ws_close=5),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()

    async def send(self, type_: str, **body: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"v": 1, "type": type_, **body}))

    async def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.ws is not None
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        document: dict[str, Any] = json.loads(message.data)
        return document

    async def expect(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next message of ``type_`` (error messages from the hub fail the test)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.receive(max(0.1, deadline - time.monotonic()))
            assert message["type"] != "error", message
            if message["type"] == type_:
                return message

    async def signal(self, session: str, payload: dict[str, Any]) -> None:
        await self.send("signal", session=session, payload=payload)

    async def announce(self, first_name: str = "Camille", age: int = 42, reason: str = "Toux depuis 3 jours") -> None:
        await self.send("announce", patient={"first_name": first_name, "age": age, "reason": reason})


@contextlib.asynccontextmanager
async def fake_booth(hub: Hub, booth_id: str = "booth-0001") -> AsyncIterator[FakeBooth]:
    async with FakeBooth(hub, booth_id) as booth:
        yield booth
