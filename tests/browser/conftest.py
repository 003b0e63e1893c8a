"""The doctor console in a real headless Chromium, against a real hub.

* ``hub``: a development hub (``kiosk.demo.hub.DevHub``: ``kiosk-hub init --dev``, then ``kiosk-hub serve``
  on free ports) for the whole session. Login rate limits are raised in its TOML settings (every test logs
  in from 127.0.0.1).
* ``browser``: Debian's Chromium (``kiosk.demo.browser``) with fake camera and microphone, and a throwaway
  HOME whose NSS database trusts the dev fleet CA, so https://localhost:PORT is a genuinely trusted origin
  (WebAuthn and the console's secure-context APIs refuse pages with certificate errors).
* ``console``: a fresh browser context on the console page; any page error or console error (a CSP
  violation, an uncaught exception) fails the test.
* ``FakeBooth``: the booth side of the signalling WebSocket in Python, over mutual TLS with a booth
  certificate of the dev state.

Each test creates its own doctor account (``hub.new_doctor()``): a TOTP code can be used once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, CDPSession, ConsoleMessage, Error, Page

from kiosk.demo.browser import CHROMIUM, home_with_ca, launch_chromium
from kiosk.demo.doctor import ScriptedDoctor
from kiosk.demo.hub import RELAXED_RATE_LIMIT, DevDoctor, DevHub

TIMEOUT_MS = 10_000
"""Playwright's default wait for one step (a selector, a navigation) in these tests."""


Hub = DevHub
"""A running ``kiosk-hub serve`` and its state directory (:class:`kiosk.demo.hub.DevHub`)."""
Doctor = DevDoctor
"""A doctor account created for one test."""


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    base = tmp_path_factory.mktemp("console-hub")
    with DevHub(base / "state", run_dir=base, settings=RELAXED_RATE_LIMIT) as running:
        yield running


@pytest.fixture(scope="session")
def chromium_home(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose NSS database trusts the dev fleet CA (Chromium on Linux reads ~/.pki/nssdb)."""
    if shutil.which("certutil") is None:
        pytest.skip("certutil (libnss3-tools) is not installed")
    return home_with_ca(tmp_path_factory.mktemp("chromium-home"), hub.paths.fleet_ca)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_home: Path) -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    async with launch_chromium(chromium_home) as launched:
        yield launched


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

    def scripted(self, doctor: Doctor) -> ScriptedDoctor:
        """The demo's scripted doctor (``kiosk.demo.doctor``) on this page."""
        return ScriptedDoctor(self.page, self.hub.origin, doctor)

    async def login(self, doctor: Doctor) -> ScriptedDoctor:
        """Password then TOTP through the page; returns once the waiting room shows with a certified key."""
        scripted = self.scripted(doctor)
        await scripted.login()
        return scripted

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
