"""The hub over real TLS on loopback: listeners, PKI, login with TOTP, sessions, CSRF, identity keys, CLI.

Each test gets its own copy of one development state (``init_dev_state``),
and its own hub on ephemeral ports. Helpers here are shared with
``test_hub_relay.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import shutil
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub import pki
from hub.accounts import Accounts
from hub.app import RunningHub, StatePaths, init_dev_state, start
from hub.config import ConfigError, HubConfig, load_config
from hub.store import Store
from kiosk.session.binding import FleetTrust, sign_fingerprint, verify_binding

ROOT = Path(__file__).resolve().parents[2]
OTHER = "dr.other"
OTHER_PASSWORD = "another long password 42"
TIMEOUT = 5.0


# -- an independent RFC 6238 implementation: the test does not trust the hub's ------------------
def totp(secret: str, at: float | None = None) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[19] & 15
    return str((struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000).zfill(6)


@dataclass
class State:
    """A hub state directory with two doctors and two booths."""

    root: Path
    username: str
    password: str
    secret: str
    other_secret: str

    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.root)

    def booth_context(self, booth: str = "booth-0001") -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.paths.fleet_ca))
        context.load_cert_chain(self.paths.booth_cert(booth), self.paths.booth_key(booth))
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.paths.fleet_ca))


@pytest.fixture(scope="session")
def template_state(tmp_path_factory: pytest.TempPathFactory) -> State:
    root = tmp_path_factory.mktemp("hub-template") / "state"
    credentials = init_dev_state(root)
    store = Store(StatePaths(root).database)
    other_secret = Accounts(store, HubConfig(state=root)).create_account(
        OTHER, "Dr Other", OTHER_PASSWORD, now=time.time()
    )
    store.close()
    paths = StatePaths(root)
    fleet = pki.load_issuer(paths.fleet_ca, paths.fleet_ca_key)
    key = pki.new_key()
    now = datetime.datetime.now(datetime.UTC)
    pki.save_certificate(
        paths.booth_cert("booth-0002"), pki.issue_booth_certificate(fleet, key.public_key(), "booth-0002", now=now)
    )
    pki.save_key(paths.booth_key("booth-0002"), key)
    return State(root, credentials["username"], credentials["password"], credentials["totp_secret"], other_secret)


@pytest.fixture
def state(template_state: State, tmp_path: Path) -> State:
    root = tmp_path / "state"
    shutil.copytree(template_state.root, root)
    return State(
        root, template_state.username, template_state.password, template_state.secret, template_state.other_secret
    )


MakeHub = Callable[..., Awaitable[RunningHub]]


@pytest.fixture
async def make_hub(state: State) -> AsyncIterator[MakeHub]:
    hubs: list[RunningHub] = []

    async def factory(**overrides: Any) -> RunningHub:
        settings: dict[str, Any] = {"state": state.root, "port": 0, "booth_port": 0, **overrides}
        hub = await start(HubConfig(**settings))
        hubs.append(hub)
        return hub

    yield factory
    for hub in hubs:
        await hub.stop()


class DoctorClient:
    """A browser stand-in: cookies, Origin, CSRF header."""

    def __init__(self, hub: RunningHub, state: State) -> None:
        self.origin = f"https://127.0.0.1:{hub.doctor_port}"
        self.http = aiohttp.ClientSession(
            self.origin,
            connector=aiohttp.TCPConnector(ssl=state.client_context()),
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for an IP-address host
        )
        self.csrf = ""

    async def post(
        self, path: str, body: dict[str, Any], *, csrf: str | None = None, origin: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {
            "Origin": self.origin if origin is None else origin,
            "X-CSRF-Token": self.csrf if csrf is None else csrf,
        }
        if origin == "":
            del headers["Origin"]
        async with self.http.post(path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(path) as response:
            return response.status, await response.json(content_type=None)

    async def login(self, username: str, password: str, secret: str) -> dict[str, Any]:
        status, body = await self.post("/api/login", {"username": username, "password": password})
        assert status == 200, body
        assert body["stage"] == "second_factor"
        assert "totp" in body["methods"]
        self.csrf = body["csrf"]
        status, body = await self.post("/api/login/totp", {"code": totp(secret)})
        assert status == 200, body
        self.csrf = body["csrf"]
        return body

    async def certify(self) -> tuple[ec.EllipticCurvePrivateKey, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        status, body = await self.post("/api/identity-key", {"spki": base64.b64encode(spki).decode()})
        assert status == 200, body
        return key, body["chain"]

    async def ws(self, origin: str | None = None) -> aiohttp.ClientWebSocketResponse:
        return await self.http.ws_connect("/api/ws", origin=self.origin if origin is None else origin)

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def doctors(state: State) -> AsyncIterator[Callable[[RunningHub], DoctorClient]]:
    clients: list[DoctorClient] = []

    def factory(hub: RunningHub) -> DoctorClient:
        client = DoctorClient(hub, state)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


async def _handshake(port: int, context: ssl.SSLContext) -> bytes:
    """Open TLS, send an upgrade request, return what comes back (an SSLError means the handshake failed)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=context), TIMEOUT)
    try:
        writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(200), TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


# -- TLS ------------------------------------------------------------------------------------------
async def test_tls12_refused_on_both_listeners(make_hub: MakeHub, state: State) -> None:
    hub = await make_hub()
    for port, make_context in ((hub.doctor_port, state.client_context), (hub.booth_port, state.booth_context)):
        context = make_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        # The server drops the handshake: an SSL error or a reset, depending on timing.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=context), TIMEOUT)
        # Control: the same client allowed TLS 1.3 gets through.
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=make_context()), TIMEOUT)
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        writer.close()


async def test_doctor_listener_speaks_tls13_with_strict_headers(make_hub: MakeHub, state: State) -> None:
    hub = await make_hub()
    _, writer = await asyncio.open_connection("127.0.0.1", hub.doctor_port, ssl=state.client_context())
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
    writer.close()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"https://127.0.0.1:{hub.doctor_port}/", ssl=state.client_context()) as response:
            assert response.status == 200
            assert "TOTP" in await response.text()
            headers = response.headers
        async with http.get(f"https://127.0.0.1:{hub.doctor_port}/api/me", ssl=state.client_context()) as refused:
            assert refused.status == 401
            assert refused.headers["X-Frame-Options"] == "DENY"
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "max-age=" in headers["Strict-Transport-Security"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_booth_listener_requires_a_fleet_certificate(make_hub: MakeHub, state: State, tmp_path: Path) -> None:
    hub = await make_hub()
    # A booth certificate from another CA, with the right name and role.
    stranger = pki.create_fleet_ca(now=datetime.datetime.now(datetime.UTC), name="Rogue CA")
    key = pki.new_key()
    cert = pki.issue_booth_certificate(
        stranger, key.public_key(), "booth-0001", now=datetime.datetime.now(datetime.UTC)
    )
    pki.save_certificate(tmp_path / "rogue.pem", cert)
    pki.save_key(tmp_path / "rogue.key", key)
    rogue = state.client_context()
    rogue.load_cert_chain(tmp_path / "rogue.pem", tmp_path / "rogue.key")
    for context in (state.client_context(), rogue):
        # TLS 1.3 checks the client certificate after the client's Finished: the refusal arrives as an alert
        # (or a closed connection) on the first read, never as an HTTP response.
        try:
            answer = await _handshake(hub.booth_port, context)
        except (ssl.SSLError, ConnectionError) as exc:
            answer = repr(exc).encode()
        assert not answer.startswith(b"HTTP/"), answer
    # The genuine booth gets through the same way.
    assert (await _handshake(hub.booth_port, state.booth_context())).startswith(b"HTTP/1.1 ")


async def test_a_doctor_certificate_cannot_act_as_a_booth(
    make_hub: MakeHub, state: State, doctors: Callable[[RunningHub], DoctorClient], tmp_path: Path
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    key, chain = await doctor.certify()
    (tmp_path / "doctor.pem").write_text(chain)
    pki.save_key(tmp_path / "doctor.key", key)
    context = state.client_context()
    context.load_cert_chain(tmp_path / "doctor.pem", tmp_path / "doctor.key")
    # The chain does end at the fleet CA, so TLS accepts it; the role check behind it refuses.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"wss://127.0.0.1:{hub.booth_port}/ws", ssl=context)
    assert refused.value.status == 403
    assert hub.room.booths == {}


# -- login -------------------------------------------------------------------------------------------
async def test_login_with_password_and_totp(
    make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    assert (await doctor.get("/api/me"))[0] == 401
    done = await doctor.login(state.username, state.password, state.secret)
    assert done["username"] == "dr.demo"
    status, me = await doctor.get("/api/me")
    assert status == 200
    assert me["display_name"] == "Dr Demo"
    assert me["csrf"] == doctor.csrf
    assert me["expires"] - time.time() <= 12 * 3600
    cookie = next(iter(doctor.http.cookie_jar))
    assert cookie.key == "__Host-hub_session"
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert len(base64.urlsafe_b64decode(cookie.value + "==")) == 32
    # Logout ends the session.
    assert (await doctor.post("/api/logout", {}))[0] == 200
    assert (await doctor.get("/api/me"))[0] == 401


async def test_pending_session_is_not_a_session(
    make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    status, body = await doctor.post("/api/login", {"username": state.username, "password": state.password})
    assert status == 200
    doctor.csrf = body["csrf"]
    assert (await doctor.get("/api/me"))[0] == 401
    assert (await doctor.post("/api/identity-key", {"spki": "AAAA"}))[0] == 401


async def test_bad_password_unknown_user_and_bad_totp_are_refused_alike(
    make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    wrong = await doctor.post("/api/login", {"username": state.username, "password": "not the password"})
    unknown = await doctor.post("/api/login", {"username": "dr.nobody", "password": "not the password"})
    assert wrong == unknown
    assert wrong[0] == 401
    assert wrong[1]["error"] == "invalid_credentials"
    status, body = await doctor.post("/api/login", {"username": state.username, "password": state.password})
    assert status == 200
    doctor.csrf = body["csrf"]
    good = totp(state.secret)
    bad = f"{(int(good) + 1) % 1_000_000:06d}"
    status, body = await doctor.post("/api/login/totp", {"code": bad})
    assert (status, body["error"]) == (401, "invalid_credentials")
    assert (await doctor.get("/api/me"))[0] == 401


async def test_lockout_after_repeated_failures(
    make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]
) -> None:
    hub = await make_hub(max_failures=3, rate_burst=50)
    doctor = doctors(hub)
    for _ in range(2):
        assert (await doctor.post("/api/login", {"username": state.username, "password": "wrong password"}))[0] == 401
    status, body = await doctor.post("/api/login", {"username": state.username, "password": "wrong password"})
    assert (status, body["error"]) == (423, "locked")
    # Locked: even the right password is refused, and a name that does not exist locks the same way.
    status, body = await doctor.post("/api/login", {"username": state.username, "password": state.password})
    assert (status, body["error"]) == (423, "locked")
    for _ in range(3):
        status, body = await doctor.post("/api/login", {"username": "dr.ghost", "password": "wrong password"})
    assert (status, body["error"]) == (423, "locked")
    # The other account is unaffected.
    await doctor.login(OTHER, OTHER_PASSWORD, state.other_secret)


async def test_login_rate_limited_per_address(
    make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]
) -> None:
    hub = await make_hub(rate_burst=3, rate_per_minute=1.0)
    doctor = doctors(hub)
    statuses = [
        (await doctor.post("/api/login", {"username": f"dr.x{i}", "password": "wrong password"}))[0] for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


async def test_totp_code_cannot_be_replayed(
    make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]
) -> None:
    hub = await make_hub()
    first = doctors(hub)
    await first.login(state.username, state.password, state.secret)
    second = doctors(hub)
    status, body = await second.post("/api/login", {"username": state.username, "password": state.password})
    assert status == 200
    second.csrf = body["csrf"]
    status, body = await second.post("/api/login/totp", {"code": totp(state.secret)})
    assert (status, body["error"]) == (401, "invalid_credentials")
    assert (await second.get("/api/me"))[0] == 401


# -- sessions and CSRF --------------------------------------------------------------------------------
async def test_idle_session_expires(make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]) -> None:
    hub = await make_hub(idle_timeout=1.0)
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    assert (await doctor.get("/api/me"))[0] == 200
    await asyncio.sleep(1.2)
    status, body = await doctor.get("/api/me")
    assert (status, body["error"]) == (401, "no_session")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await doctor.ws()
    assert refused.value.status == 401


async def test_websocket_closed_when_the_session_ends(
    make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]
) -> None:
    hub = await make_hub(absolute_lifetime=2.0)
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    ws = await doctor.ws()
    assert json.loads(await ws.receive_str(timeout=TIMEOUT))["type"] == "queue"
    closed = await ws.receive(timeout=TIMEOUT)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 4401


async def test_cross_site_requests_refused(
    make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    credentials = {"username": state.username, "password": state.password}
    assert (await doctor.post("/api/login", credentials, origin="https://evil.example"))[1]["error"] == "cross_site"
    assert (await doctor.post("/api/login", credentials, origin=""))[0] == 403
    await doctor.login(state.username, state.password, state.secret)
    spki = base64.b64encode(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    status, body = await doctor.post("/api/identity-key", {"spki": spki}, csrf="")
    assert (status, body["error"]) == (403, "csrf")
    status, body = await doctor.post("/api/identity-key", {"spki": spki}, csrf="x" * 43)
    assert (status, body["error"]) == (403, "csrf")
    status, body = await doctor.post("/api/identity-key", {"spki": spki}, origin="https://evil.example")
    assert (status, body["error"]) == (403, "cross_site")
    # A form post (what a cross-site page can send without a preflight) is refused too.
    async with doctor.http.post(
        "/api/logout",
        data="x=1",
        headers={
            "Origin": doctor.origin,
            "X-CSRF-Token": doctor.csrf,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ) as response:
        assert response.status == 415
    # Fetch Metadata from a browser saying cross-site wins over a forged-looking Origin.
    async with doctor.http.post(
        "/api/logout",
        json={},
        headers={"Origin": doctor.origin, "X-CSRF-Token": doctor.csrf, "Sec-Fetch-Site": "cross-site"},
    ) as response:
        assert response.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await doctor.ws(origin="https://evil.example")
    assert refused.value.status == 403
    # Still logged in, and the real request works.
    assert (await doctor.post("/api/identity-key", {"spki": spki}))[0] == 200


# -- identity keys ----------------------------------------------------------------------------------------
async def test_identity_key_certified_under_the_fleet_ca(
    make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]
) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    done = await doctor.login(state.username, state.password, state.secret)
    key, chain = await doctor.certify()
    trust = FleetTrust(state.paths.fleet_ca.read_text())
    now = datetime.datetime.now(datetime.UTC)
    leaf = trust.verify_chain(chain, now=now)
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)] == ["doctor"]
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["dr.demo"]
    assert leaf.not_valid_after_utc.timestamp() <= done["expires"] + 1
    assert leaf.not_valid_after_utc - now <= datetime.timedelta(hours=12)
    assert leaf.public_key() == key.public_key()
    assert len(x509.load_pem_x509_certificates(chain.encode())) == 2
    # The chain works for the DTLS binding the booth checks.
    fingerprint = "sha-256 " + ":".join(["AB"] * 32)
    signature = sign_fingerprint(fingerprint, key, role="doctor", session="0" * 32)
    peer = verify_binding(fingerprint, signature, chain, role="doctor", session="0" * 32, trust=trust, now=now)
    assert peer.name == "dr.demo"
    # One key per login.
    assert (await doctor.post("/api/identity-key", {"spki": base64.b64encode(b"x").decode()}))[0] == 409


async def test_identity_key_must_be_p256(make_hub: MakeHub, state: State, doctors: Callable[..., DoctorClient]) -> None:
    hub = await make_hub()
    doctor = doctors(hub)
    await doctor.login(state.username, state.password, state.secret)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    spki = p384.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for value in (base64.b64encode(spki).decode(), "not base64!", base64.b64encode(b"garbage").decode()):
        status, body = await doctor.post("/api/identity-key", {"spki": value})
        assert status == 400, body
    status, body = await doctor.post("/api/identity-key", {"spki": "AA", "extra": "x"})
    assert status == 400


# -- configuration and command line ----------------------------------------------------------------------
def test_toml_settings(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        'state = "/srv/hub"\n[doctor]\nhost = "0.0.0.0"\nport = 9443\norigins = ["https://hub.example.org"]\n'
        "[booth]\nport = 9444\n[session]\nidle_timeout = 600\n[lockout]\nmax_failures = 4\n"
    )
    config = load_config(path, port=10443)
    assert config.state == Path("/srv/hub")
    assert (config.host, config.port, config.booth_port) == ("0.0.0.0", 10443, 9444)
    assert config.idle_timeout == 600.0
    assert config.max_failures == 4
    assert config.allowed_origins() == {"https://hub.example.org"}
    path.write_text("[session]\nidle_timeot = 600\n")
    with pytest.raises(ConfigError, match="idle_timeot"):
        load_config(path)
    path.write_text("[session]\nabsolute_lifetime = 86400\n")
    with pytest.raises(ConfigError, match="12 hours"):
        load_config(path)


def test_cli_init_then_serve(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    init = subprocess.run(
        [sys.executable, "-m", "hub.cli", "init", "--dev", "--state", str(state)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
        check=True,
    )
    printed = json.loads(init.stdout)
    saved = json.loads((state / "dev-credentials.json").read_text())
    assert printed["password"] == saved["password"] and printed["totp_secret"] == saved["totp_secret"]
    for secret in (
        "dev-credentials.json",
        "fleet-ca.key",
        "doctor-ca.key",
        "hub.key",
        "booths/booth-0001.key",
        "hub.db",
    ):
        assert (state / secret).stat().st_mode & 0o777 == 0o600, secret
    booth = x509.load_pem_x509_certificate((state / "booths/booth-0001.pem").read_bytes())
    assert booth.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "booth-0001"
    assert booth.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "booth"
    again = subprocess.run(
        [sys.executable, "-m", "hub.cli", "init", "--dev", "--state", str(state)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert again.returncode == 1
    assert (state / "dev-credentials.json").read_text() == json.dumps(saved, indent=2) + "\n"
    serve = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--state", str(state), "--port", "0", "--booth-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert line.startswith("ready doctor=https://127.0.0.1:"), line
        doctor_url = line.split()[1].removeprefix("doctor=")
        context = ssl.create_default_context(cafile=str(state / "fleet-ca.pem"))
        import urllib.request

        with urllib.request.urlopen(doctor_url + "/", context=context, timeout=TIMEOUT) as response:
            assert response.status == 200
    finally:
        serve.terminate()
        assert serve.wait(timeout=10) == 0
        if serve.stdout is not None:
            serve.stdout.close()
