"""A scripted doctor: the real console page (hub/static/) driven through Playwright.

Every step goes through what a doctor clicks and reads, using the console's stable hooks (``data-testid``
attributes and ``window.consoleDebug``, documented at the top of hub/static/js/app.js). A step that does
not finish in time raises :class:`DoctorStepFailed` naming the step, with the console's own alert text
when it shows one.

    doctor = await ScriptedDoctor.open(browser, hub.origin, hub.doctor)
    await doctor.login()
    await doctor.accept_next(timeout=120)
    print((await doctor.sas()).digits)
    await doctor.verify()
    await doctor.oximeter(5)
    ...
    await doctor.end()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, Self

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Locator, Page

logger = logging.getLogger(__name__)

STEP_TIMEOUT: Final = 20.0
"""Seconds one ordinary step may take (a click and what it shows)."""
BP_TIMEOUT: Final = 90.0
"""A whole blood-pressure cycle, inflation to result."""
TOTP_STEP: Final = 30
_NUMBER: Final = r"^\d+(\.\d+)?$"


class Credentials(Protocol):
    """What the login form needs (``kiosk.demo.hub.DevDoctor`` has it)."""

    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...
    def totp(self, now: float | None = None) -> str: ...


class DoctorStepFailed(Exception):
    """A step of the scripted doctor did not complete."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        """The :class:`ScriptedDoctor` method that failed (``login``, ``accept``, ``sas``, ...)."""
        self.reason = reason
        """What was awaited, and what the console showed."""


@dataclass(frozen=True)
class Sas:
    """The short authentication string as the console shows it."""

    digits: str
    words: tuple[str, ...]


@dataclass
class ScriptedDoctor:
    """One doctor on one console page. ``step_timeout`` (seconds) bounds each ordinary step."""

    page: Page
    origin: str
    credentials: Credentials
    step_timeout: float = STEP_TIMEOUT
    errors: list[str] = field(default_factory=list)
    """Page errors and console errors seen since :meth:`open` (empty when the page was given)."""
    _context: BrowserContext | None = None

    _used_steps: ClassVar[dict[str, int]] = {}
    """The time step a TOTP code was last used at, per username (every instance): the hub refuses replays."""

    @classmethod
    async def open(
        cls,
        browser: Browser,
        origin: str,
        credentials: Credentials,
        *,
        step_timeout: float = STEP_TIMEOUT,
        viewport: tuple[int, int] = (1600, 1000),
    ) -> Self:
        """A fresh browser context on the console page; :meth:`close` closes it."""
        context = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(step_timeout * 1000)
        page = await context.new_page()
        doctor = cls(page, origin, credentials, step_timeout, _context=context)

        def on_console(message: ConsoleMessage) -> None:
            url = message.location.get("url", "")
            if message.type == "error" and not (url.endswith("/api/me") and "status of 401" in message.text):
                doctor.errors.append(f"console: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: doctor.errors.append(f"page error: {error}"))
        return doctor

    async def close(self) -> None:
        if self._context is not None:
            await self._context.close()
            self._context = None

    # -- plumbing -----------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _step(self, step: str, awaiting: str) -> AsyncIterator[None]:
        from playwright.async_api import Error as PlaywrightError

        started = time.monotonic()
        try:
            yield
        except (PlaywrightError, TimeoutError, AssertionError) as exc:
            alert = await self._alert()
            shown = f"; the console shows {alert!r}" if alert else ""
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DoctorStepFailed(step, f"{awaiting} ({first_line}){shown}") from exc
        logger.debug("doctor step %s done in %.1f s", step, time.monotonic() - started)

    async def _alert(self) -> str:
        with contextlib.suppress(Exception):
            alert = self.page.get_by_test_id("alert")
            if await alert.is_visible():
                return (await alert.inner_text(timeout=1000)).strip()
        return ""

    def _ms(self, seconds: float | None = None) -> float:
        return (self.step_timeout if seconds is None else seconds) * 1000

    def _id(self, testid: str) -> Locator:
        return self.page.get_by_test_id(testid)

    async def _view(self, view: str, timeout: float | None = None) -> None:
        await self.page.wait_for_function(
            "(view) => window.consoleDebug.view() === view", arg=view, timeout=self._ms(timeout)
        )

    async def _enabled(self, testid: str, timeout: float | None = None) -> Locator:
        locator = self.page.locator(f"[data-testid={testid}]:not([disabled])")
        await locator.wait_for(timeout=self._ms(timeout))
        return locator

    async def _attribute_matching(self, testid: str, attribute: str, timeout: float | None = None) -> str:
        """Wait until ``testid``'s ``attribute`` is a number; return it."""
        handle = await self.page.wait_for_function(
            """([testid, attribute, pattern]) => {
              const value = document.querySelector(`[data-testid="${testid}"]`)?.getAttribute(attribute);
              return value !== null && value !== undefined && new RegExp(pattern).test(value) ? value : null;
            }""",
            arg=[testid, attribute, _NUMBER],
            timeout=self._ms(timeout),
            polling=100,
        )
        return str(await handle.json_value())

    # -- the console --------------------------------------------------------------------------------------
    async def goto(self) -> None:
        """Load the console page (done by :meth:`login` when needed)."""
        async with self._step("login", f"the console page at {self.origin}"):
            response = await self.page.goto(self.origin + "/", timeout=self._ms())
            if response is None or not response.ok:
                raise AssertionError(f"HTTP {response.status if response else 'no response'}")
            await self.page.wait_for_function("() => window.consoleDebug !== undefined", timeout=self._ms())

    async def login(self) -> None:
        """Password, then a TOTP code; returns once the waiting room shows with a certified identity key."""
        if not self.page.url.startswith(self.origin):
            await self.goto()
        async with self._step("login", "the password step"):
            await self._id("login-username").fill(self.credentials.username)
            await self._id("login-password").fill(self.credentials.password)
            await self._id("login-submit").click()
            await self._id("totp-code").wait_for(state="visible", timeout=self._ms())
        for attempt in range(2):
            code = await self._fresh_totp()
            async with self._step("login", "the TOTP step"):
                await self._id("totp-code").fill(code)
                await self._id("totp-submit").click()
                await self.page.wait_for_function(
                    """() => window.consoleDebug.view() === 'waiting-room'
                      || (document.querySelector('[data-testid=alert]')?.textContent ?? '').trim() !== ''""",
                    timeout=self._ms(),
                )
            if await self.page.evaluate("() => window.consoleDebug.view()") == "waiting-room":
                break
            if attempt == 1 or await self.page.evaluate("() => window.consoleDebug.view()") != "second-factor":
                raise DoctorStepFailed("login", f"the TOTP code was refused: {await self._alert()!r}")
            # A code of this time step may have been used already (an earlier run): the next step's code.
            self._used_steps[self.credentials.username] = int(time.time() // TOTP_STEP)
        async with self._step("login", "the certified identity key"):
            # The per-login identity key is certified before the room is usable.
            await self._id("identity-status").filter(has_text="certifiée").wait_for(timeout=self._ms())

    async def _fresh_totp(self) -> str:
        """The current code, after waiting for the next time step if this one's code was used."""
        username = self.credentials.username
        used = self._used_steps.get(username, -1)
        if int(time.time() // TOTP_STEP) <= used:
            await asyncio.sleep(max(0.0, (used + 1) * TOTP_STEP - time.time()) + 0.2)
        now = time.time()
        self._used_steps[username] = int(now // TOTP_STEP)
        return self.credentials.totp(now)

    async def accept_next(self, timeout: float = 60.0, *, first_name: str | None = None) -> dict[str, str]:
        """Accept the first waiting patient (or the one named ``first_name``) once one is there.

        Returns what the queue showed (``first_name``, ``age``, ``reason``). The call view opens at once; the
        booth's binding and the SAS follow (:meth:`sas`).
        """
        entries = self._id("queue-entry")
        if first_name is not None:
            entries = entries.filter(has=self._id("entry-name").get_by_text(first_name, exact=True))
        entry = entries.filter(has=self.page.locator("[data-testid=accept]:not([disabled])")).first
        async with self._step("accept", f"a waiting patient within {timeout:.0f} s"):
            await entry.wait_for(timeout=self._ms(timeout))
        shown = {
            "first_name": await entry.get_by_test_id("entry-name").inner_text(),
            "age": await entry.get_by_test_id("entry-age").inner_text(),
            "reason": await entry.get_by_test_id("entry-reason").inner_text(),
        }
        async with self._step("accept", "the call view"):
            await entry.get_by_test_id("accept").click()
            await self._view("call")
        return shown

    async def sas(self) -> Sas:
        """The SAS once the booth's binding verified, as both the page and ``consoleDebug.sas()`` show it."""
        async with self._step("sas", "the booth's verified binding and its SAS"):
            state = await self.page.wait_for_function(
                """() => {
                  const status = document.querySelector('[data-testid=binding-status]');
                  const state = status?.dataset.state;
                  if (state === 'refused') return {refused: status.dataset.reason || 'refused'};
                  return state === 'ok' && window.consoleDebug.sas() !== null ? {ok: true} : null;
                }""",
                timeout=self._ms(),
            )
            outcome = await state.json_value()
            if "refused" in outcome:
                raise AssertionError(f"the booth's binding was refused ({outcome['refused']})")
            shown: dict[str, Any] = await self.page.evaluate("() => window.consoleDebug.sas()")
            digits = (await self._id("sas-digits").inner_text()).strip()
            words = (await self._id("sas-words").get_attribute("data-words") or "").split()
        if digits != shown["digits"] or words != list(shown["words"]):
            raise DoctorStepFailed("sas", "the SAS on the page differs from consoleDebug.sas()")
        return Sas(digits, tuple(words))

    async def verify(self) -> None:
        """Confirm the SAS ("verified"); returns once the call is connected and the peripherals are open."""
        async with self._step("verify", "the connected call and the enabled peripherals"):
            await self.page.wait_for_function("() => window.consoleDebug.state() === 'connected'", timeout=self._ms())
            await self._id("sas-verified").click()
            await self._enabled("oxi-toggle")

    async def oximeter(self, seconds: float = 5.0) -> dict[str, float | None]:
        """Stream the oximeter for ``seconds`` (after the first numbers), then stop it; the last numbers."""
        async with self._step("oximeter", "SpO2 and pulse numbers"):
            toggle = self._id("oxi-toggle")
            if await toggle.get_attribute("aria-pressed") != "true":
                await (await self._enabled("oxi-toggle")).click()
            await self.page.wait_for_function(
                """() => ['vital-spo2', 'vital-pulse'].every(
                  (id) => /^\\d+$/.test(document.querySelector(`[data-testid=${id}]`).textContent.trim()))""",
                timeout=self._ms(),
            )
        await asyncio.sleep(seconds)
        values = await self.readings()
        async with self._step("oximeter", "the stream to stop"):
            if await toggle.get_attribute("aria-pressed") == "true":
                await toggle.click()
            await self.page.locator("[data-testid=oxi-toggle][aria-pressed=false]").wait_for(timeout=self._ms())
        return {"spo2": values["spo2"], "pulse": values["pulse"]}

    async def blood_pressure(self, timeout: float = BP_TIMEOUT) -> tuple[float, float]:
        """One cuff cycle; (systolic, diastolic) in mmHg."""
        async with self._step("blood_pressure", f"a result within {timeout:.0f} s"):
            await (await self._enabled("bp-start")).click()
            systolic = await self._attribute_matching("bp-result", "data-systolic", timeout)
            diastolic = await self._attribute_matching("bp-result", "data-diastolic")
        return float(systolic), float(diastolic)

    async def temperature(self) -> float:
        """One thermometer reading, in °C."""
        async with self._step("temperature", "a temperature"):
            await (await self._enabled("temp-read")).click()
            return float(await self._attribute_matching("temp-result", "data-value"))

    async def otoscope_still(self) -> dict[str, Any]:
        """The otoscope as examination camera, and a still of it: {camera, width, height} of the gallery item."""
        gallery = self._id("gallery-item")
        async with self._step("otoscope_still", "the otoscope selected and a still in the gallery"):
            before = await gallery.count()
            select = await self._enabled("camera-select")
            if await select.input_value() != "otoscope":
                await select.select_option("otoscope")
                await self._id("camera-status").filter(has_text="Otoscope").wait_for(timeout=self._ms())
                await self._enabled("camera-select")
            await (await self._enabled("still-capture")).click()
            item = gallery.nth(before)
            await item.wait_for(timeout=self._ms())
            return {
                "camera": await item.get_attribute("data-camera"),
                "width": int(await item.get_attribute("data-width") or 0),
                "height": int(await item.get_attribute("data-height") or 0),
            }

    async def chat(self, text: str) -> None:
        """Send a chat message; returns once the page lists it."""
        async with self._step("chat", "the message in the chat log"):
            await self._id("chat-input").fill(text)
            await (await self._enabled("chat-send")).click()
            mine = self.page.locator("[data-testid=chat-message][data-from=doctor]").filter(has_text=text)
            await mine.last.wait_for(timeout=self._ms())

    async def wait_chat(self, text: str, timeout: float | None = None) -> None:
        """Wait for a chat message from the booth containing ``text``."""
        theirs = self.page.locator("[data-testid=chat-message][data-from=booth]").filter(has_text=text)
        async with self._step("wait_chat", "a chat message from the booth"):
            await theirs.first.wait_for(timeout=self._ms(timeout))

    async def end(self) -> None:
        """Hang up; returns once the console is back in the waiting room."""
        async with self._step("end", "the waiting room after hanging up"):
            await (await self._enabled("end-call")).click()
            await self._view("waiting-room")

    async def screenshot(self, path: Path) -> Path:
        """The whole page as PNG at ``path``."""
        async with self._step("screenshot", str(path)):
            path.parent.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=str(path), full_page=True, timeout=self._ms())
        return path

    async def readings(self) -> dict[str, float | None]:
        """What the console shows now: spo2, pulse, systolic, diastolic, celsius (None when not shown)."""
        raw: dict[str, str | None] = await self.page.evaluate(
            """() => {
              const testid = (id) => document.querySelector(`[data-testid=${id}]`);
              return {
                spo2: testid('vital-spo2')?.textContent.trim() ?? null,
                pulse: testid('vital-pulse')?.textContent.trim() ?? null,
                systolic: testid('bp-result')?.getAttribute('data-systolic') ?? null,
                diastolic: testid('bp-result')?.getAttribute('data-diastolic') ?? null,
                celsius: testid('temp-result')?.getAttribute('data-value') ?? null,
              };
            }"""
        )
        return {key: _number(value) for key, value in raw.items()}

    async def srtp_cipher(self) -> str | None:
        """The SRTP cipher of the call's transport (getStats ``srtpCipher``), or None."""
        cipher = await self.page.evaluate("() => window.consoleDebug.srtpCipher()")
        return str(cipher) if cipher else None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
