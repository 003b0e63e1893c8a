"""WebAuthn second factor and GET /api/config through a real hub over TLS on loopback.

The console's origin here is ``https://localhost:PORT`` (relying party id
``localhost``), which the hub allows next to ``https://127.0.0.1:PORT`` in
development; the software authenticator of tests/support_webauthn.py answers
the options exactly as a browser's ``PublicKeyCredential.toJSON()`` would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.accounts import opaque
from hub.app import RunningHub, start
from hub.config import HubConfig
from tests.integration import test_hub as support
from tests.integration.test_hub import OTHER, OTHER_PASSWORD, DoctorClient, MakeHub, State, totp
from tests.support_webauthn import SoftKey, b64url

template_state = support.template_state
state = support.state
make_hub = support.make_hub
doctors = support.doctors

Doctors = Callable[[RunningHub], DoctorClient]
WEBAUTHN_POSTS = (
    "/api/login/webauthn/options",
    "/api/login/webauthn",
    "/api/webauthn/register/options",
    "/api/webauthn/register",
)


def console(doctors: Doctors, hub: RunningHub) -> DoctorClient:
    """A client whose pages come from https://localhost:PORT (WebAuthn refuses IP-address origins)."""
    client = doctors(hub)
    client.origin = f"https://localhost:{hub.doctor_port}"
    return client


async def password(client: DoctorClient, username: str, password: str) -> dict[str, Any]:
    status, body = await client.post("/api/login", {"username": username, "password": password})
    assert status == 200, body
    assert body["stage"] == "second_factor"
    client.csrf = body["csrf"]
    return body


async def register(client: DoctorClient, key: SoftKey, name: str | None = None) -> dict[str, Any]:
    status, body = await client.post("/api/webauthn/register/options", {})
    assert status == 200, body
    answer: dict[str, Any] = {"credential": key.create(body["publicKey"], client.origin)}
    if name is not None:
        answer["name"] = name
    status, body = await client.post("/api/webauthn/register", answer)
    assert status == 200, body
    return body


async def key_login(client: DoctorClient, key: SoftKey, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    status, body = await client.post("/api/login/webauthn/options", {})
    assert status == 200, body
    return await client.post("/api/login/webauthn", {"credential": key.get(body["publicKey"], client.origin, **kwargs)})


async def test_register_a_key_then_log_in_with_it(
    make_hub: MakeHub, state: State, doctors: Doctors, caplog: pytest.LogCaptureFixture
) -> None:
    hub = await make_hub()
    doctor = console(doctors, hub)
    first = await password(doctor, state.username, state.password)
    assert first["methods"] == ["totp"]
    status, body = await doctor.post("/api/login/totp", {"code": totp(state.secret)})
    assert status == 200, body
    doctor.csrf = body["csrf"]
    assert (await doctor.get("/api/me"))[1]["webauthn_credentials"] == 0
    key = SoftKey("localhost")
    status, options = await doctor.post("/api/webauthn/register/options", {})
    assert status == 200
    public_key = options["publicKey"]
    assert public_key["rp"]["id"] == "localhost"
    assert public_key["attestation"] == "none"
    assert public_key["authenticatorSelection"]["userVerification"] == "preferred"
    status, body = await doctor.post(
        "/api/webauthn/register", {"credential": key.create(public_key, doctor.origin), "name": "USB key"}
    )
    assert (status, body) == (200, {"registered": True, "credentials": 1})
    assert (await doctor.get("/api/me"))[1]["webauthn_credentials"] == 1
    status, options = await doctor.post("/api/webauthn/register/options", {})
    assert [item["id"] for item in options["publicKey"]["excludeCredentials"]] == [key.id]
    assert (await doctor.post("/api/logout", {}))[0] == 200

    # Log in again: the key is offered first, TOTP stays available.
    again = console(doctors, hub)
    assert (await password(again, state.username, state.password))["methods"] == ["webauthn", "totp"]
    status, options = await again.post("/api/login/webauthn/options", {})
    assert status == 200
    request = options["publicKey"]
    assert request["rpId"] == "localhost"
    assert request["userVerification"] == "preferred"
    assert [item["id"] for item in request["allowCredentials"]] == [key.id]
    assert request["timeout"] == 120_000
    status, done = await again.post("/api/login/webauthn", {"credential": key.get(request, again.origin)})
    assert status == 200, done
    assert {k: done[k] for k in ("stage", "username", "display_name")} == {
        "stage": "done",
        "username": "dr.demo",
        "display_name": "Dr Demo",
    }
    again.csrf = done["csrf"]
    status, me = await again.get("/api/me")
    assert status == 200 and me["csrf"] == done["csrf"] and me["webauthn_credentials"] == 1
    await again.certify()  # a full login: the identity key can be certified
    # The other doctor still logs in with TOTP only.
    other = console(doctors, hub)
    assert (await password(other, OTHER, OTHER_PASSWORD))["methods"] == ["totp"]
    status, body = await other.post("/api/login/webauthn/options", {})
    assert (status, body["error"]) == (409, "no_credentials")
    status, body = await other.post("/api/login/totp", {"code": totp(state.other_secret)})
    assert status == 200
    # Audit trail, and nothing secret in the logs.
    assert "security event webauthn_registered account=dr.demo credential=" in caplog.text
    assert "security event login_ok account=dr.demo factor=webauthn" in caplog.text
    for secret in (key.id, public_key["challenge"], request["challenge"]):
        assert secret not in caplog.text


async def test_ip_address_origins_get_a_clear_error(make_hub: MakeHub, state: State, doctors: Doctors) -> None:
    hub = await make_hub()
    doctor = doctors(hub)  # its pages come from https://127.0.0.1:PORT
    await doctor.login(state.username, state.password, state.secret)
    status, body = await doctor.post("/api/webauthn/register/options", {})
    assert (status, body["error"]) == (400, "ip_origin")
    assert body["message"] == "use the host name, WebAuthn refuses IP addresses"
    pending = doctors(hub)
    await password(pending, state.username, state.password)
    status, body = await pending.post("/api/login/webauthn/options", {})
    assert (status, body["error"]) == (400, "ip_origin")


async def test_every_webauthn_post_needs_the_csrf_token(make_hub: MakeHub, state: State, doctors: Doctors) -> None:
    hub = await make_hub()
    active = console(doctors, hub)
    await active.login(state.username, state.password, state.secret)
    key = SoftKey("localhost")
    await register(active, key)
    pending = console(doctors, hub)
    await password(pending, state.username, state.password)
    for client, paths in ((pending, WEBAUTHN_POSTS[:2]), (active, WEBAUTHN_POSTS[2:])):
        for path in paths:
            for token in ("", "x" * 43):
                status, body = await client.post(path, {}, csrf=token)
                assert (status, body["error"]) == (403, "csrf"), path
            status, body = await client.post(path, {}, origin="https://evil.example")
            assert (status, body["error"]) == (403, "cross_site"), path
    # With the token, the pending session still works.
    status, body = await key_login(pending, key)
    assert status == 200, body


async def test_registration_needs_a_full_login(make_hub: MakeHub, state: State, doctors: Doctors) -> None:
    hub = await make_hub()
    nobody = console(doctors, hub)
    for path in WEBAUTHN_POSTS:
        status, body = await nobody.post(path, {})
        assert (status, body["error"]) == (401, "no_session"), path
    assert (await nobody.get("/api/config"))[0] == 401
    pending = console(doctors, hub)
    await password(pending, state.username, state.password)
    key = SoftKey("localhost")
    status, body = await pending.post("/api/webauthn/register/options", {})
    assert (status, body["error"]) == (401, "wrong_stage")
    fake = key.create(
        {"rp": {"id": "localhost"}, "user": {"id": b64url(b"u")}, "challenge": b64url(b"c")}, pending.origin
    )
    status, body = await pending.post("/api/webauthn/register", {"credential": fake})
    assert (status, body["error"]) == (401, "wrong_stage")
    assert (await pending.get("/api/config"))[0] == 401
    # And a logged-in session cannot run the login ceremony.
    active = console(doctors, hub)
    await active.login(state.username, state.password, state.secret)
    await register(active, key)
    status, body = await active.post("/api/login/webauthn/options", {})
    assert (status, body["error"]) == (401, "wrong_stage")


async def test_refused_assertions_count_towards_the_lockout(make_hub: MakeHub, state: State, doctors: Doctors) -> None:
    hub = await make_hub(max_failures=3, rate_burst=50)
    active = console(doctors, hub)
    await active.login(state.username, state.password, state.secret)
    key, stranger = SoftKey("localhost"), SoftKey("localhost")
    await register(active, key)
    pending = console(doctors, hub)
    await password(pending, state.username, state.password)
    status, body = await key_login(pending, stranger)  # not a registered key
    assert (status, body["error"]) == (401, "invalid_credentials")
    wrong = f"{(int(totp(state.secret)) + 1) % 1_000_000:06d}"
    status, body = await pending.post("/api/login/totp", {"code": wrong})
    assert (status, body["error"]) == (401, "invalid_credentials")  # a wrong TOTP code counts the same
    status, body = await key_login(pending, key, rp_id="evil.example")
    assert (status, body["error"]) == (423, "locked")
    # Locked: a fresh password step is refused, and so is the genuine key.
    status, body = await pending.post("/api/login", {"username": state.username, "password": state.password})
    assert (status, body["error"]) == (423, "locked")


async def test_a_replayed_assertion_is_refused(make_hub: MakeHub, state: State, doctors: Doctors) -> None:
    hub = await make_hub()
    active = console(doctors, hub)
    await active.login(state.username, state.password, state.secret)
    key = SoftKey("localhost")
    await register(active, key)
    first = console(doctors, hub)
    await password(first, state.username, state.password)
    status, options = await first.post("/api/login/webauthn/options", {})
    answer = {"credential": key.get(options["publicKey"], first.origin)}
    assert (await first.post("/api/login/webauthn", answer))[0] == 200
    second = console(doctors, hub)
    await password(second, state.username, state.password)
    assert (await second.post("/api/login/webauthn/options", {}))[0] == 200
    status, body = await second.post("/api/login/webauthn", answer)
    assert (status, body["error"]) == (401, "invalid_credentials")


async def test_malformed_webauthn_bodies_are_typed_400s(make_hub: MakeHub, state: State, doctors: Doctors) -> None:
    hub = await make_hub()
    active = console(doctors, hub)
    await active.login(state.username, state.password, state.secret)
    headers = {"Origin": active.origin, "X-CSRF-Token": active.csrf, "Content-Type": "application/json"}
    cases: list[tuple[bytes, str]] = [
        (b"[" * 8_000 + b"]" * 8_000, "bad_request"),  # nesting deeper than the JSON parser goes
        (b'{"credential": ', "bad_request"),
        (b"\xff\xfe", "bad_request"),
        (b'"credential"', "bad_request"),
        (b'{"credential": "x"}', "bad_credential"),
        (b'{"credential": {}, "extra": 1}', "bad_request"),
        (b'{"credential": {}, "name": 7}', "bad_request"),
        (b'{"credential": {"id": "AA", "rawId": "AA", "type": "public-key", "response": {}}}', "bad_credential"),
    ]
    for raw, code in cases:
        async with active.http.post("/api/webauthn/register", data=raw, headers=headers) as response:
            assert response.status == 400, raw[:40]
            assert (await response.json())["error"] == code, raw[:40]
    async with active.http.post("/api/webauthn/register", data=b" " * 20_000, headers=headers) as response:
        assert response.status == 413
    status, body = await active.post("/api/webauthn/register/options", {"unexpected": "field"})
    assert (status, body["error"]) == (400, "bad_request")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=16),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=16,
)
CREDENTIALISH = st.fixed_dictionaries(
    {"credential": st.dictionaries(st.sampled_from(["id", "rawId", "type", "response", "x"]), JSON, max_size=5)}
)


def test_random_json_bodies_are_400_never_500(state: State) -> None:
    """Random JSON values (and random credential-shaped objects) posted to every WebAuthn endpoint by logged-in
    and pending sessions with valid CSRF tokens: 400 with a typed error, or 200 for a plain ``{}`` to the
    options endpoints; never a 500. Hypothesis drives a hub on its own event loop."""
    loop = asyncio.new_event_loop()
    hub: RunningHub | None = None
    clients: list[DoctorClient] = []
    try:
        config = HubConfig(state=state.root, port=0, booth_port=0, rate_burst=100_000, max_failures=100_000)
        hub = loop.run_until_complete(start(config))

        async def setup(hub: RunningHub) -> tuple[DoctorClient, DoctorClient]:
            active, pending = DoctorClient(hub, state), DoctorClient(hub, state)
            clients.extend((active, pending))
            for client in (active, pending):
                client.origin = f"https://localhost:{hub.doctor_port}"
            await active.login(state.username, state.password, state.secret)
            await register(active, SoftKey("localhost"))
            await password(pending, state.username, state.password)
            return active, pending

        active, pending = loop.run_until_complete(setup(hub))

        @settings(deadline=None)
        @given(path=st.sampled_from(WEBAUTHN_POSTS), body=JSON | CREDENTIALISH)
        def post_random(path: str, body: Any) -> None:
            client = pending if "/login/" in path else active

            async def send() -> tuple[int, Any]:
                headers = {"Origin": client.origin, "X-CSRF-Token": client.csrf, "Content-Type": "application/json"}
                async with client.http.post(path, data=json.dumps(body), headers=headers) as response:
                    return response.status, await response.json(content_type=None)

            status, answer = loop.run_until_complete(send())
            if body == {} and path.endswith("/options"):
                assert status == 200, answer
            else:
                assert status == 400, (path, body, answer)
                assert answer["error"] in ("bad_request", "bad_credential")

        post_random()
    finally:
        for client in clients:
            loop.run_until_complete(client.close())
        if hub is not None:
            loop.run_until_complete(hub.stop())
        loop.close()


# -- GET /api/config ----------------------------------------------------------------------------------------
async def test_config_defaults(make_hub: MakeHub, state: State, doctors: Doctors) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    status, body = await doctor.get("/api/config")
    assert status == 200
    assert body == {
        "fleet_ca": state.paths.fleet_ca.read_text(),
        "ice_servers": [],
        "ice_transport_policy": "all",
    }


async def test_config_hands_out_turn_rest_credentials(make_hub: MakeHub, state: State, doctors: Doctors) -> None:
    secret = "coturn shared secret"
    hub = await make_hub(
        ice_urls=("stun:turn.example.org:3478", "turn:turn.example.org:3478?transport=udp", "turns:turn.example.org"),
        turn_secret=secret,
        turn_ttl=600,
        relay_only=True,
    )
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    before = time.time()
    status, body = await doctor.get("/api/config")
    assert status == 200
    assert body["ice_transport_policy"] == "relay"
    stun, turn = body["ice_servers"]
    assert stun == {"urls": ["stun:turn.example.org:3478"]}
    assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org"]
    expiry, _, account = turn["username"].partition(":")
    assert account == opaque("dr.demo")  # a pseudonym: coturn logs usernames
    assert int(before) + 600 <= int(expiry) <= time.time() + 600
    # What coturn (use-auth-secret) checks: base64(HMAC-SHA1(secret, username)).
    expected = base64.b64encode(hmac.new(secret.encode(), turn["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected
    assert secret not in json.dumps(body)


async def test_config_logs_no_turn_secret(
    make_hub: MakeHub, state: State, doctors: Doctors, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub = await make_hub(ice_urls=("turn:127.0.0.1:3478",), turn_secret="do-not-log-me")
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    status, body = await doctor.get("/api/config")
    assert status == 200 and body["ice_transport_policy"] == "all"
    assert "do-not-log-me" not in caplog.text
    assert "do-not-log-me" not in repr(hub.accounts.config)


async def test_webauthn_credentials_survive_a_restart(state: State, doctors: Doctors) -> None:
    config = HubConfig(state=state.root, port=0, booth_port=0)
    key = SoftKey("localhost")
    hub = await start(config)
    try:
        active = console(doctors, hub)
        await active.login(state.username, state.password, state.secret)
        await register(active, key)
    finally:
        await hub.stop()
    hub = await start(config)
    try:
        client = console(doctors, hub)
        await password(client, state.username, state.password)
        status, body = await key_login(client, key)
        assert status == 200, body
    finally:
        await hub.stop()
