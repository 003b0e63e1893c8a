"""Doctors' accounts: argon2id passwords, TOTP (RFC 6238), lockout, rate limits, sessions, identity keys.

Login is two steps. The password step (:meth:`Accounts.password_step`) opens
a short *pending* session; the TOTP step (:meth:`Accounts.totp_step`) turns
it into an *active* one under a fresh id (no session fixation). Every
failure looks the same from outside ("invalid credentials") whether the
account exists or not; failures are counted per name tried, existing or not,
so a lockout does not reveal which names exist either. An unknown name still
costs one argon2 verification, so timing tells nothing.

The second factor is a WebAuthn security key (:meth:`Accounts.webauthn_step`,
ceremonies in :mod:`hub.webauthn`) when the account has one registered, with
TOTP (:meth:`Accounts.totp_step`) as the fallback that always works. Both end
in :meth:`Accounts.complete_second_factor`; a security-key answer that does not
verify counts as a login failure exactly like a wrong TOTP code (rate limit,
lockout, audit event).

Security events go to an :data:`AuditHook` (the audit log is a later issue):
event kind plus opaque ids, never a password, code or patient detail.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import enum
import hashlib
import hmac
import logging
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.serialization import Encoding
from webauthn.helpers import bytes_to_base64url

from hub import pki, webauthn
from hub.config import HubConfig
from hub.store import Account, SessionRecord, Store

logger = logging.getLogger(__name__)

TOTP_STEP: Final = 30
TOTP_DIGITS: Final = 6
TOTP_WINDOW: Final = 1
"""Steps accepted either side of now: ±30 s of clock drift between phone and hub."""
MAX_FIELD: Final = 256
"""Longest username or password looked at; longer input is refused before hashing."""

AuditHook = Callable[[str, Mapping[str, str]], None]
"""Called on every security event: ``(kind, fields)``, fields being opaque ids only."""


def log_security_event(kind: str, fields: Mapping[str, str]) -> None:
    """The default audit hook: one log line per event, until the hash-chained audit log exists."""
    logger.info("security event %s %s", kind, " ".join(f"{key}={value}" for key, value in sorted(fields.items())))


def opaque(value: str) -> str:
    """A short stable pseudonym for an id that should not appear in clear (a name tried at login)."""
    return hashlib.sha256(b"kiosk-hub-audit\0" + value.encode()).hexdigest()[:16]


# -- TOTP (RFC 6238 over RFC 4226 HOTP, HMAC-SHA1, 30 s, 6 digits) -------------------------
def new_totp_secret() -> str:
    """160 random bits in base32, the size RFC 4226 recommends."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _secret_bytes(secret: str) -> bytes:
    cleaned = secret.strip().replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def totp_at_step(secret: str, step: int) -> str:
    """The code of one time step (RFC 4226 section 5.3, dynamic truncation)."""
    digest = hmac.new(_secret_bytes(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = (int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF) % 10**TOTP_DIGITS
    return f"{number:0{TOTP_DIGITS}d}"


def totp_now(secret: str, now: float) -> str:
    """The code an authenticator app shows at Unix time ``now``."""
    return totp_at_step(secret, int(now // TOTP_STEP))


def match_totp(secret: str, code: str, now: float) -> int | None:
    """The time step ``code`` belongs to within the window, or None; compares in constant time."""
    current = int(now // TOTP_STEP)
    given = code.strip().encode()
    found: int | None = None
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        # Every step is compared, matched or not, so timing does not tell which one matched.
        if hmac.compare_digest(totp_at_step(secret, step).encode(), given) and found is None:
            found = step
    return found


def totp_uri(secret: str, username: str, issuer: str = "Teleconsult kiosk") -> str:
    """The otpauth:// URI an authenticator app enrols from (shown as a QR code)."""
    return f"otpauth://totp/{quote(issuer)}:{quote(username)}?secret={secret}&issuer={quote(issuer)}&digits=6&period=30"


# -- rate limiting -----------------------------------------------------------------------------
class TokenBuckets:
    """One token bucket per client address; ``now`` is a monotonic clock."""

    def __init__(self, burst: int, per_minute: float, max_clients: int = 100_000) -> None:
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float) -> bool:
        """Spend one token; False when the client has none left."""
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.max_clients and client not in self._buckets:
            self._forget_full(now)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1.0, now)
        return True

    def _forget_full(self, now: float) -> None:
        # Buckets refilled to the brim carry no information: drop them to bound memory.
        refill = self.burst / self.rate
        for client, (_, last) in list(self._buckets.items()):
            if now - last >= refill:
                del self._buckets[client]


# -- errors and results ---------------------------------------------------------------------------
class LoginReason(enum.Enum):
    """Why a login or session check failed."""

    INVALID_CREDENTIALS = "invalid_credentials"
    """Unknown name, wrong password or wrong code: deliberately indistinguishable."""
    LOCKED = "locked"
    """Too many failures for this name; wait for the lock to end."""
    RATE_LIMITED = "rate_limited"
    """Too many attempts from this address."""
    NO_SESSION = "no_session"
    """Missing, unknown, expired or idle session; log in again."""
    WRONG_STAGE = "wrong_stage"
    """A pending session where an active one is needed, or the reverse."""


class LoginError(Exception):
    """A refused login step or session."""

    def __init__(self, reason: LoginReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class IdentityError(Exception):
    """A per-login identity key the hub will not certify."""


@dataclass(frozen=True)
class Issued:
    """A session id handed to the browser (as a cookie) with its CSRF token."""

    session_id: str
    csrf: str
    expires: float
    """Unix time of the absolute end of the session."""
    methods: tuple[str, ...] = ()
    """After the password step: the second factors this account can use, preferred first."""


@dataclass(frozen=True)
class Doctor:
    """The doctor behind an active session."""

    username: str
    display_name: str
    session: SessionRecord


# -- the service -------------------------------------------------------------------------------------
class Accounts:
    """Logins and sessions over a :class:`Store`; wall clock passed as ``now`` (Unix seconds)."""

    def __init__(self, store: Store, config: HubConfig, audit: AuditHook = log_security_event) -> None:
        self.store = store
        self.config = config
        self.audit = audit
        self.hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults
        self.buckets = TokenBuckets(config.rate_burst, config.rate_per_minute)
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    # -- account management (CLI) ----------------------------------------------------------
    def create_account(self, username: str, display_name: str, password: str, *, now: float) -> str:
        """Create a doctor; returns the new TOTP secret (to enrol in an authenticator app)."""
        if not pki.DOCTOR_NAME.match(username):
            raise ValueError("a username is lower-case letters, digits, '.', '_' or '-'")
        if not 12 <= len(password) <= MAX_FIELD:
            raise ValueError("a password has 12 to 256 characters")
        secret = new_totp_secret()
        account = Account(username, display_name, self.hasher.hash(password), secret, -1)
        self.store.add_account(account, now=now)
        return secret

    # -- login ---------------------------------------------------------------------------
    def check_rate(self, client: str) -> None:
        """Spend a login token for ``client`` or raise RATE_LIMITED."""
        if not self.buckets.take(client, time.monotonic()):
            self.audit("login_rate_limited", {"client": opaque(client)})
            raise LoginError(LoginReason.RATE_LIMITED, "too many attempts from this address; wait a minute")

    async def password_step(self, username: str, password: str, *, client: str, now: float) -> Issued:
        """First step: check the password; a pending session for the second factor."""
        self.check_rate(client)
        name = username.strip().lower()[:MAX_FIELD]
        password = password[:MAX_FIELD] if len(password) <= MAX_FIELD else ""
        self._refuse_if_locked(name, now)
        account = self.store.account(name) if pki.DOCTOR_NAME.match(name) else None
        ok = await asyncio.to_thread(self._verify_password, account, password)
        if account is None or not ok:
            self._fail(name, now, "password")
        csrf = secrets.token_urlsafe(32)
        session_id = secrets.token_urlsafe(32)
        expires = now + self.config.pending_lifetime
        self.store.create_session(session_id, account.username, stage="pending", csrf=csrf, now=now, expires=expires)
        self.audit("login_password_ok", {"account": account.username})
        return Issued(session_id, csrf, expires, self.second_factors(account.username))

    def second_factors(self, username: str) -> tuple[str, ...]:
        """``("webauthn", "totp")`` when the account has a security key, else ``("totp",)``."""
        return ("webauthn", "totp") if self.store.credential_count(username) else ("totp",)

    async def totp_step(self, session_id: str | None, code: str, *, client: str, now: float) -> Issued:
        """Second step: a TOTP code for the pending session; a fresh active session."""
        self.check_rate(client)
        pending = self._session(session_id, now, stage="pending")
        name = pending.username
        self._refuse_if_locked(name, now, pending=pending)
        account = self.store.account(name)
        step = match_totp(account.totp_secret, code[:16], now) if account else None
        if account is None or step is None:
            self._fail(name, now, "totp", pending=pending)
        if not self.store.advance_totp_step(name, step):
            self.audit("login_totp_replay", {"account": name})
            self._fail(name, now, "totp-replay", pending=pending)
        return self.complete_second_factor(pending, now=now, factor="totp")

    def webauthn_login_options(self, session_id: str | None, *, origin: str, now: float) -> dict[str, Any]:
        """WebAuthn request options for a pending session (its challenge is kept with it).

        ``origin`` is the request's Origin, already checked against the allowed ones."""
        pending = self._session(session_id, now, stage="pending")
        self._refuse_if_locked(pending.username, now, pending=pending)
        return webauthn.authentication_options(
            self.store, username=pending.username, id_hash=pending.id_hash, origin=origin, now=now
        )

    def webauthn_step(
        self, session_id: str | None, credential: webauthn.CredentialJSON, *, origin: str, client: str, now: float
    ) -> Issued:
        """Second step by security key: an assertion answering the pending session's challenge."""
        self.check_rate(client)
        pending = self._session(session_id, now, stage="pending")
        name = pending.username
        self._refuse_if_locked(name, now, pending=pending)
        try:
            webauthn.verify_authentication(
                self.store, credential, username=name, id_hash=pending.id_hash, origin=origin, now=now
            )
        except webauthn.CeremonyFailed as exc:
            logger.debug("security key assertion refused: %s", exc)
            self._fail(name, now, "webauthn", pending=pending)
        return self.complete_second_factor(pending, now=now, factor="webauthn")

    def complete_second_factor(self, pending: SessionRecord, *, now: float, factor: str) -> Issued:
        """Promote a pending session once a second factor (TOTP or WebAuthn) has been verified."""
        self.store.delete_session(pending.id_hash)
        self.store.clear_failures(pending.username)
        session_id = secrets.token_urlsafe(32)  # 256 bits
        csrf = secrets.token_urlsafe(32)
        expires = now + self.config.absolute_lifetime
        self.store.create_session(session_id, pending.username, stage="active", csrf=csrf, now=now, expires=expires)
        self.audit("login_ok", {"account": pending.username, "factor": factor})
        return Issued(session_id, csrf, expires)

    def _verify_password(self, account: Account | None, password: str) -> bool:
        try:
            self.hasher.verify(account.password_hash if account else self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if account is not None and self.hasher.check_needs_rehash(account.password_hash):
            self.store.set_password_hash(account.username, self.hasher.hash(password))
        return account is not None

    def _refuse_if_locked(self, name: str, now: float, pending: SessionRecord | None = None) -> None:
        _, locked_until = self.store.failures(name)
        if locked_until > now:
            if pending is not None:
                self.store.delete_session(pending.id_hash)
            raise LoginError(LoginReason.LOCKED, "too many failed attempts; try again later")

    def _fail(self, name: str, now: float, step: str, pending: SessionRecord | None = None) -> NoReturn:
        locked = self.store.record_failure(
            name, max_failures=self.config.max_failures, lock_until=now + self.config.lock_seconds
        )
        self.audit("login_failed", {"account": opaque(name), "step": step})
        if locked:
            self.audit("account_locked", {"account": opaque(name)})
            if pending is not None:
                self.store.delete_session(pending.id_hash)
            raise LoginError(LoginReason.LOCKED, "too many failed attempts; try again later")
        raise LoginError(LoginReason.INVALID_CREDENTIALS, "invalid credentials")

    # -- sessions ----------------------------------------------------------------------------
    def _session(self, session_id: str | None, now: float, *, stage: str) -> SessionRecord:
        record = self.store.session(session_id) if session_id else None
        if record is None:
            raise LoginError(LoginReason.NO_SESSION, "no session; log in")
        if record.expires <= now or record.last_seen + self.config.idle_timeout <= now:
            self.store.delete_session(record.id_hash)
            self.audit("session_expired", {"account": record.username})
            raise LoginError(LoginReason.NO_SESSION, "the session has expired; log in again")
        if record.stage != stage:
            raise LoginError(LoginReason.WRONG_STAGE, "this step does not belong here; log in again")
        return record

    def authenticate(self, session_id: str | None, *, now: float, touch: bool = True) -> Doctor:
        """The doctor of an active, unexpired session; pushes the idle timeout back when ``touch``."""
        record = self._session(session_id, now, stage="active")
        account = self.store.account(record.username)
        if account is None:
            self.store.delete_session(record.id_hash)
            raise LoginError(LoginReason.NO_SESSION, "the account no longer exists")
        if touch:
            self.store.touch_session(record.id_hash, now)
        return Doctor(account.username, account.display_name, record)

    def logout(self, doctor: Doctor) -> None:
        """End a session."""
        self.store.delete_session(doctor.session.id_hash)
        self.audit("logout", {"account": doctor.username})

    # -- per-login identity key ------------------------------------------------------------------
    def certify_identity_key(self, doctor: Doctor, spki_der: bytes, doctor_ca: pki.Issuer, *, now: float) -> str:
        """Certify the browser's per-login public key once per session; the chain PEM (leaf, issuing CA)."""
        if doctor.session.identity_chain is not None:
            raise IdentityError("this login already has a certified key; log in again for a new one")
        try:
            public_key = pki.load_doctor_public_key(spki_der)
            wall = datetime.datetime.fromtimestamp(now, datetime.UTC)
            not_after = datetime.datetime.fromtimestamp(doctor.session.expires, datetime.UTC)
            cert = pki.issue_doctor_certificate(doctor_ca, public_key, doctor.username, now=wall, not_after=not_after)
        except pki.PkiError as exc:
            raise IdentityError(str(exc)) from exc
        chain = cert.public_bytes(Encoding.PEM).decode() + pki.pem(doctor_ca.certificate)
        if not self.store.set_identity_chain(doctor.session.id_hash, chain):
            raise IdentityError("this login already has a certified key; log in again for a new one")
        self.audit("identity_certified", {"account": doctor.username, "serial": f"{cert.serial_number:x}"})
        return chain

    # -- security keys (WebAuthn registration) ----------------------------------------------------
    def webauthn_registration_options(self, doctor: Doctor, *, origin: str, now: float) -> dict[str, Any]:
        """WebAuthn creation options for a logged-in doctor (the challenge is kept with the session)."""
        options = webauthn.registration_options(
            self.store,
            username=doctor.username,
            display_name=doctor.display_name,
            id_hash=doctor.session.id_hash,
            origin=origin,
            now=now,
        )
        self.audit("webauthn_register_started", {"account": doctor.username})
        return options

    def register_webauthn(
        self, doctor: Doctor, credential: webauthn.CredentialJSON, *, origin: str, name: str | None, now: float
    ) -> int:
        """Verify and store a new security key; how many the doctor now has.

        :class:`hub.webauthn.WebAuthnError` when refused (``webauthn_refused`` when the attestation does not
        verify)."""
        try:
            stored = webauthn.verify_registration(
                self.store,
                credential,
                username=doctor.username,
                id_hash=doctor.session.id_hash,
                origin=origin,
                name=name,
                now=now,
            )
        except webauthn.CeremonyFailed as exc:
            logger.debug("security key registration refused: %s", exc)
            self.audit("webauthn_register_refused", {"account": doctor.username})
            raise webauthn.WebAuthnError(
                400, "webauthn_refused", "the security key's answer did not verify; ask for new options and retry"
            ) from exc
        except webauthn.WebAuthnError as exc:
            self.audit("webauthn_register_refused", {"account": doctor.username, "reason": exc.code})
            raise
        self.audit(
            "webauthn_registered",
            {"account": doctor.username, "credential": opaque(bytes_to_base64url(stored.credential_id))},
        )
        return self.store.credential_count(doctor.username)
