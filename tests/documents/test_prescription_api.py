"""The prescription routes on a real hub over TLS: a logged-in doctor signs, a phone fetches by code."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Callable

import aiohttp
import pytest

from hub.app import RunningHub
from kiosk.documents.prescription import verify_prescription
from tests.integration import test_hub as support
from tests.integration.test_hub import DoctorClient, MakeHub, State

# The hub fixtures live with the other hub tests; pytest finds fixtures by module attribute.
template_state = support.template_state
state = support.state
make_hub = support.make_hub
doctors = support.doctors

BODY = {"patient": "Lou, 7 ans", "text": "Paracétamol 250 mg\n1 sachet toutes les 6 heures si fièvre"}


@pytest.fixture(autouse=True)
def _quiet_pyhanko(caplog: pytest.LogCaptureFixture) -> None:
    for name in ("pyhanko", "pyhanko_certvalidator"):
        caplog.set_level(logging.CRITICAL, logger=name)


async def _phone_get(hub: RunningHub, state: State, path: str) -> tuple[int, str, bytes]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=state.client_context())) as phone,
        phone.get(f"https://127.0.0.1:{hub.doctor_port}{path}") as response,
    ):
        return response.status, response.content_type, await response.read()


async def test_doctor_signs_and_phone_fetches(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient]
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    status, body = await doctor.post("/api/prescriptions", BODY)
    assert status == 200, body
    pdf = base64.b64decode(body["pdf"])
    assert hashlib.sha256(pdf).hexdigest() == body["sha256"]
    verified = await asyncio.to_thread(verify_prescription, pdf, state.paths.fleet_ca.read_bytes())
    assert (verified.number, verified.fetch_code) == (body["number"], body["fetch_code"])
    assert verified.signer == state.username

    status, kind, data = await _phone_get(hub, state, f"/rx/{body['fetch_code'].lower()}")
    assert (status, kind, data) == (200, "application/pdf", pdf)
    status, kind, data = await _phone_get(hub, state, f"/rx?code={body['fetch_code']}")
    assert status == 200 and data == pdf
    status, kind, _ = await _phone_get(hub, state, "/rx")
    assert (status, kind) == (200, "text/html")


async def test_typed_refusals(make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient]) -> None:
    hub = await make_hub()
    status, _, data = await _phone_get(hub, state, "/rx/not-a-code")
    assert status == 400 and b"malformed" in data
    status, _, data = await _phone_get(hub, state, "/rx/ABCD-EFGH-JKMN")
    assert status == 404 and b"unknown_code" in data
    for _ in range(10):
        await _phone_get(hub, state, "/rx/ABCD-EFGH-JKMN")
    status, _, data = await _phone_get(hub, state, "/rx/ABCD-EFGH-JKMN")
    assert status == 429 and b"rate_limited" in data


async def test_only_a_logged_in_doctor_with_csrf_signs(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient]
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    status, _ = await doctor.post("/api/prescriptions", BODY)
    assert status == 401
    await doctor.login(state.username, state.password, state.secret)
    status, _ = await doctor.post("/api/prescriptions", BODY, csrf="wrong")
    assert status == 403
    status, body = await doctor.post("/api/prescriptions", {"patient": "x", "text": ""})
    assert status == 400 and body["error"] == "bad_request"
    status, body = await doctor.post("/api/prescriptions", {**BODY, "extra": 1})
    assert status == 400
