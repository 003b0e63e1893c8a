"""The hub's embedded store: SQLite in the state directory (accounts, login failures, sessions, security keys).

Calls are short and blocking, made from the event loop (WAL mode keeps a
reader from waiting on a writer); password hashing, the slow part of a login,
runs in a thread elsewhere. Time is passed in as ``now`` (Unix seconds), so
expiry is decided by the caller's clock and tests can move it.

Session ids are never stored: only their SHA-256, so a copy of the database
does not let anyone ride a live session.

WebAuthn: ``webauthn_credentials`` keeps each doctor's registered security
keys (public key, signature counter); ``webauthn_users`` the random user
handle an authenticator stores for an account; ``webauthn_challenges`` the one
outstanding challenge of a session (pending: login, active: registration),
deleted when used, when it expires, or with its session.

Enrolment: ``enrolment_tokens`` keeps the one-time tokens a technician hands
to a new booth (:mod:`hub.enrolment`): only their SHA-256, the booth id they
are for, their expiry and when they were used. A token is consumed by one
conditional UPDATE, so two booths racing with the same token cannot both win.
``booth_certificates`` keeps the latest certificate issued to each booth: a
renewal must come from that one, so a superseded (say, stolen) certificate
cannot renew itself into a fresh one; and a booth whose answer was lost gets
the same certificate again by asking with the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret TEXT NOT NULL,
    totp_last_step INTEGER NOT NULL DEFAULT -1,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    username TEXT PRIMARY KEY,   -- any name tried, existing or not: a lockout must not reveal which exist
    failures INTEGER NOT NULL,
    locked_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash BLOB PRIMARY KEY,
    username TEXT NOT NULL,
    stage TEXT NOT NULL CHECK (stage IN ('pending', 'active')),
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    last_seen REAL NOT NULL,
    expires REAL NOT NULL,
    identity_chain TEXT
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires);
CREATE TABLE IF NOT EXISTS webauthn_credentials (
    credential_id BLOB PRIMARY KEY,
    username TEXT NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    public_key BLOB NOT NULL,       -- COSE_Key, as the authenticator sent it
    sign_count INTEGER NOT NULL,    -- the authenticator's signature counter; 0 for keys that keep none
    transports TEXT NOT NULL,       -- JSON list of AuthenticatorTransport values
    name TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL
);
CREATE INDEX IF NOT EXISTS webauthn_credentials_account ON webauthn_credentials (username);
CREATE TABLE IF NOT EXISTS webauthn_users (
    username TEXT PRIMARY KEY REFERENCES accounts (username) ON DELETE CASCADE,
    user_handle BLOB NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS webauthn_challenges (
    session_hash BLOB PRIMARY KEY REFERENCES sessions (id_hash) ON DELETE CASCADE,
    purpose TEXT NOT NULL CHECK (purpose IN ('login', 'register')),
    challenge BLOB NOT NULL,
    origin TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS enrolment_tokens (
    token_hash BLOB PRIMARY KEY,    -- SHA-256 of the token: a copy of the database enrols nobody
    booth_id TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    used REAL                       -- when it was consumed; NULL while unused
);
CREATE TABLE IF NOT EXISTS booth_certificates (
    booth_id TEXT PRIMARY KEY,      -- the latest certificate enrolment or renewal issued to each booth
    serial TEXT NOT NULL,           -- hex; only this one may renew
    key_sha256 BLOB NOT NULL,       -- SHA-256 of its SubjectPublicKeyInfo: a retry with the same key gets it again
    certificate TEXT NOT NULL,      -- PEM
    not_after REAL NOT NULL,
    issued REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Account:
    """A doctor's account."""

    username: str
    display_name: str
    password_hash: str
    """argon2id, PHC string format."""
    totp_secret: str
    """Base32, as in an otpauth:// URI."""
    totp_last_step: int
    """The last TOTP time step accepted: a code of that step or earlier is a replay."""


@dataclass(frozen=True)
class SessionRecord:
    """A doctor's login session, pending (password checked) or active (second factor checked)."""

    id_hash: bytes
    username: str
    stage: str
    csrf: str
    created: float
    last_seen: float
    expires: float
    identity_chain: str | None
    """The doctor certificate chain issued for this login's WebCrypto key, once certified."""


@dataclass(frozen=True)
class WebAuthnCredential:
    """A doctor's registered security key."""

    credential_id: bytes
    username: str
    public_key: bytes
    """COSE_Key (CBOR), as registered."""
    sign_count: int
    transports: tuple[str, ...]
    name: str
    created: float
    last_used: float | None


@dataclass(frozen=True)
class Challenge:
    """A WebAuthn challenge handed out to one session."""

    purpose: str
    """``"login"`` (pending session) or ``"register"`` (active session)."""
    challenge: bytes
    origin: str
    """The console origin the options were asked from; the answer must come from the same one."""
    expires: float


@dataclass(frozen=True)
class EnrolmentToken:
    """A one-time enrolment token, as stored (its hash, never the token)."""

    token_hash: bytes
    booth_id: str
    created: float
    expires: float
    used: float | None


@dataclass(frozen=True)
class BoothCertificate:
    """The latest certificate issued to a booth (by enrolment or renewal)."""

    booth_id: str
    serial: str
    """Hex, as in the audit events."""
    key_sha256: bytes
    """SHA-256 of the certified SubjectPublicKeyInfo (DER)."""
    certificate: str
    """PEM."""
    not_after: float
    issued: float


_BOOTH_CERTIFICATE_COLUMNS: Final = "booth_id, serial, key_sha256, certificate, not_after, issued"
_SIX: Final = "?, ?, ?, ?, ?, ?"
_CREDENTIAL_COLUMNS: Final = "credential_id, username, public_key, sign_count, transports, name, created, last_used"


def _credential(row: tuple[bytes, str, bytes, int, str, str, float, float | None]) -> WebAuthnCredential:
    credential_id, username, public_key, sign_count, transports, name, created, last_used = row
    return WebAuthnCredential(
        bytes(credential_id),
        username,
        bytes(public_key),
        int(sign_count),
        tuple(json.loads(transports)),
        name,
        float(created),
        None if last_used is None else float(last_used),
    )


def hash_session_id(session_id: str) -> bytes:
    """What the store keeps instead of a session id."""
    return hashlib.sha256(session_id.encode()).digest()


class Store:
    """The SQLite database file ``hub.db`` of a state directory."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        # Password hashes and TOTP secrets live here: owner-only from creation (SQLite gives its
        # -wal and -shm files the database's mode).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- accounts ---------------------------------------------------------------------
    def add_account(self, account: Account, *, now: float) -> None:
        """Create a doctor's account; an existing username is an error (sqlite3.IntegrityError)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    account.username,
                    account.display_name,
                    account.password_hash,
                    account.totp_secret,
                    account.totp_last_step,
                    now,
                ),
            )

    def account(self, username: str) -> Account | None:
        """The account called ``username``, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT username, display_name, password_hash, totp_secret, totp_last_step FROM accounts"
                " WHERE username = ?",
                (username,),
            ).fetchone()
        return Account(*row) if row else None

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace a hash (argon2 rehash after a parameter change)."""
        with self._lock:
            self._db.execute("UPDATE accounts SET password_hash = ? WHERE username = ?", (password_hash, username))

    def advance_totp_step(self, username: str, step: int) -> bool:
        """Record ``step`` as used; False if it (or a later one) already was: a replayed code."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE accounts SET totp_last_step = ? WHERE username = ? AND totp_last_step < ?",
                (step, username, step),
            )
        return cursor.rowcount == 1

    # -- failures and lockout ------------------------------------------------------------
    def failures(self, username: str) -> tuple[int, float]:
        """Consecutive failures and the lock's end (0 when unlocked) for a name."""
        with self._lock:
            row = self._db.execute(
                "SELECT failures, locked_until FROM login_failures WHERE username = ?", (username,)
            ).fetchone()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    def record_failure(self, username: str, *, max_failures: int, lock_until: float) -> bool:
        """Count a failure; lock the name when it reaches ``max_failures``. True if it is now locked."""
        with self._lock:
            self._db.execute(
                "INSERT INTO login_failures VALUES (?, 1, 0) "
                "ON CONFLICT(username) DO UPDATE SET failures = failures + 1",
                (username,),
            )
            (failures,) = self._db.execute(
                "SELECT failures FROM login_failures WHERE username = ?", (username,)
            ).fetchone()
            if failures >= max_failures:
                self._db.execute(
                    "UPDATE login_failures SET failures = 0, locked_until = ? WHERE username = ?",
                    (lock_until, username),
                )
                return True
        return False

    def clear_failures(self, username: str) -> None:
        """A successful login resets the count."""
        with self._lock:
            self._db.execute("DELETE FROM login_failures WHERE username = ?", (username,))

    # -- sessions ------------------------------------------------------------------------
    def create_session(
        self, session_id: str, username: str, *, stage: str, csrf: str, now: float, expires: float
    ) -> None:
        """Store a new session under the hash of ``session_id``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (hash_session_id(session_id), username, stage, csrf, now, now, expires),
            )

    def session(self, session_id: str) -> SessionRecord | None:
        """The session with this id, expired or not (the caller decides)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id_hash, username, stage, csrf, created, last_seen, expires, identity_chain"
                " FROM sessions WHERE id_hash = ?",
                (hash_session_id(session_id),),
            ).fetchone()
        return SessionRecord(*row) if row else None

    def touch_session(self, id_hash: bytes, now: float) -> None:
        """Mark activity, pushing the idle timeout back."""
        with self._lock:
            self._db.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))

    def set_identity_chain(self, id_hash: bytes, chain: str) -> bool:
        """Keep the certificate issued for this session; False if one already was."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE sessions SET identity_chain = ? WHERE id_hash = ? AND identity_chain IS NULL",
                (chain, id_hash),
            )
        return cursor.rowcount == 1

    def delete_session(self, id_hash: bytes) -> None:
        """End a session (logout, expiry, promotion from pending)."""
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))

    def purge_sessions(self, now: float, idle_timeout: float) -> int:
        """Delete expired and idle sessions; how many went."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM sessions WHERE expires <= ? OR last_seen <= ?", (now, now - idle_timeout)
            )
        return cursor.rowcount

    # -- WebAuthn credentials ----------------------------------------------------------------
    def add_credential(self, credential: WebAuthnCredential) -> None:
        """Register a security key; a credential id already registered (to anyone) is sqlite3.IntegrityError."""
        with self._lock:
            self._db.execute(
                f"INSERT INTO webauthn_credentials ({_CREDENTIAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    credential.credential_id,
                    credential.username,
                    credential.public_key,
                    credential.sign_count,
                    json.dumps(list(credential.transports)),
                    credential.name,
                    credential.created,
                    credential.last_used,
                ),
            )

    def credential(self, credential_id: bytes) -> WebAuthnCredential | None:
        """The security key with this credential id, whoever it belongs to."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM webauthn_credentials WHERE credential_id = ?", (credential_id,)
            ).fetchone()
        return _credential(row) if row else None

    def credentials(self, username: str) -> list[WebAuthnCredential]:
        """A doctor's security keys, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM webauthn_credentials WHERE username = ? ORDER BY created, rowid",
                (username,),
            ).fetchall()
        return [_credential(row) for row in rows]

    def credential_count(self, username: str) -> int:
        """How many security keys a doctor has registered."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM webauthn_credentials WHERE username = ?", (username,)
            ).fetchone()
        return int(count)

    def advance_sign_count(self, credential_id: bytes, sign_count: int, now: float) -> bool:
        """Record a use of a key and its new counter. False, and nothing changes, when the counter does not
        move forward (both zero is fine: keys without a counter always say 0): a cloned key, or a race."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE webauthn_credentials SET sign_count = ?, last_used = ? "
                "WHERE credential_id = ? AND (sign_count < ? OR (sign_count = 0 AND ? = 0))",
                (sign_count, now, credential_id, sign_count, sign_count),
            )
        return cursor.rowcount == 1

    def user_handle(self, username: str, *, create: bool = False) -> bytes | None:
        """The random WebAuthn user handle of an account (64 random bytes, no personal data), made on first
        registration when ``create``."""
        with self._lock:
            if create:
                self._db.execute(
                    "INSERT OR IGNORE INTO webauthn_users VALUES (?, ?)", (username, secrets.token_bytes(64))
                )
            row = self._db.execute("SELECT user_handle FROM webauthn_users WHERE username = ?", (username,)).fetchone()
        return bytes(row[0]) if row else None

    # -- WebAuthn challenges ----------------------------------------------------------------
    def put_challenge(self, id_hash: bytes, challenge: Challenge) -> None:
        """Give a session its one outstanding challenge, replacing any earlier one."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO webauthn_challenges VALUES (?, ?, ?, ?, ?)",
                (id_hash, challenge.purpose, challenge.challenge, challenge.origin, challenge.expires),
            )

    def take_challenge(self, id_hash: bytes, purpose: str, now: float) -> Challenge | None:
        """Remove and return a session's challenge for ``purpose``: None when there is none, it was for the
        other ceremony, or it has expired. A challenge is thus used at most once, whatever the outcome."""
        with self._lock:
            # fetchall: a RETURNING statement is only finished (and its write done with) once read to the end.
            rows = self._db.execute(
                "DELETE FROM webauthn_challenges WHERE session_hash = ? RETURNING purpose, challenge, origin, expires",
                (id_hash,),
            ).fetchall()
        if not rows:
            return None
        ((purpose_found, value, origin, expires),) = rows
        found = Challenge(purpose_found, bytes(value), origin, float(expires))
        if found.purpose != purpose or found.expires <= now:
            return None
        return found

    # -- enrolment tokens ------------------------------------------------------------------
    def add_enrolment_token(self, token_hash: bytes, booth_id: str, *, now: float, expires: float) -> None:
        """Keep a new token's hash for ``booth_id`` until ``expires``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO enrolment_tokens VALUES (?, ?, ?, ?, NULL)", (token_hash, booth_id, now, expires)
            )

    def enrolment_token(self, token_hash: bytes) -> EnrolmentToken | None:
        """The token with this hash, used or expired or not (the caller decides)."""
        with self._lock:
            row = self._db.execute(
                "SELECT token_hash, booth_id, created, expires, used FROM enrolment_tokens WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
        if row is None:
            return None
        token_hash_found, booth_id, created, expires, used = row
        return EnrolmentToken(
            bytes(token_hash_found), booth_id, float(created), float(expires), None if used is None else float(used)
        )

    def consume_enrolment_token(self, token_hash: bytes, now: float) -> bool:
        """Mark a token used; False (and nothing changes) when it is unknown, already used or expired."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE enrolment_tokens SET used = ? WHERE token_hash = ? AND used IS NULL AND expires > ?",
                (now, token_hash, now),
            )
        return cursor.rowcount == 1

    def purge_enrolment_tokens(self, before: float) -> int:
        """Delete tokens that expired before ``before`` (used or not); how many went."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM enrolment_tokens WHERE expires < ?", (before,))
        return cursor.rowcount

    # -- booth certificates ------------------------------------------------------------------
    def booth_certificate(self, booth_id: str) -> BoothCertificate | None:
        """The latest certificate issued to a booth by enrolment or renewal, if any."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_BOOTH_CERTIFICATE_COLUMNS} FROM booth_certificates WHERE booth_id = ?", (booth_id,)
            ).fetchone()
        if row is None:
            return None
        booth, serial, key_sha256, certificate, not_after, issued = row
        return BoothCertificate(booth, serial, bytes(key_sha256), certificate, float(not_after), float(issued))

    def record_booth_certificate(self, record: BoothCertificate, *, previous: str | None = None) -> bool:
        """Make ``record`` the booth's latest certificate. With ``previous`` (a renewal), only if the serial
        recorded is still ``previous``, or none is: False when another renewal got there first."""
        values = (
            record.booth_id,
            record.serial,
            record.key_sha256,
            record.certificate,
            record.not_after,
            record.issued,
        )
        with self._lock:
            if previous is None:
                self._db.execute(f"INSERT OR REPLACE INTO booth_certificates VALUES ({_SIX})", values)
                return True
            cursor = self._db.execute(
                f"UPDATE booth_certificates SET ({_BOOTH_CERTIFICATE_COLUMNS}) = ({_SIX})"
                " WHERE booth_id = ? AND serial = ?",
                (*values, record.booth_id, previous),
            )
            if cursor.rowcount == 1:
                return True
            cursor = self._db.execute(f"INSERT OR IGNORE INTO booth_certificates VALUES ({_SIX})", values)
            return cursor.rowcount == 1
