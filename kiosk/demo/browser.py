"""Debian's Chromium through Playwright, trusting the development fleet CA.

Playwright's own browser download does not work on the booth's build machines, so Playwright drives
``/usr/bin/chromium`` (``executable_path``). Chromium on Linux takes its trust anchors from the NSS database
in ``$HOME/.pki/nssdb``: a throwaway HOME whose database trusts the fleet CA (``certutil`` from
libnss3-tools) makes ``https://localhost:PORT`` a genuinely trusted origin. WebAuthn and the console's
secure-context APIs refuse pages with certificate errors, so ``ignore_https_errors`` is no substitute.

    async with launch_chromium(home_with_ca(tmp / "home", hub.paths.fleet_ca)) as browser:
        page = await (await browser.new_context()).new_page()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM: Final = "/usr/bin/chromium"
FAKE_MEDIA_ARGS: Final = (
    "--use-fake-ui-for-media-stream",  # camera and microphone granted without a prompt
    "--use-fake-device-for-media-stream",  # a generated camera picture and a beep as the doctor's devices
    "--autoplay-policy=no-user-gesture-required",  # the patient's audio plays without a click
)
LAUNCH_TIMEOUT_MS: Final = 30_000


class BrowserUnavailable(Exception):
    """Chromium or certutil is missing, or the trust store could not be made."""


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"Debian's chromium is not installed ({CHROMIUM})"
    if shutil.which("certutil") is None:
        return "certutil (libnss3-tools) is not installed"
    return None


def home_with_ca(home: Path, ca_file: Path, *, nickname: str = "fleet") -> Path:
    """Make ``home`` a HOME whose NSS database trusts ``ca_file`` for TLS servers; return it."""
    if shutil.which("certutil") is None:
        raise BrowserUnavailable("certutil (libnss3-tools) is not installed")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    database = f"sql:{nssdb}"
    try:
        if (nssdb / "cert9.db").exists():
            # A reused HOME: forget the CA of an earlier state (absent is fine).
            subprocess.run(["certutil", "-d", database, "-D", "-n", nickname], timeout=30, capture_output=True)
        else:
            subprocess.run(["certutil", "-d", database, "-N", "--empty-password"], check=True, timeout=30)
        subprocess.run(
            ["certutil", "-d", database, "-A", "-t", "C,,", "-n", nickname, "-i", str(ca_file)],
            check=True,
            timeout=30,
            capture_output=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BrowserUnavailable(f"could not add the CA to {nssdb}: {exc}") from exc
    return home


@contextlib.asynccontextmanager
async def launch_chromium(
    home: Path,
    *,
    headless: bool = True,
    fake_media: bool = True,
    args: Sequence[str] = (),
    timeout_ms: float = LAUNCH_TIMEOUT_MS,
) -> AsyncIterator[Browser]:
    """Chromium with ``home`` as its HOME (see :func:`home_with_ca`); closed on exit.

    ``headless=False`` needs a display (``DISPLAY`` or ``WAYLAND_DISPLAY``). ``fake_media`` adds
    :data:`FAKE_MEDIA_ARGS`.
    """
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        raise BrowserUnavailable(f"Debian's chromium is not installed ({CHROMIUM})")
    environment: dict[str, str | float | bool] = {**os.environ, "HOME": str(home)}
    flags = [*(FAKE_MEDIA_ARGS if fake_media else ()), *args]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=headless, args=flags, env=environment, timeout=timeout_ms
        )
        try:
            yield browser
        finally:
            await browser.close()


def has_display() -> bool:
    """True when a headed browser could open a window."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
