"""Booth enrolment against a real hub over real TLS on loopback: one-time tokens, refusals, renewal, CLIs.

Most tests run the hub in-process (``hub.app.start``, an audit hook that
records events) and the booth's real client (:mod:`kiosk.enrol.client`, in a
thread: it is synchronous); the last one runs both command lines against a
``kiosk-hub serve`` subprocess, as a technician would.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from hub import pki
from hub.app import RunningHub, StatePaths, init_dev_state, start
from hub.config import HubConfig
from hub.enrolment import issue_token
from hub.store import Store
from kiosk.demo.hub import DevHub
from kiosk.enrol.client import enrol, make_csr, renew
from kiosk.enrol.errors import EnrolError, Reason
from kiosk.enrol.files import IdentityDir, new_key

ROOT = Path(__file__).resolve().parents[2]
BOOTH = "booth-0042"
TIMEOUT = 10.0


@dataclass
class Fleet:
    """A hub state, a running hub and what its audit hook saw."""

    state: Path
    hub: RunningHub
    events: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.state)

    @property
    def https(self) -> str:
        return f"https://localhost:{self.hub.doctor_port}"

    @property
    def wss(self) -> str:
        return f"wss://localhost:{self.hub.booth_port}/ws"

    def token(self, booth: str = BOOTH, *, ttl: float = 3600.0, issued: float | None = None) -> str:
        store = Store(self.paths.database)
        try:
            return issue_token(
                store,
                booth,
                ttl=datetime.timedelta(seconds=ttl),
                now=time.time() if issued is None else issued,
                audit=self.audit,
            )
        finally:
            store.close()

    def audit(self, kind: str, fields: Mapping[str, str]) -> None:
        self.events.append((kind, dict(fields)))

    def kinds(self, prefix: str) -> list[tuple[str, dict[str, str]]]:
        return [(kind, fields) for kind, fields in self.events if kind.startswith(prefix)]

    async def enrol(self, token: str, identity: Path, booth: str = BOOTH) -> dict[str, Any]:
        return await asyncio.to_thread(
            enrol, hub=self.https, token=token, booth_id=booth, fleet_ca=self.paths.fleet_ca, identity_dir=identity
        )

    async def post(self, path: str, body: Any, *, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        context = ssl.create_default_context(cafile=str(self.paths.fleet_ca))
        # No Origin, no cookie: a booth, not a browser.
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.https + path, data=data, headers={"Content-Type": content_type}, ssl=context) as response,
        ):
            return response.status, await response.json(content_type=None)


@pytest.fixture(scope="module")
def template_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("enrol-template") / "state"
    init_dev_state(root)
    return root


MakeFleet = Callable[..., Awaitable[Fleet]]


@pytest.fixture
async def make_fleet(template_state: Path, tmp_path: Path) -> AsyncIterator[MakeFleet]:
    fleets: list[Fleet] = []

    async def factory(**settings: Any) -> Fleet:
        root = tmp_path / f"state{len(fleets)}"
        shutil.copytree(template_state, root)
        fleet = Fleet(root, None)  # type: ignore[arg-type]  # the hub needs the hook first
        fleet.hub = await start(HubConfig(state=root, port=0, booth_port=0, **settings), audit=fleet.audit)
        fleets.append(fleet)
        return fleet

    yield factory
    for fleet in fleets:
        await fleet.hub.stop()


def booth_context(fleet: Fleet, identity: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(fleet.paths.fleet_ca))
    context.load_cert_chain(identity / "booth.pem", identity / "booth.key")
    return context


async def connect_as_booth(fleet: Fleet, identity: Path) -> str:
    """Open the booth's signalling WebSocket with the enrolled pair; the booth id the hub sees."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(fleet.wss, ssl=booth_context(fleet, identity))
        try:
            for _ in range(100):
                if fleet.hub.room.booths:
                    break
                await asyncio.sleep(0.05)
            return ",".join(fleet.hub.room.booths)
        finally:
            await ws.close()


def refusal(caught: pytest.ExceptionInfo[EnrolError]) -> tuple[Reason, str, int]:
    return caught.value.reason, caught.value.hub_code, caught.value.status


# -- enrolment -------------------------------------------------------------------------------------------------
async def test_enrol_with_a_one_time_token_then_connect(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = await make_fleet()
    token = fleet.token()
    identity = tmp_path / "identity"
    result = await fleet.enrol(token, identity)
    assert result["status"] == "enrolled" and result["booth_id"] == BOOTH
    assert result["key_storage"] == "file" and isinstance(result["tpm_present"], bool)
    cert = x509.load_pem_x509_certificate((identity / "booth.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == BOOTH
    assert f"{cert.serial_number:x}" == result["serial"]
    assert (identity / "booth.key").stat().st_mode & 0o777 == 0o600
    assert identity.stat().st_mode & 0o777 == 0o700
    # The booth is now a member of the fleet: the mutual-TLS listener lets it in under its own name.
    assert await connect_as_booth(fleet, identity) == BOOTH
    ok = fleet.kinds("enrol_ok")
    assert len(ok) == 1 and ok[0][1]["booth"] == BOOTH and ok[0][1]["serial"] == result["serial"]
    issued = fleet.kinds("enrol_token_issued")
    assert issued[0][1]["token"] == ok[0][1]["token"]  # the audit ties use to issue, by the hash's prefix
    assert token not in json.dumps(fleet.events)
    # Running it again with a valid certificate in place keeps it and does not ask the hub.
    again = await fleet.enrol(token, identity)
    assert again["status"] == "already_enrolled" and again["serial"] == result["serial"]
    assert len(fleet.kinds("enrol_")) == 2


async def test_enrolment_replaces_a_broken_pair(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = await make_fleet()
    identity = tmp_path / "identity"
    await fleet.enrol(fleet.token(), identity)
    (identity / "booth.pem").write_text("not a certificate")
    with pytest.raises(EnrolError) as caught:  # renewal needs a working pair
        await asyncio.to_thread(renew, hub=fleet.wss, fleet_ca=fleet.paths.fleet_ca, identity_dir=identity)
    assert caught.value.reason is Reason.IDENTITY
    result = await fleet.enrol(fleet.token(), identity)
    assert result["status"] == "enrolled"
    assert await connect_as_booth(fleet, identity) == BOOTH


async def test_a_token_is_used_once(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = await make_fleet()
    token = fleet.token()
    await fleet.enrol(token, tmp_path / "first")
    with pytest.raises(EnrolError) as caught:
        await fleet.enrol(token, tmp_path / "second")
    assert refusal(caught) == (Reason.REFUSED, "token_used", 401)
    assert not (tmp_path / "second" / "booth.pem").exists()
    assert not (tmp_path / "second" / "booth.key").exists()
    assert fleet.kinds("enrol_refused")[-1][1]["reason"] == "token_used"


async def test_racing_enrolments_with_one_token_give_one_certificate(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    token = fleet.token()
    csrs = [make_csr(new_key(), BOOTH) for _ in range(6)]
    answers = await asyncio.gather(*(fleet.post("/api/enrol", {"token": token, "csr": csr}) for csr in csrs))
    assert sorted(status for status, _ in answers) == [200, 401, 401, 401, 401, 401]
    assert {body.get("error") for status, body in answers if status != 200} == {"token_used"}


async def test_a_lost_answer_is_asked_for_again_with_the_same_key(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = await make_fleet()
    token = fleet.token()
    identity = tmp_path / "identity"
    directory = IdentityDir(identity)
    directory.prepare()
    key = new_key()
    directory.keep_pending_key(key)  # what kiosk-enrol does before it asks
    # The hub issues, but the answer never reaches the booth.
    status, lost = await fleet.post("/api/enrol", {"token": token, "csr": make_csr(key, BOOTH)})
    assert status == 200
    # The retry asks with the pending key: the token is spent, yet the same certificate comes back.
    result = await fleet.enrol(token, identity)
    assert result["status"] == "enrolled" and result["serial"] == lost["serial"]
    assert fleet.kinds("enrol_ok")[-1][1]["repeat"] == "yes"
    # Another key with the spent token gets nothing.
    status, body = await fleet.post("/api/enrol", {"token": token, "csr": make_csr(new_key(), BOOTH)})
    assert (status, body["error"]) == (401, "token_used")

    # The same for a renewal: issued, answer lost, asked again from the (now superseded) old pair.
    renewal_key = new_key()
    directory.keep_pending_key(renewal_key)
    url = f"https://localhost:{fleet.hub.booth_port}/renew"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json={"csr": make_csr(renewal_key, BOOTH)}, ssl=booth_context(fleet, identity)) as response,
    ):
        assert response.status == 200
        renewed = await response.json()
    result = await asyncio.to_thread(
        renew, hub=fleet.wss, fleet_ca=fleet.paths.fleet_ca, identity_dir=identity, window=datetime.timedelta(9999)
    )
    assert result["status"] == "renewed" and result["serial"] == renewed["serial"]
    assert fleet.kinds("renew_ok")[-1][1]["repeat"] == "yes"
    installed = IdentityDir(identity).load()
    assert installed is not None and installed.key.private_numbers() == renewal_key.private_numbers()
    assert await connect_as_booth(fleet, identity) == BOOTH


async def test_an_expired_token_is_refused(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = await make_fleet()
    token = fleet.token(ttl=3600, issued=time.time() - 3601)
    with pytest.raises(EnrolError) as caught:
        await fleet.enrol(token, tmp_path / "identity")
    assert refusal(caught) == (Reason.REFUSED, "token_expired", 401)
    assert fleet.kinds("enrol_refused")[-1][1] | {"client": ""} == {
        "booth": BOOTH,
        "client": "",
        "reason": "token_expired",
        "token": fleet.kinds("enrol_token_issued")[0][1]["token"],
    }


async def test_a_csr_for_another_booth_is_refused_and_the_token_survives(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = await make_fleet()
    token = fleet.token(BOOTH)
    with pytest.raises(EnrolError) as caught:
        await fleet.enrol(token, tmp_path / "wrong", booth="booth-0043")
    assert refusal(caught) == (Reason.REFUSED, "name_mismatch", 403)
    assert fleet.kinds("enrol_refused")[-1][1]["reason"] == "name_mismatch"
    # The existing booth's name is refused just the same: a token for one booth cannot mint another.
    status, body = await fleet.post("/api/enrol", {"token": token, "csr": make_csr(new_key(), "booth-0001")})
    assert (status, body["error"]) == (403, "name_mismatch")
    # A typo does not burn the token: the right booth still enrols with it.
    assert (await fleet.enrol(token, tmp_path / "right"))["status"] == "enrolled"


async def test_malformed_requests_get_typed_refusals(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    token = fleet.token()
    csr = make_csr(new_key(), BOOTH)
    cases: list[tuple[Any, int, str]] = [
        (b"{not json", 400, "bad_request"),
        ([token, csr], 400, "bad_request"),
        ({"token": token}, 400, "bad_request"),
        ({"token": token, "csr": csr, "booth": BOOTH}, 400, "bad_request"),
        ({"token": "x", "csr": csr}, 401, "bad_token"),
        ({"token": "B" * 43, "csr": csr}, 401, "token_unknown"),
        ({"token": token, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"}, 400, "bad_csr"),
        (
            {"token": token, "csr": pki.pem(x509.load_pem_x509_certificate(fleet.paths.fleet_ca.read_bytes()))},
            400,
            "bad_csr",
        ),
    ]
    for body, status, code in cases:
        got_status, got = await fleet.post("/api/enrol", body)
        assert (got_status, got["error"]) == (status, code), body
        assert isinstance(got["message"], str)
    # A form post (a cross-site page could send one) is refused before the handler.
    assert (await fleet.post("/api/enrol", b"token=x", content_type="application/x-www-form-urlencoded"))[0] == 415
    # None of that spent the token.
    assert (await fleet.post("/api/enrol", {"token": token, "csr": csr}))[0] == 200
    reasons = [fields["reason"] for _, fields in fleet.kinds("enrol_refused")]
    assert reasons == ["bad_request"] * 4 + ["bad_token", "token_unknown", "bad_csr", "bad_csr"]


async def test_enrolment_attempts_are_rate_limited(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet(enrol_burst=3, enrol_per_minute=1.0)
    csr = make_csr(new_key(), BOOTH)
    statuses = [(await fleet.post("/api/enrol", {"token": "B" * 43, "csr": csr}))[0] for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    assert fleet.kinds("enrol_refused")[-1][1]["reason"] == "rate_limited"


# -- renewal ----------------------------------------------------------------------------------------------------
def _install_expiring(fleet: Fleet, identity: Path, *, days_left: int) -> x509.Certificate:
    """A booth certificate from this fleet that expires in ``days_left`` days, installed in ``identity``."""
    issuer = pki.load_issuer(fleet.paths.fleet_ca, fleet.paths.fleet_ca_key)
    key = new_key()
    issued_at = datetime.datetime.now(datetime.UTC) - pki.BOOTH_LIFETIME + datetime.timedelta(days=days_left)
    cert = pki.issue_booth_certificate(issuer, key.public_key(), BOOTH, now=issued_at)
    IdentityDir(identity).install(key, cert)
    return cert


async def test_renewal_before_expiry_gives_a_new_key_and_certificate(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = await make_fleet()
    identity = tmp_path / "identity"
    old = _install_expiring(fleet, identity, days_left=10)
    old_key = (identity / "booth.key").read_bytes()
    copy = tmp_path / "copy"
    shutil.copytree(identity, copy)
    # Outside the window: nothing to do, the hub is not asked.
    kept = await asyncio.to_thread(
        renew, hub=fleet.wss, fleet_ca=fleet.paths.fleet_ca, identity_dir=identity, window=datetime.timedelta(days=5)
    )
    assert kept["status"] == "valid" and kept["serial"] == f"{old.serial_number:x}"
    assert not fleet.kinds("renew")
    # Inside the default 30-day window: renewed over mutual TLS with the old pair.
    result = await asyncio.to_thread(renew, hub=fleet.wss, fleet_ca=fleet.paths.fleet_ca, identity_dir=identity)
    assert result["status"] == "renewed" and result["booth_id"] == BOOTH
    new = x509.load_pem_x509_certificate((identity / "booth.pem").read_bytes())
    assert new.serial_number != old.serial_number
    assert new.not_valid_after_utc - old.not_valid_after_utc > datetime.timedelta(days=365)
    assert (identity / "booth.key").read_bytes() != old_key
    assert sorted(p.name for p in identity.iterdir()) == ["booth.key", "booth.pem"]
    ok = fleet.kinds("renew_ok")
    assert ok == [("renew_ok", {"booth": BOOTH, "serial": result["serial"], "previous": f"{old.serial_number:x}"})]
    assert await connect_as_booth(fleet, identity) == BOOTH
    # The superseded pair (a copy someone kept) cannot renew itself into a fresh certificate.
    with pytest.raises(EnrolError) as caught:
        await asyncio.to_thread(renew, hub=fleet.wss, fleet_ca=fleet.paths.fleet_ca, identity_dir=copy)
    assert refusal(caught) == (Reason.REFUSED, "superseded", 403)
    # Neither can the renewed one once the booth has enrolled again with a new token.
    token = fleet.token()
    (tmp_path / "again" / "identity").parent.mkdir()
    await fleet.enrol(token, tmp_path / "again" / "identity")
    with pytest.raises(EnrolError) as caught:
        await asyncio.to_thread(
            renew, hub=fleet.wss, fleet_ca=fleet.paths.fleet_ca, identity_dir=identity, window=datetime.timedelta(9999)
        )
    assert refusal(caught) == (Reason.REFUSED, "superseded", 403)
    assert [f["reason"] for _, f in fleet.kinds("renew_refused")] == ["superseded", "superseded"]


async def test_racing_renewals_with_one_certificate_give_one_new_certificate(
    make_fleet: MakeFleet, tmp_path: Path
) -> None:
    fleet = await make_fleet()
    identity = tmp_path / "identity"
    await fleet.enrol(fleet.token(), identity)
    context = booth_context(fleet, identity)

    async def post(http: aiohttp.ClientSession) -> int:
        url = f"https://localhost:{fleet.hub.booth_port}/renew"
        async with http.post(url, json={"csr": make_csr(new_key(), BOOTH)}, ssl=context) as response:
            return response.status

    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(*(post(http) for _ in range(5)))
    assert sorted(statuses) == [200, 403, 403, 403, 403]


async def test_renewal_refusals(make_fleet: MakeFleet, tmp_path: Path) -> None:
    fleet = await make_fleet()
    identity = tmp_path / "identity"
    _install_expiring(fleet, identity, days_left=10)
    key = IdentityDir(identity).load()
    assert key is not None
    context = booth_context(fleet, identity)

    async def post(csr: str) -> tuple[int, dict[str, Any]]:
        url = f"https://localhost:{fleet.hub.booth_port}/renew"
        async with aiohttp.ClientSession() as http, http.post(url, json={"csr": csr}, ssl=context) as r:
            return r.status, await r.json(content_type=None)

    # The same key again, or another booth's name: refused, typed.
    status, body = await post(make_csr(key.key, BOOTH))
    assert (status, body["error"]) == (400, "same_key")
    status, body = await post(make_csr(new_key(), "booth-0001"))
    assert (status, body["error"]) == (403, "name_mismatch")
    status, body = await post("not a csr")
    assert (status, body["error"]) == (400, "bad_csr")
    assert [f["reason"] for _, f in fleet.kinds("renew_refused")] == ["same_key", "name_mismatch", "bad_csr"]
    # Without a client certificate the booth listener does not even finish the handshake.
    async with aiohttp.ClientSession() as http:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            async with http.post(
                f"https://localhost:{fleet.hub.booth_port}/renew",
                json={"csr": make_csr(new_key(), BOOTH)},
                ssl=ssl.create_default_context(cafile=str(fleet.paths.fleet_ca)),
            ) as response:
                await response.read()
    # An expired certificate cannot renew itself: the booth needs a new token.
    expired = tmp_path / "expired"
    _install_expiring(fleet, expired, days_left=-1)
    with pytest.raises(EnrolError) as caught:
        await asyncio.to_thread(renew, hub=fleet.wss, fleet_ca=fleet.paths.fleet_ca, identity_dir=expired)
    assert caught.value.reason is Reason.UNREACHABLE
    # And a booth never enrolled has nothing to renew.
    with pytest.raises(EnrolError) as caught:
        await asyncio.to_thread(renew, hub=fleet.wss, fleet_ca=fleet.paths.fleet_ca, identity_dir=tmp_path / "none")
    assert caught.value.reason is Reason.NOT_ENROLLED


# -- the command lines against a served hub -------------------------------------------------------------------
def enrol_command() -> list[str]:
    script = Path(sys.executable).with_name("kiosk-enrol")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kiosk.enrol.cli"]


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, **kwargs)


@pytest.mark.timeout(180)
def test_technician_flow_with_the_command_lines(tmp_path: Path) -> None:
    with DevHub(tmp_path / "hub") as hub:
        hub_command = hub.command
        issued = run([*hub_command, "enrol", "token", "--state", str(hub.state), "--booth", BOOTH, "--ttl", "2h"])
        assert issued.returncode == 0, issued.stderr
        token = json.loads(issued.stdout)["token"]
        (tmp_path / "token").write_text(token + "\n")
        identity = tmp_path / "identity"
        common = ["--fleet-ca", str(hub.paths.fleet_ca), "--identity-dir", str(identity)]
        enrolled = run(
            [*enrol_command(), "enrol", "--hub", hub.origin, "--token-file", "-", "--booth-id", BOOTH, *common],
            input=token,
        )
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        assert json.loads(enrolled.stdout)["status"] == "enrolled"
        elsewhere = ["--booth-id", BOOTH, "--fleet-ca", str(hub.paths.fleet_ca), "--identity-dir", str(tmp_path / "x")]
        reused = run(
            [*enrol_command(), "enrol", "--hub", hub.origin, "--token-file", str(tmp_path / "token"), *elsewhere]
        )
        assert reused.returncode == 1
        assert json.loads(reused.stdout) | {"message": ""} == {
            "status": "error",
            "error": "refused",
            "hub_error": "token_used",
            "http_status": 401,
            "message": "",
        }
        nothing = run([*enrol_command(), "renew", "--hub", hub.booth_url, *common])
        assert nothing.returncode == 0 and json.loads(nothing.stdout)["status"] == "valid"
        renewed = run([*enrol_command(), "renew", "--hub", hub.booth_url, *common, "--before-days", "2000"])
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        assert json.loads(renewed.stdout)["status"] == "renewed"
        usage = run([*enrol_command(), "enrol", "--hub", "http://x", "--token", token, "--booth-id", BOOTH, *common])
        assert usage.returncode == 2 and json.loads(usage.stdout)["error"] == "usage"
        bad_ttl = run([*hub_command, "enrol", "token", "--state", str(hub.state), "--booth", BOOTH, "--ttl", "90d"])
        assert bad_ttl.returncode == 2
        log = hub.log.read_text()
    assert "security event enrol_ok" in log and "security event renew_ok" in log
    assert token not in log
    key = serialization.load_pem_private_key((identity / "booth.key").read_bytes(), None)
    assert (
        key.public_key().public_numbers()
        == x509.load_pem_x509_certificate(  # type: ignore[union-attr]
            (identity / "booth.pem").read_bytes()
        )
        .public_key()
        .public_numbers()
    )
