"""The console's prescription panel in Chromium against a real hub: the hub signs, the panel hands the
signed PDF to the data channel marked as a prescription, and the booth's verifier accepts those bytes.

The call is a stand-in object owned by this test (a connected WebRTC call is covered by
``test_console_call.py``): it records what the panel gives ``consult.sendFile``.
"""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
from playwright.async_api import expect

from kiosk.documents import PRESCRIPTION_MIME
from kiosk.documents.prescription import verify_prescription
from tests.browser.conftest import Console, Hub

pytestmark = pytest.mark.asyncio(loop_scope="session")

BIND = """async () => {
  const { bindPrescriptionPanel } = await import('/static/js/prescription.js');
  const { toBase64 } = await import('/static/js/util.js');
  window.rxSent = [];
  const call = {
    entry: { first_name: 'Lou', age: 7, reason: 'fièvre' },
    consult: {
      isOpen: true,
      sendFile: async (sender) => {
        const { name, mime, sha256 } = sender;
        window.rxSent.push({ name, mime, sha256, data: toBase64(sender.data) });
      },
    },
  };
  // The page's own binding sees no call; this one sees the stand-in (its status message comes last).
  bindPrescriptionPanel(() => call);
}"""

SUBMIT = """(text) => {
  document.getElementById('rx-form').dispatchEvent(new FocusEvent('focusin'));
  document.getElementById('rx-text').value = text;
  document.getElementById('rx-form').requestSubmit();
}"""


async def test_panel_signs_and_sends_a_verifiable_prescription(
    console: Console, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="pyhanko")
    page = console.page
    await console.open()
    await console.login(hub.new_doctor())
    await console.evaluate(BIND)
    await console.evaluate(SUBMIT, "Paracétamol 250 mg\n1 sachet toutes les 6 heures si fièvre")
    await page.wait_for_function("() => window.rxSent.length === 1")
    (sent,) = await console.evaluate("() => window.rxSent")
    assert sent["mime"] == PRESCRIPTION_MIME
    pdf = base64.b64decode(sent["data"])
    verified = await asyncio.to_thread(verify_prescription, pdf, (hub.state / "fleet-ca.pem").read_bytes())
    assert sent["name"] == f"{verified.number}.pdf"
    await expect(page.get_by_test_id("rx-status")).to_contain_text(verified.fetch_code)
    assert await console.evaluate("() => document.getElementById('rx-patient').value") == "Lou, 7 ans"
    assert await console.evaluate("() => document.getElementById('rx-text').value") == ""
