"""Booth enrolment: one-time tokens, certificate signing requests, first certificate and renewal.

A technician runs ``kiosk-hub enrol token --state DIR --booth booth-0042``
and carries the printed token to the new booth. The booth makes its own key,
and sends ``POST /api/enrol`` to the doctor-facing HTTPS listener (server
authentication only: it has no certificate yet)::

    {"token": "<one-time token>", "csr": "-----BEGIN CERTIFICATE REQUEST-----..."}

The hub keeps only the SHA-256 of a token, the booth id it was issued for
and its expiry. A request is accepted when the token exists, is unused and
unexpired, the CSR's self-signature verifies, its subject CN (and every SAN
entry, if it has any) is exactly the token's booth id, and its key is ECDSA
P-256. The token is then consumed by one conditional UPDATE (a second booth
racing with the same token loses) and :func:`hub.pki.issue_booth_certificate`
signs the key with the fleet CA. The answer::

    {"booth_id", "certificate": PEM, "chain": PEM (fleet CA), "serial": hex, "not_after": ISO 8601}

A CSR that names another booth, or that is malformed, does not consume the
token: a technician's typo must not cost a trip back to the hub operator.

Renewal is ``POST /renew`` on the booth listener, over mutual TLS with the
booth's current certificate (the handshake already refused an expired or
foreign one): ``{"csr": PEM}`` for the same booth id and a *new* key; the
answer has the same shape. Only the latest certificate issued to a booth may
renew (the store keeps its serial): once a booth has renewed or re-enrolled,
its old certificate, wherever a copy of it went, cannot mint a new one.
Booths certified before enrolment existed (``kiosk-hub add-booth``) have no
recorded serial; their first renewal records one.

Both are safe to retry: a booth whose answer was lost sends a CSR for the same
key again (``kiosk-enrol`` keeps the new key as ``booth.key.pending`` until its
certificate is installed), and gets the certificate already issued for that key
(audited with ``repeat=yes``), although its token is spent or its old
certificate superseded. The CSR's signature proves it holds that key.

Only ECDSA P-256 keys are certified, although Ed25519 CSRs verify: a booth's
key also signs its DTLS fingerprint, which the doctor's browser checks with
WebCrypto ECDSA P-256 (``hub/static/js/binding.js``), and TPM 2.0 chips
offer NIST P-256 but rarely Ed25519.

Refusals are :class:`EnrolmentError` with an :class:`EnrolReason`; each is
sent as ``{"error": reason, "message": text}`` and audited as
``enrol_refused``/``renew_refused`` with the reason. Attempts are rate
limited per client address (enrolment) or per booth (renewal) before any
parsing. Tokens never reach a log: the audit names a token by the first
hex digits of its hash.

:func:`parse_enrol_request` and :func:`parse_renew_request` are pure (bytes
in, typed request or :class:`EnrolmentError` out) and fuzzed.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub import pki
from hub.accounts import AuditHook, TokenBuckets, log_security_event, opaque
from hub.store import BoothCertificate, Store

TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
"""What a token looks like (``secrets.token_urlsafe(32)`` gives 43 characters); anything else is refused
before the store is asked."""
MAX_CSR: Final = 4096
"""A P-256 CSR is about 450 characters of PEM; longer input is refused before it is parsed."""
DEFAULT_TTL: Final = datetime.timedelta(hours=24)
MAX_TTL: Final = datetime.timedelta(days=30)
DURATION: Final = re.compile(r"^([0-9]{1,7})([smhd]?)$")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
CSR_PEM_HEADER: Final = "-----BEGIN CERTIFICATE REQUEST-----"


class EnrolReason(enum.Enum):
    """Why an enrolment or renewal was refused (the ``error`` code of the answer)."""

    BAD_REQUEST = "bad_request"
    """The body is not a JSON object of exactly the expected text fields."""
    BAD_TOKEN = "bad_token"
    """The token is not even token-shaped."""
    TOKEN_UNKNOWN = "token_unknown"
    TOKEN_USED = "token_used"
    TOKEN_EXPIRED = "token_expired"
    BAD_CSR = "bad_csr"
    """Not a PEM certificate signing request, or too long."""
    CSR_SIGNATURE = "csr_signature"
    """The CSR's self-signature does not verify: whoever sent it does not hold the key."""
    KEY_TYPE = "key_type"
    """Not an ECDSA P-256 key."""
    NAME_MISMATCH = "name_mismatch"
    """The CSR's subject or SAN names another booth (or nothing)."""
    SAME_KEY = "same_key"
    """A renewal must bring a new key."""
    CERTIFICATE = "certificate"
    """Renewal over a TLS client certificate that is not a fleet booth certificate."""
    SUPERSEDED = "superseded"
    """Renewal over a booth certificate that is no longer the latest issued to that booth."""
    RATE_LIMITED = "rate_limited"


_STATUS: Final = {
    EnrolReason.BAD_REQUEST: 400,
    EnrolReason.BAD_TOKEN: 401,
    EnrolReason.TOKEN_UNKNOWN: 401,
    EnrolReason.TOKEN_USED: 401,
    EnrolReason.TOKEN_EXPIRED: 401,
    EnrolReason.BAD_CSR: 400,
    EnrolReason.CSR_SIGNATURE: 400,
    EnrolReason.KEY_TYPE: 400,
    EnrolReason.NAME_MISMATCH: 403,
    EnrolReason.SAME_KEY: 400,
    EnrolReason.CERTIFICATE: 403,
    EnrolReason.SUPERSEDED: 403,
    EnrolReason.RATE_LIMITED: 429,
}


class EnrolmentError(Exception):
    """A refused enrolment or renewal; ``reason`` says why, ``status`` is the HTTP status it is sent with."""

    def __init__(self, reason: EnrolReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def status(self) -> int:
        return _STATUS[self.reason]


# -- tokens -------------------------------------------------------------------------------------------
def new_token() -> str:
    """A fresh one-time token: 256 random bits, URL-safe base64."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    """What the store keeps instead of a token."""
    return hashlib.sha256(token.encode()).digest()


def token_id(token_hash: bytes) -> str:
    """How the audit log names a token: the first hex digits of its hash (the token itself never appears)."""
    return token_hash.hex()[:12]


def parse_ttl(text: str) -> datetime.timedelta:
    """``"24h"``, ``"30m"``, ``"7d"``, ``"90s"`` or plain seconds; between one minute and 30 days."""
    match = DURATION.match(text.strip())
    if match is None:
        raise ValueError("a lifetime looks like 24h, 30m, 7d or 3600")
    ttl = datetime.timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    if not datetime.timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise ValueError("a token lives between one minute and 30 days")
    return ttl


def issue_token(
    store: Store,
    booth_id: str,
    *,
    ttl: datetime.timedelta = DEFAULT_TTL,
    now: float,
    audit: AuditHook = log_security_event,
) -> str:
    """Create a one-time token for ``booth_id``; returned once, stored only as a hash."""
    if not pki.BOOTH_ID.match(booth_id):
        raise ValueError("a booth id looks like booth-0001")
    token = new_token()
    token_hash = hash_token(token)
    expires = now + ttl.total_seconds()
    store.add_enrolment_token(token_hash, booth_id, now=now, expires=expires)
    audit(
        "enrol_token_issued",
        {"booth": booth_id, "token": token_id(token_hash), "expires": _iso(expires)},
    )
    return token


# -- requests (pure) --------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnrolRequest:
    """A parsed ``POST /api/enrol`` body."""

    token: str
    csr: x509.CertificateSigningRequest


def _json_fields(body: bytes, *keys: str) -> dict[str, str]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise EnrolmentError(EnrolReason.BAD_REQUEST, "the body is not JSON") from exc
    if not isinstance(document, dict) or set(document) != set(keys):
        raise EnrolmentError(EnrolReason.BAD_REQUEST, f"expected exactly the text fields {', '.join(keys)}")
    if not all(isinstance(document[key], str) for key in keys):
        raise EnrolmentError(EnrolReason.BAD_REQUEST, f"expected exactly the text fields {', '.join(keys)}")
    return document


def parse_csr(text: str) -> x509.CertificateSigningRequest:
    """A PEM CSR whose self-signature verifies (the sender holds the key)."""
    if len(text) > MAX_CSR or not text.lstrip().startswith(CSR_PEM_HEADER):
        raise EnrolmentError(EnrolReason.BAD_CSR, "csr must be one PEM certificate signing request")
    try:
        csr = x509.load_pem_x509_csr(text.encode())
    except (ValueError, UnicodeEncodeError, x509.InvalidVersion) as exc:
        raise EnrolmentError(EnrolReason.BAD_CSR, "csr is not a readable certificate signing request") from exc
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # an unsupported key or signature algorithm
        raise EnrolmentError(EnrolReason.KEY_TYPE, "the CSR's key type is not supported") from exc
    if not valid:
        raise EnrolmentError(EnrolReason.CSR_SIGNATURE, "the CSR's signature does not verify")
    return csr


def parse_enrol_request(body: bytes) -> EnrolRequest:
    """``{"token", "csr"}`` → :class:`EnrolRequest`, or :class:`EnrolmentError`."""
    fields = _json_fields(body, "token", "csr")
    if not TOKEN.match(fields["token"]):
        raise EnrolmentError(EnrolReason.BAD_TOKEN, "the token is not an enrolment token")
    return EnrolRequest(fields["token"], parse_csr(fields["csr"]))


def parse_renew_request(body: bytes) -> x509.CertificateSigningRequest:
    """``{"csr"}`` → the CSR, or :class:`EnrolmentError`."""
    return parse_csr(_json_fields(body, "csr")["csr"])


def csr_public_key(csr: x509.CertificateSigningRequest, booth_id: str) -> ec.EllipticCurvePublicKey:
    """The CSR's key once it is P-256 and the CSR names exactly ``booth_id`` (CN, and every SAN entry)."""
    try:
        key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise EnrolmentError(EnrolReason.KEY_TYPE, "the CSR's key type is not supported") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EnrolmentError(EnrolReason.KEY_TYPE, "the booth key must be ECDSA P-256")
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [booth_id]:
        raise EnrolmentError(EnrolReason.NAME_MISMATCH, "the CSR's subject does not name this booth")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return key
    except ValueError as exc:  # a duplicated or unparsable extension
        raise EnrolmentError(EnrolReason.BAD_CSR, "the CSR's extensions are unreadable") from exc
    entries = list(san)
    if not entries or any(not isinstance(e, x509.DNSName) or e.value != booth_id for e in entries):
        raise EnrolmentError(EnrolReason.NAME_MISMATCH, "the CSR's subject alternative names name another booth")
    return key


def _public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _iso(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).isoformat(timespec="seconds")


# -- the service --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IssuedCertificate:
    """A booth certificate the hub just issued, and the chain to send with it."""

    booth_id: str
    certificate: x509.Certificate
    fleet_ca: x509.Certificate

    @property
    def serial(self) -> str:
        return f"{self.certificate.serial_number:x}"

    def as_json(self) -> dict[str, str]:
        return {
            "booth_id": self.booth_id,
            "certificate": pki.pem(self.certificate),
            "chain": pki.pem(self.fleet_ca),
            "serial": self.serial,
            "not_after": self.certificate.not_valid_after_utc.isoformat(timespec="seconds"),
        }


class Enrolment:
    """Enrolment and renewal over a :class:`Store` and the fleet CA; wall clock passed as ``now``."""

    def __init__(
        self,
        store: Store,
        fleet: pki.Issuer,
        *,
        audit: AuditHook = log_security_event,
        burst: int = 10,
        per_minute: float = 6.0,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.audit = audit
        self.buckets = TokenBuckets(burst, per_minute)

    def enrol(self, body: bytes, *, client: str, now: float) -> IssuedCertificate:
        """Handle one ``POST /api/enrol`` body from ``client`` (its address)."""
        fields = {"client": opaque(client)}
        try:
            if not self.buckets.take(client, time.monotonic()):
                raise EnrolmentError(EnrolReason.RATE_LIMITED, "too many enrolment attempts; wait a minute")
            request = parse_enrol_request(body)
            token_hash = hash_token(request.token)
            fields["token"] = token_id(token_hash)
            token = self.store.enrolment_token(token_hash)
            if token is None:
                raise EnrolmentError(EnrolReason.TOKEN_UNKNOWN, "unknown enrolment token")
            fields["booth"] = token.booth_id
            key = csr_public_key(request.csr, token.booth_id)
            if token.used is not None:
                # A booth whose answer was lost asks again with the same key (its CSR proves it holds it).
                repeated = self._repeat(token.booth_id, key)
                if repeated is not None:
                    self.audit("enrol_ok", {**fields, "serial": repeated.serial, "repeat": "yes"})
                    return repeated
                raise EnrolmentError(EnrolReason.TOKEN_USED, "this enrolment token has already been used")
            if token.expires <= now:
                raise EnrolmentError(EnrolReason.TOKEN_EXPIRED, "this enrolment token has expired")
            # Only now, with everything checked, is the token spent; the UPDATE is conditional, so of two
            # requests racing past the checks above only one gets here with a True.
            if not self.store.consume_enrolment_token(token_hash, now):
                raise EnrolmentError(EnrolReason.TOKEN_USED, "this enrolment token has already been used")
        except EnrolmentError as exc:
            self.audit("enrol_refused", {**fields, "reason": exc.reason.value})
            raise
        issued = self._issue(key, token.booth_id, now)
        self._record(issued, now)
        self.audit("enrol_ok", {**fields, "serial": issued.serial})
        return issued

    def renew(self, body: bytes, *, peer_der: bytes | None, now: float) -> IssuedCertificate:
        """Handle one ``POST /renew`` body from the booth whose TLS client certificate is ``peer_der``."""
        fields: dict[str, str] = {}
        try:
            try:
                if not peer_der:
                    raise pki.PkiError("a booth certificate is required")
                identity = pki.booth_identity(peer_der, self.fleet.certificate)
            except pki.PkiError as exc:
                raise EnrolmentError(EnrolReason.CERTIFICATE, str(exc)) from exc
            fields["booth"] = identity.booth_id
            if not self.buckets.take(f"renew:{identity.booth_id}", time.monotonic()):
                raise EnrolmentError(EnrolReason.RATE_LIMITED, "too many renewal attempts; wait a minute")
            key = csr_public_key(parse_renew_request(body), identity.booth_id)
            current = x509.load_pem_x509_certificate(identity.certificate_pem.encode())
            previous = f"{current.serial_number:x}"
            fields["previous"] = previous
            repeated = self._repeat(identity.booth_id, key)
            if repeated is not None and repeated.serial != previous:
                self.audit("renew_ok", {**fields, "serial": repeated.serial, "repeat": "yes"})
                return repeated
            latest = self.store.booth_certificate(identity.booth_id)
            if latest is not None and latest.serial != previous:
                raise EnrolmentError(EnrolReason.SUPERSEDED, "this certificate has been superseded; enrol again")
            if _public_der(key) == _public_der(current.public_key()):
                raise EnrolmentError(EnrolReason.SAME_KEY, "a renewal needs a new key")
            issued = self._issue(key, identity.booth_id, now)
            # Compare-and-swap on the serial: of two renewals racing with one certificate, one wins; the
            # loser's certificate was signed but is never handed out.
            if not self._record(issued, now, previous=previous):
                raise EnrolmentError(EnrolReason.SUPERSEDED, "this certificate has been superseded; enrol again")
        except EnrolmentError as exc:
            self.audit("renew_refused", {**fields, "reason": exc.reason.value})
            raise
        self.audit("renew_ok", {**fields, "serial": issued.serial})
        return issued

    def _repeat(self, booth_id: str, key: ec.EllipticCurvePublicKey) -> IssuedCertificate | None:
        """The booth's latest certificate again, when it certifies ``key`` (from a CSR whose signature verified)."""
        latest = self.store.booth_certificate(booth_id)
        if latest is None or hashlib.sha256(_public_der(key)).digest() != latest.key_sha256:
            return None
        return IssuedCertificate(
            booth_id, x509.load_pem_x509_certificate(latest.certificate.encode()), self.fleet.certificate
        )

    def _record(self, issued: IssuedCertificate, now: float, *, previous: str | None = None) -> bool:
        record = BoothCertificate(
            booth_id=issued.booth_id,
            serial=issued.serial,
            key_sha256=hashlib.sha256(_public_der(issued.certificate.public_key())).digest(),
            certificate=pki.pem(issued.certificate),
            not_after=issued.certificate.not_valid_after_utc.timestamp(),
            issued=now,
        )
        return self.store.record_booth_certificate(record, previous=previous)

    def _issue(self, key: ec.EllipticCurvePublicKey, booth_id: str, now: float) -> IssuedCertificate:
        at = datetime.datetime.fromtimestamp(now, datetime.UTC)
        certificate = pki.issue_booth_certificate(self.fleet, key, booth_id, now=at)
        return IssuedCertificate(booth_id, certificate, self.fleet.certificate)


# -- HTTP ---------------------------------------------------------------------------------------------
ENROLMENT: Final = web.AppKey("enrolment", Enrolment)


def _refusal(exc: EnrolmentError) -> web.Response:
    return web.json_response({"error": exc.reason.value, "message": str(exc)}, status=exc.status)


async def enrol_endpoint(request: web.Request) -> web.Response:
    """``POST /api/enrol`` on the doctor listener: token + CSR → the booth's first certificate."""
    body = await request.read()
    try:
        issued = request.app[ENROLMENT].enrol(body, client=request.remote or "unknown", now=time.time())
    except EnrolmentError as exc:
        return _refusal(exc)
    return web.json_response(issued.as_json())


async def renew_endpoint(request: web.Request) -> web.Response:
    """``POST /renew`` on the booth listener: CSR for a new key → a fresh certificate for the same booth."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    body = await request.read()
    try:
        issued = request.app[ENROLMENT].renew(body, peer_der=der, now=time.time())
    except EnrolmentError as exc:
        return _refusal(exc)
    return web.json_response(issued.as_json())


def install(doctors: web.Application, booths: web.Application, service: Enrolment) -> None:
    """Add the enrolment endpoint to the doctor listener and the renewal endpoint to the booth listener."""
    doctors[ENROLMENT] = service
    booths[ENROLMENT] = service
    doctors.router.add_post("/api/enrol", enrol_endpoint)
    booths.router.add_post("/renew", renew_endpoint)
