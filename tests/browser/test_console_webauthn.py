"""Security keys in the console: register one once logged in, then log in with it instead of a TOTP code.

Chromium's virtual authenticator (DevTools WebAuthn domain) stands in for the key; the page is a
genuinely trusted https://localhost origin, so WebAuthn runs exactly as for a doctor.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.conftest import Console, Hub

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_register_a_key_then_log_in_with_it(console: Console, hub: Hub) -> None:
    page = console.page
    cdp, authenticator = await console.virtual_authenticator()
    await console.open()
    doctor = hub.new_doctor()
    await console.login(doctor)
    me = await console.evaluate("async () => (await fetch('/api/me')).json()")
    if "webauthn_credentials" not in me:
        pytest.skip("this hub has no WebAuthn endpoints yet")
    await expect(page.get_by_test_id("webauthn-login")).to_be_hidden()

    await page.get_by_test_id("register-key").click()
    await expect(page.get_by_test_id("notice")).to_have_text("Clé de sécurité enregistrée (1 au total).")
    stored = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]})
    assert len(stored["credentials"]) == 1

    await page.get_by_test_id("logout").click()
    await page.wait_for_function("() => window.consoleDebug.view() === 'login'")
    await page.get_by_test_id("login-username").fill(doctor.username)
    await page.get_by_test_id("login-password").fill(doctor.password)
    await page.get_by_test_id("login-submit").click()
    # Both factors are offered now; the key is used, no TOTP code typed.
    await expect(page.get_by_test_id("webauthn-login")).to_be_visible()
    await expect(page.get_by_test_id("totp-code")).to_be_visible()
    await page.get_by_test_id("webauthn-login").click()
    await page.wait_for_function("() => window.consoleDebug.view() === 'waiting-room'")
    await expect(page.get_by_test_id("identity-status")).to_contain_text("certifiée")
    used = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]})
    assert used["credentials"][0]["signCount"] >= 1
    await cdp.detach()
