"""WebAuthn second factor without sockets: hub.webauthn and Accounts over a real SQLite store, with the
software authenticator of tests/support_webauthn.py playing browser and security key."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import itertools
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import webauthn
from hub.accounts import Accounts, Doctor, LoginError, LoginReason, opaque
from hub.config import HubConfig
from hub.store import Account, Challenge, Store, hash_session_id
from tests.support_webauthn import UP, SoftKey, b64url, unb64url

ORIGIN = "https://localhost:8443"
RP_ID = "localhost"
PASSWORD = "a long enough password"
NOW = 1_700_000_000.0


@dataclass
class Hub:
    store: Store
    accounts: Accounts
    events: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def active(self, username: str = "dr.a", now: float = NOW) -> Doctor:
        session_id = secrets.token_urlsafe(32)
        self.store.create_session(session_id, username, stage="active", csrf="c", now=now, expires=now + 3600)
        return self.accounts.authenticate(session_id, now=now, touch=False)

    def pending(self, username: str = "dr.a", now: float = NOW) -> str:
        session_id = secrets.token_urlsafe(32)
        self.store.create_session(session_id, username, stage="pending", csrf="c", now=now, expires=now + 300)
        return session_id

    def register(self, key: SoftKey, username: str = "dr.a", origin: str = ORIGIN, now: float = NOW) -> int:
        doctor = self.active(username, now)
        options = self.accounts.webauthn_registration_options(doctor, origin=origin, now=now)
        credential = webauthn.check_credential(key.create(options, origin), "register")
        return self.accounts.register_webauthn(doctor, credential, origin=origin, name=None, now=now)

    def login_options(self, session_id: str, now: float = NOW) -> dict[str, Any]:
        return self.accounts.webauthn_login_options(session_id, origin=ORIGIN, now=now)

    def step(self, session_id: str, assertion: dict[str, Any], now: float = NOW) -> Any:
        credential = webauthn.check_credential(assertion, "login")
        return self.accounts.webauthn_step(session_id, credential, origin=ORIGIN, client="10.0.0.1", now=now)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with two accounts (argon2 hashing once per module)."""
    path = tmp_path_factory.mktemp("webauthn") / "hub.db"
    store = Store(path)
    accounts = Accounts(store, HubConfig(state=path.parent))
    accounts.create_account("dr.a", "Dr A", PASSWORD, now=NOW)
    accounts.create_account("dr.b", "Dr B", PASSWORD, now=NOW)
    store.close()
    return path


@pytest.fixture
def hub(template: Path, tmp_path: Path) -> Iterator[Hub]:
    path = tmp_path / "hub.db"
    path.write_bytes(template.read_bytes())
    store = Store(path)
    events: list[tuple[str, dict[str, str]]] = []
    accounts = Accounts(
        store,
        HubConfig(state=tmp_path, max_failures=100, rate_burst=1000),
        audit=lambda kind, fields: events.append((kind, dict(fields))),
    )
    yield Hub(store, accounts, events)
    store.close()


def refused(hub: Hub, session_id: str, assertion: dict[str, Any], now: float = NOW) -> LoginReason:
    with pytest.raises(LoginError) as error:
        hub.step(session_id, assertion, now)
    return error.value.reason


# -- the ceremonies --------------------------------------------------------------------------------------
def test_register_then_log_in_with_the_key(hub: Hub) -> None:
    key = SoftKey(RP_ID)
    doctor = hub.active()
    assert hub.accounts.second_factors("dr.a") == ("totp",)
    options = hub.accounts.webauthn_registration_options(doctor, origin=ORIGIN, now=NOW)
    assert options["rp"] == {"name": webauthn.RP_NAME, "id": RP_ID}
    assert options["user"]["name"] == "dr.a" and options["user"]["displayName"] == "Dr A"
    assert len(unb64url(options["user"]["id"])) == 64  # random, not the name
    assert options["attestation"] == "none"
    assert options["authenticatorSelection"]["residentKey"] == "discouraged"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["excludeCredentials"] == []
    assert options["timeout"] == 120_000
    assert len(unb64url(options["challenge"])) == 32
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    credential = webauthn.check_credential(key.create(options, ORIGIN), "register")
    assert credential.transports == ("usb", "nfc")  # unknown transports dropped
    assert hub.accounts.register_webauthn(doctor, credential, origin=ORIGIN, name="Blue key", now=NOW) == 1
    (stored,) = hub.store.credentials("dr.a")
    assert (stored.credential_id, stored.name, stored.sign_count, stored.last_used) == (
        key.credential_id,
        "Blue key",
        0,
        None,
    )
    assert ("webauthn_registered", {"account": "dr.a", "credential": opaque(key.id)}) in hub.events
    # A second registration excludes the first key.
    again = hub.accounts.webauthn_registration_options(doctor, origin=ORIGIN, now=NOW)
    assert again["excludeCredentials"] == [{"id": key.id, "type": "public-key", "transports": ["usb", "nfc"]}]
    assert again["user"]["id"] == options["user"]["id"]

    assert hub.accounts.second_factors("dr.a") == ("webauthn", "totp")
    pending = hub.pending()
    request = hub.login_options(pending)
    assert request["rpId"] == RP_ID
    assert request["userVerification"] == "preferred"
    assert request["allowCredentials"] == [{"id": key.id, "type": "public-key", "transports": ["usb", "nfc"]}]
    issued = hub.step(pending, key.get(request, ORIGIN, user_handle=True), NOW + 5)
    assert hub.store.session(pending) is None  # promoted under a fresh id
    assert hub.accounts.authenticate(issued.session_id, now=NOW + 6).username == "dr.a"
    assert ("login_ok", {"account": "dr.a", "factor": "webauthn"}) in hub.events
    (used,) = hub.store.credentials("dr.a")
    assert (used.sign_count, used.last_used) == (1, NOW + 5)


def test_user_verification_preferred_not_required_but_presence_is(hub: Hub) -> None:
    key = SoftKey(RP_ID)
    hub.register(key)
    pending = hub.pending()
    hub.step(pending, key.get(hub.login_options(pending), ORIGIN, flags=UP))
    pending = hub.pending()
    assert (
        refused(hub, pending, key.get(hub.login_options(pending), ORIGIN, flags=0)) is LoginReason.INVALID_CREDENTIALS
    )


def test_assertion_from_another_origin_or_for_another_rp_id_is_a_failure(hub: Hub) -> None:
    key = SoftKey(RP_ID)
    hub.register(key)
    pending = hub.pending()
    evil = key.get(hub.login_options(pending), "https://evil.example")
    assert refused(hub, pending, evil) is LoginReason.INVALID_CREDENTIALS
    wrong_rp = key.get(hub.login_options(pending), ORIGIN, rp_id="evil.example")
    assert refused(hub, pending, wrong_rp) is LoginReason.INVALID_CREDENTIALS
    assert hub.store.failures("dr.a")[0] == 2
    assert hub.events.count(("login_failed", {"account": opaque("dr.a"), "step": "webauthn"})) == 2


def test_answers_made_in_a_cross_origin_frame_are_refused(hub: Hub) -> None:
    key = SoftKey(RP_ID)
    hub.register(key)
    for extra in ({"crossOrigin": True}, {"topOrigin": "https://evil.example"}):
        pending = hub.pending()
        options = hub.login_options(pending)
        framed = key.get(options, ORIGIN)
        data = json.loads(unb64url(framed["response"]["clientDataJSON"]))
        framed["response"]["clientDataJSON"] = b64url(json.dumps({**data, **extra}).encode())
        # Re-sign, so only the frame is wrong.
        auth_data = unb64url(framed["response"]["authenticatorData"])
        digest = hashlib.sha256(unb64url(framed["response"]["clientDataJSON"])).digest()
        framed["response"]["signature"] = b64url(key.key.sign(auth_data + digest, ec.ECDSA(hashes.SHA256())))
        assert refused(hub, pending, framed) is LoginReason.INVALID_CREDENTIALS


def test_registration_from_another_origin_or_rp_id_is_refused(hub: Hub) -> None:
    doctor = hub.active()
    for origin, rp_id in (("https://evil.example", None), (ORIGIN, "evil.example")):
        options = hub.accounts.webauthn_registration_options(doctor, origin=ORIGIN, now=NOW)
        credential = webauthn.check_credential(SoftKey(RP_ID).create(options, origin, rp_id=rp_id), "register")
        with pytest.raises(webauthn.WebAuthnError) as error:
            hub.accounts.register_webauthn(doctor, credential, origin=ORIGIN, name=None, now=NOW)
        assert (error.value.status, error.value.code) == (400, "webauthn_refused")
    assert hub.store.credential_count("dr.a") == 0
    assert hub.kinds().count("webauthn_register_refused") == 2


def test_challenges_are_single_use_session_bound_and_expire(hub: Hub) -> None:
    key = SoftKey(RP_ID)
    hub.register(key)
    # A refused answer uses the challenge up: the right answer to it comes too late.
    pending = hub.pending()
    options = hub.login_options(pending)
    good = key.get(options, ORIGIN)
    forged = copy.deepcopy(good)
    forged["response"]["signature"] = b64url(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    assert refused(hub, pending, forged) is LoginReason.INVALID_CREDENTIALS
    assert refused(hub, pending, good) is LoginReason.INVALID_CREDENTIALS
    # No options asked for: no challenge at all.
    unasked = key.get({"rpId": RP_ID, "challenge": options["challenge"]}, ORIGIN)
    assert refused(hub, hub.pending(), unasked) is LoginReason.INVALID_CREDENTIALS
    # Answered in another session than the one it was issued to.
    first, second = hub.pending(), hub.pending()
    stolen = key.get(hub.login_options(first), ORIGIN)
    hub.login_options(second)
    assert refused(hub, second, stolen) is LoginReason.INVALID_CREDENTIALS
    # A successful login replayed in a new session.
    pending = hub.pending()
    used = key.get(hub.login_options(pending), ORIGIN)
    hub.step(pending, used)
    again = hub.pending()
    hub.login_options(again)
    assert refused(hub, again, copy.deepcopy(used)) is LoginReason.INVALID_CREDENTIALS
    # Expired after CHALLENGE_TTL.
    late = hub.pending()
    answer = key.get(hub.login_options(late), ORIGIN)
    assert refused(hub, late, answer, NOW + webauthn.CHALLENGE_TTL + 1) is LoginReason.INVALID_CREDENTIALS


def test_registration_challenge_is_single_use(hub: Hub) -> None:
    doctor = hub.active()
    options = hub.accounts.webauthn_registration_options(doctor, origin=ORIGIN, now=NOW)
    answer = SoftKey(RP_ID).create(options, ORIGIN)
    credential = webauthn.check_credential(answer, "register")
    assert hub.accounts.register_webauthn(doctor, credential, origin=ORIGIN, name=None, now=NOW) == 1
    replay = webauthn.check_credential(SoftKey(RP_ID).create(options, ORIGIN), "register")
    with pytest.raises(webauthn.WebAuthnError, match="did not verify"):
        hub.accounts.register_webauthn(doctor, replay, origin=ORIGIN, name=None, now=NOW)


def test_counter_must_move_forward_unless_the_key_keeps_none(hub: Hub) -> None:
    key = SoftKey(RP_ID, sign_count=4)
    hub.register(key)
    pending = hub.pending()
    hub.step(pending, key.get(hub.login_options(pending), ORIGIN))  # 5
    for stale in (5, 3, 0):
        pending = hub.pending()
        stale_answer = key.get(hub.login_options(pending), ORIGIN, sign_count=stale)
        assert refused(hub, pending, stale_answer) is LoginReason.INVALID_CREDENTIALS
    assert hub.store.credentials("dr.a")[0].sign_count == 5
    pending = hub.pending()
    hub.step(pending, key.get(hub.login_options(pending), ORIGIN, sign_count=9))
    # A key without a counter always says 0, and that is fine.
    passkey = SoftKey(RP_ID, counter_step=0)
    hub.register(passkey, "dr.b")
    for _ in range(2):
        pending = hub.pending("dr.b")
        hub.step(pending, passkey.get(hub.login_options(pending), ORIGIN))
    assert hub.store.credentials("dr.b")[0].sign_count == 0


def test_counter_regression_is_refused_by_the_store_too(hub: Hub) -> None:
    key = SoftKey(RP_ID, sign_count=10)
    hub.register(key)
    assert not hub.store.advance_sign_count(key.credential_id, 10, NOW)
    assert not hub.store.advance_sign_count(key.credential_id, 0, NOW)
    assert hub.store.advance_sign_count(key.credential_id, 11, NOW)


def test_unknown_key_and_another_accounts_key_are_failures(hub: Hub) -> None:
    mine, theirs = SoftKey(RP_ID), SoftKey(RP_ID)
    hub.register(mine, "dr.a")
    hub.register(theirs, "dr.b")
    pending = hub.pending("dr.a")
    stranger = SoftKey(RP_ID).get(hub.login_options(pending), ORIGIN)
    assert refused(hub, pending, stranger) is LoginReason.INVALID_CREDENTIALS
    # dr.b's key signs dr.a's challenge correctly: still not dr.a's key.
    assert refused(hub, pending, theirs.get(hub.login_options(pending), ORIGIN)) is LoginReason.INVALID_CREDENTIALS
    # dr.a's key, claiming dr.b's user handle.
    answer = mine.get(hub.login_options(pending), ORIGIN)
    answer["response"]["userHandle"] = b64url(hub.store.user_handle("dr.b") or b"")
    assert refused(hub, pending, answer) is LoginReason.INVALID_CREDENTIALS
    assert hub.store.failures("dr.a")[0] == 3
    # The right key and handle still work in that session.
    hub.step(pending, mine.get(hub.login_options(pending), ORIGIN, user_handle=True))


def test_failures_count_towards_the_lockout_with_totp_ones(hub: Hub) -> None:
    hub.accounts.config = dataclasses.replace(hub.accounts.config, max_failures=3)
    key = SoftKey(RP_ID)
    hub.register(key)
    pending = hub.pending()
    with pytest.raises(LoginError):
        asyncio.run(hub.accounts.totp_step(pending, "000000", client="10.0.0.1", now=NOW))  # a wrong TOTP code
    evil = key.get(hub.login_options(pending), "https://evil.example")
    assert refused(hub, pending, evil) is LoginReason.INVALID_CREDENTIALS
    assert refused(hub, pending, key.get(hub.login_options(pending), "https://evil.example")) is LoginReason.LOCKED
    assert "account_locked" in hub.kinds()
    assert hub.store.session(pending) is None  # the pending session went with the lock
    # Locked: a new password-checked session cannot even ask for options, let alone answer.
    with pytest.raises(LoginError) as error:
        hub.login_options(hub.pending())
    assert error.value.reason is LoginReason.LOCKED


def test_rate_limit_applies_to_the_webauthn_step(hub: Hub) -> None:
    key = SoftKey(RP_ID)
    hub.register(key)
    hub.accounts.buckets.burst = 1.0
    hub.accounts.buckets.rate = 1e-9
    pending = hub.pending()
    assert refused(hub, pending, key.get(hub.login_options(pending), "https://evil.example"))
    assert refused(hub, pending, key.get(hub.login_options(pending), ORIGIN)) is LoginReason.RATE_LIMITED


def test_login_options_need_a_registered_key_and_a_pending_session(hub: Hub) -> None:
    with pytest.raises(webauthn.WebAuthnError) as error:
        hub.login_options(hub.pending())
    assert (error.value.status, error.value.code) == (409, "no_credentials")
    hub.register(SoftKey(RP_ID))
    with pytest.raises(LoginError) as wrong:
        hub.login_options("no-such-session")
    assert wrong.value.reason is LoginReason.NO_SESSION
    active_id = secrets.token_urlsafe(32)
    hub.store.create_session(active_id, "dr.a", stage="active", csrf="c", now=NOW, expires=NOW + 60)
    with pytest.raises(LoginError) as stage:
        hub.login_options(active_id)
    assert stage.value.reason is LoginReason.WRONG_STAGE


def test_same_key_twice_and_too_many_keys_are_conflicts(hub: Hub) -> None:
    key = SoftKey(RP_ID)
    hub.register(key)
    with pytest.raises(webauthn.WebAuthnError) as twice:
        hub.register(key)
    assert (twice.value.status, twice.value.code) == (409, "credential_exists")
    with pytest.raises(webauthn.WebAuthnError):
        hub.register(key, "dr.b")  # nor under another account
    for _ in range(webauthn.MAX_CREDENTIALS - 1):
        hub.register(SoftKey(RP_ID))
    with pytest.raises(webauthn.WebAuthnError) as full:
        hub.register(SoftKey(RP_ID))
    assert (full.value.status, full.value.code) == (409, "too_many_credentials")


def test_key_names(hub: Hub) -> None:
    assert webauthn.check_name(None, 2) == "Security key 3"
    assert webauthn.check_name("  Yubi  ", 0) == "Yubi"
    for bad in ("", "   ", "x" * 65, "bell\a"):
        with pytest.raises(webauthn.WebAuthnError):
            webauthn.check_name(bad, 0)


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://localhost:8443", "localhost"),
        ("https://hub.example.org", "hub.example.org"),
        ("https://127.0.0.1:8443", None),
        ("https://[::1]:8443", None),
        ("https://10.1.2.3", None),
    ],
)
def test_rp_id_is_the_origin_host_and_never_an_ip_address(origin: str, expected: str | None) -> None:
    if expected is not None:
        assert webauthn.rp_id_for(origin) == expected
        return
    with pytest.raises(webauthn.WebAuthnError) as error:
        webauthn.rp_id_for(origin)
    assert (error.value.status, error.value.code) == (400, "ip_origin")
    assert str(error.value) == "use the host name, WebAuthn refuses IP addresses"


def test_ip_origin_refused_before_any_challenge_is_stored(hub: Hub) -> None:
    doctor = hub.active()
    with pytest.raises(webauthn.WebAuthnError, match="IP addresses"):
        hub.accounts.webauthn_registration_options(doctor, origin="https://127.0.0.1:8443", now=NOW)
    assert hub.store.take_challenge(doctor.session.id_hash, webauthn.REGISTER, NOW) is None


def test_store_challenges(hub: Hub) -> None:
    session_id = hub.pending()
    id_hash = hash_session_id(session_id)
    hub.store.put_challenge(id_hash, Challenge("login", b"c1", ORIGIN, NOW + 10))
    hub.store.put_challenge(id_hash, Challenge("login", b"c2", ORIGIN, NOW + 10))  # replaces
    found = hub.store.take_challenge(id_hash, "login", NOW)
    assert found is not None and found.challenge == b"c2"
    assert hub.store.take_challenge(id_hash, "login", NOW) is None
    hub.store.put_challenge(id_hash, Challenge("register", b"c3", ORIGIN, NOW + 10))
    assert hub.store.take_challenge(id_hash, "login", NOW) is None  # wrong purpose, and gone
    assert hub.store.take_challenge(id_hash, "register", NOW) is None
    hub.store.put_challenge(id_hash, Challenge("login", b"c4", ORIGIN, NOW + 10))
    hub.store.delete_session(id_hash)  # goes with its session
    hub.store.create_session(session_id, "dr.a", stage="pending", csrf="c", now=NOW, expires=NOW + 60)
    assert hub.store.take_challenge(id_hash, "login", NOW) is None


def test_nothing_secret_is_logged(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hub.accounts.audit = lambda kind, fields: logging.getLogger("hub.accounts").info("%s %s", kind, fields)
    key = SoftKey(RP_ID)
    doctor = hub.active()
    options = hub.accounts.webauthn_registration_options(doctor, origin=ORIGIN, now=NOW)
    answer = key.create(options, ORIGIN)
    bad = webauthn.check_credential(key.create(options, "https://evil.example"), "register")
    with pytest.raises(webauthn.WebAuthnError):
        hub.accounts.register_webauthn(doctor, bad, origin=ORIGIN, name=None, now=NOW)
    options = hub.accounts.webauthn_registration_options(doctor, origin=ORIGIN, now=NOW)
    hub.accounts.register_webauthn(
        doctor, webauthn.check_credential(key.create(options, ORIGIN), "register"), origin=ORIGIN, name=None, now=NOW
    )
    pending = hub.pending()
    request = hub.login_options(pending)
    refused(hub, pending, key.get(request, "https://evil.example"))
    request2 = hub.login_options(pending)
    hub.step(pending, key.get(request2, ORIGIN))
    text = caplog.text
    for secret in (options["challenge"], request["challenge"], request2["challenge"], key.id, answer["rawId"]):
        assert secret not in text
    assert "webauthn_registered" in text and "login_ok" in text


# -- malformed credentials: typed errors, never anything else -------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
B64URLISH = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=80)


@given(JSON, st.sampled_from(["login", "register"]))
def test_check_credential_refuses_random_json_with_a_typed_error(value: Any, kind: webauthn.Kind) -> None:
    outcome: tuple[int, str] = (0, "")
    try:
        webauthn.check_credential(value, kind)
    except webauthn.WebAuthnError as exc:
        outcome = (exc.status, exc.code)
    assert outcome in ((0, ""), (400, "bad_credential"))


def _mutations() -> st.SearchStrategy[tuple[list[str], Any]]:
    paths = st.sampled_from(
        [
            ["id"],
            ["rawId"],
            ["type"],
            ["authenticatorAttachment"],
            ["clientExtensionResults"],
            ["response"],
            ["response", "clientDataJSON"],
            ["response", "authenticatorData"],
            ["response", "signature"],
            ["response", "userHandle"],
            ["response", "attestationObject"],
            ["response", "transports"],
            ["response", "publicKeyAlgorithm"],
            ["response", "publicKey"],
            ["extra"],
        ]
    )
    values = JSON | B64URLISH | st.binary(max_size=120).map(b64url)
    return st.tuples(paths, values)


LOGIN_KEY = SoftKey(RP_ID, credential_id=b"k" * 16)
FRESH_NAMES = itertools.count()
OUTCOMES: dict[str, int] = {}


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(mutations=st.lists(_mutations(), min_size=1, max_size=3), register=st.booleans())
def test_mutated_credentials_fail_cleanly(hub: Hub, mutations: list[tuple[list[str], Any]], register: bool) -> None:
    """Valid answers with fields replaced by junk (random JSON, random base64url, random bytes): a typed
    400, a refusal, or (when the junk changed nothing that matters) success: never another exception."""
    if register:
        username = f"dr.f{next(FRESH_NAMES)}"  # a fresh account each time: never "too many keys"
        hub.store.add_account(Account(username, "Dr F", "not a hash", "AAAA", -1), now=NOW)
        doctor = hub.active(username)
        answer = SoftKey(RP_ID).create(
            hub.accounts.webauthn_registration_options(doctor, origin=ORIGIN, now=NOW), ORIGIN
        )
    else:
        if not hub.store.credentials("dr.a"):
            hub.register(dataclasses.replace(LOGIN_KEY))
        hub.store.clear_failures("dr.a")  # hundreds of examples: never reach the lockout
        pending = hub.pending()
        answer = LOGIN_KEY.get(hub.login_options(pending), ORIGIN)
    for path, value in mutations:
        target = answer
        for step in path[:-1]:
            target = target[step] if isinstance(target, dict) else {}
        if isinstance(target, dict):
            target[path[-1]] = value
    kind: webauthn.Kind = "register" if register else "login"
    outcome = "accepted"
    try:
        credential = webauthn.check_credential(json.loads(json.dumps(answer)), kind)
        if register:
            hub.accounts.register_webauthn(doctor, credential, origin=ORIGIN, name=None, now=NOW)
        else:
            hub.accounts.webauthn_step(pending, credential, origin=ORIGIN, client="10.0.0.1", now=NOW)
    except webauthn.WebAuthnError as exc:
        outcome = f"{exc.status} {exc.code}"
    except LoginError as exc:
        outcome = exc.reason.value
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1
    assert outcome in ("accepted", "400 bad_credential", "400 webauthn_refused", "invalid_credentials")


CONTENT = {
    "register": ["clientDataJSON", "attestationObject"],
    "login": ["clientDataJSON", "authenticatorData", "signature"],
}


@st.composite
def corruptions(draw: st.DrawFn) -> tuple[str, str, Any]:
    """A content field of a valid answer, and what to do to its bytes (the JSON shape stays valid)."""
    kind = draw(st.sampled_from(["register", "login"]))
    name = draw(st.sampled_from(CONTENT[kind]))
    operation = draw(st.sampled_from(["replace", "truncate", "flip", "append", "json"]))
    if operation == "replace":
        argument: Any = draw(st.binary(min_size=1, max_size=300))
    elif operation in ("truncate", "flip"):
        argument = draw(st.integers(min_value=0, max_value=4000))
    elif operation == "append":
        argument = draw(st.binary(min_size=1, max_size=40))
    else:
        argument = draw(JSON)
    return kind, name, (operation, argument)


def corrupt(data: bytes, operation: str, argument: Any) -> bytes:
    if operation == "replace":
        return bytes(argument)
    if operation == "truncate":
        return data[: max(1, argument % len(data))]
    if operation == "flip":
        bit = argument % (len(data) * 8)
        return data[: bit // 8] + bytes([data[bit // 8] ^ (1 << (bit % 8))]) + data[bit // 8 + 1 :]
    if operation == "append":
        return data + bytes(argument)
    return json.dumps(argument).encode()


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(corruption=st.lists(corruptions(), min_size=1, max_size=2))
def test_corrupted_content_is_refused_cleanly(hub: Hub, corruption: list[tuple[str, str, Any]]) -> None:
    """Well-formed JSON whose bytes inside (CBOR, authenticator data, client data, signature) are damaged
    reaches py_webauthn: the answer is a refusal, never another exception. An attestation "none" protects
    nothing but what the hub checks itself (challenge, origin, rpId, key), so a harmless flip there (the
    AAGUID, the UV flag) may still register; an assertion is signed throughout, so no damage gets through."""
    kind = corruption[0][0]
    if kind == "register":
        username = f"dr.f{next(FRESH_NAMES)}"
        hub.store.add_account(Account(username, "Dr F", "not a hash", "AAAA", -1), now=NOW)
        doctor = hub.active(username)
        answer = SoftKey(RP_ID).create(
            hub.accounts.webauthn_registration_options(doctor, origin=ORIGIN, now=NOW), ORIGIN
        )
    else:
        if not hub.store.credentials("dr.a"):
            hub.register(dataclasses.replace(LOGIN_KEY))
        hub.store.clear_failures("dr.a")  # hundreds of examples: never reach the lockout
        pending = hub.pending()
        answer = LOGIN_KEY.get(hub.login_options(pending), ORIGIN)
    original = copy.deepcopy(answer)
    for same_kind, name, (operation, argument) in corruption:
        if same_kind == kind:
            data = unb64url(answer["response"][name])
            answer["response"][name] = b64url(corrupt(data, operation, argument))
    outcome = "accepted"
    try:
        credential = webauthn.check_credential(answer, kind)
        if kind == "register":
            hub.accounts.register_webauthn(doctor, credential, origin=ORIGIN, name=None, now=NOW)
        else:
            hub.accounts.webauthn_step(pending, credential, origin=ORIGIN, client="10.0.0.1", now=NOW)
    except webauthn.WebAuthnError as exc:
        outcome = f"{exc.status} {exc.code}"
    except LoginError as exc:
        outcome = exc.reason.value
    OUTCOMES[f"{kind} {outcome}"] = OUTCOMES.get(f"{kind} {outcome}", 0) + 1
    assert outcome in ("accepted", "400 webauthn_refused", "invalid_credentials")
    if kind == "login" and answer != original:  # (the same bit flipped twice is no change)
        # Everything in an assertion is signed: no damage gets through.
        assert outcome == "invalid_credentials"
