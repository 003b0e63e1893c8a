"""WebAuthn security keys as the doctors' second factor (TOTP stays as the fallback), over py_webauthn.

Two ceremonies, each in two requests:

- registration, for a fully logged-in doctor: :func:`registration_options`
  then :func:`verify_registration`;
- login, for a pending session (password checked): :func:`authentication_options`
  then :func:`verify_authentication`.

The options step stores a fresh random challenge server-side, bound to the
session (pending for a login, active for a registration) and to the console
origin it was asked from, valid :data:`CHALLENGE_TTL` seconds. The answer step
takes it out of the store before looking at anything else, so a challenge
is used at most once, whatever the outcome; nothing the client sends back is
trusted to say which challenge it answers.

The relying party id is the host name of the console's origin (``localhost``
in development). Browsers refuse WebAuthn for an IP-address origin, so those
get a clear error instead of options that cannot work.

Parsing of CBOR, COSE keys and authenticator data, and every signature check,
is py_webauthn's. What this module adds: a strict shape check of the
credential JSON the browser sends (``PublicKeyCredential.toJSON()``, WebAuthn
Level 3), so malformed input is a typed 400 and never reaches the library as
something unexpected; credential ownership (an assertion must come from one
of *this* account's keys); the signature-counter bookkeeping in the store.

Audit events and login-failure counting are the caller's
(:class:`hub.accounts.Accounts`); nothing here logs a challenge or a
credential id.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import decode_credential_public_key, decoded_public_key_to_cryptography
from webauthn.helpers.options_to_json_dict import options_to_json_dict
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from hub.store import Challenge, Store, WebAuthnCredential

logger = logging.getLogger(__name__)

RP_NAME: Final = "Teleconsult kiosk"
CHALLENGE_TTL: Final = 120.0
"""Seconds a challenge stays valid; the browser is told the same (its ``timeout``)."""
CHALLENGE_BYTES: Final = 32
MAX_CREDENTIALS: Final = 10
"""Security keys per account."""
MAX_CREDENTIAL_ID: Final = 1023
"""Longest credential id WebAuthn allows, in bytes."""
MAX_NAME: Final = 64
LOGIN: Final = "login"
REGISTER: Final = "register"
IP_ORIGIN_MESSAGE: Final = "use the host name, WebAuthn refuses IP addresses"

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_KNOWN_TRANSPORTS: Final = frozenset(transport.value for transport in AuthenticatorTransport)
_TOP_REQUIRED: Final = frozenset({"id", "rawId", "response", "type"})
_TOP_OPTIONAL: Final = frozenset({"authenticatorAttachment", "clientExtensionResults"})
_RESPONSE_REQUIRED: Final = {
    REGISTER: frozenset({"clientDataJSON", "attestationObject"}),
    LOGIN: frozenset({"clientDataJSON", "authenticatorData", "signature"}),
}
_RESPONSE_OPTIONAL: Final = {
    REGISTER: frozenset({"authenticatorData", "transports", "publicKeyAlgorithm", "publicKey"}),
    LOGIN: frozenset({"userHandle", "attestationObject"}),
}

Kind = Literal["login", "register"]


class WebAuthnError(Exception):
    """A request the hub answers with an HTTP error: ``status``, a stable ``code``, a plain message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class CeremonyFailed(Exception):
    """The authenticator's answer did not verify. The message is for the hub's debug log only (it never holds
    a challenge or a credential id); the client is told no more than "refused"."""


def malformed(message: str) -> WebAuthnError:
    return WebAuthnError(400, "bad_credential", message)


@dataclass(frozen=True)
class CredentialJSON:
    """A browser's ``PublicKeyCredential.toJSON()`` that passed :func:`check_credential`."""

    value: dict[str, Any]
    """The JSON object as received, for py_webauthn."""
    raw_id: bytes
    user_handle: bytes | None
    """Login only: the user handle the authenticator returned, if any."""
    transports: tuple[str, ...]
    """Registration only: the transports the browser reported that WebAuthn knows."""


# -- relying party ------------------------------------------------------------------------------
def rp_id_for(origin: str) -> str:
    """The relying party id for a console origin: its host name. An IP address is refused (browsers do)."""
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        host = None
    if not host:
        raise WebAuthnError(400, "origin", "the console's origin has no host name")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    raise WebAuthnError(400, "ip_origin", IP_ORIGIN_MESSAGE)


# -- the credential JSON, checked strictly ---------------------------------------------------------
def _b64url(value: object, what: str, *, max_bytes: int | None = None) -> bytes:
    if not isinstance(value, str) or not value or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise malformed(f"{what} must be non-empty base64url")
    try:
        decoded = base64.urlsafe_b64decode(_padded(value))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the pattern and length rule it out
        raise malformed(f"{what} must be non-empty base64url") from exc
    if max_bytes is not None and len(decoded) > max_bytes:
        raise malformed(f"{what} is too long")
    return decoded


def _keys(value: dict[str, Any], required: frozenset[str], optional: frozenset[str], what: str) -> None:
    keys = set(value)
    if not required <= keys or not keys <= required | optional:
        raise malformed(
            f"{what} must have the fields {', '.join(sorted(required))} (and optionally {', '.join(sorted(optional))})"
        )


def check_credential(value: object, kind: Kind) -> CredentialJSON:
    """Check the shape of a registration (``"register"``) or assertion (``"login"``) credential JSON;
    :class:`WebAuthnError` ``bad_credential`` otherwise. Content (signatures, CBOR) is verified later."""
    if not isinstance(value, dict):
        raise malformed("credential must be a JSON object")
    _keys(value, _TOP_REQUIRED, _TOP_OPTIONAL, "credential")
    raw_id = _b64url(value["rawId"], "rawId", max_bytes=MAX_CREDENTIAL_ID)
    if value["id"] != value["rawId"]:
        raise malformed("id and rawId differ")
    if value["type"] != "public-key":
        raise malformed('type must be "public-key"')
    attachment = value.get("authenticatorAttachment")
    if attachment not in (None, "platform", "cross-platform"):
        raise malformed("authenticatorAttachment must be platform, cross-platform or null")
    if not isinstance(value.get("clientExtensionResults", {}), dict):
        raise malformed("clientExtensionResults must be an object")
    response = value["response"]
    if not isinstance(response, dict):
        raise malformed("response must be a JSON object")
    _keys(response, _RESPONSE_REQUIRED[kind], _RESPONSE_OPTIONAL[kind], "response")
    for key in sorted(_RESPONSE_REQUIRED[kind]):
        _b64url(response[key], key)
    for key in ("authenticatorData", "publicKey", "attestationObject"):
        if key not in _RESPONSE_REQUIRED[kind] and key in _RESPONSE_OPTIONAL[kind] and key in response:
            _b64url(response[key], key)
    algorithm = response.get("publicKeyAlgorithm", 0)
    if isinstance(algorithm, bool) or not isinstance(algorithm, int):
        raise malformed("publicKeyAlgorithm must be an integer")
    transports = response.get("transports", [])
    if not isinstance(transports, list) or not all(isinstance(item, str) for item in transports):
        raise malformed("transports must be a list of strings")
    user_handle = response.get("userHandle")
    handle = None if user_handle is None else _b64url(user_handle, "userHandle", max_bytes=64)
    known = tuple(dict.fromkeys(item for item in transports if item in _KNOWN_TRANSPORTS))
    return CredentialJSON(value, raw_id, handle, known)


def check_name(name: str | None, existing: int) -> str:
    """A security key's display name: given (1 to 64 printable characters) or made up."""
    if name is None:
        return f"Security key {existing + 1}"
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= MAX_NAME or not cleaned.isprintable():
        raise WebAuthnError(400, "bad_request", f"a key name has 1 to {MAX_NAME} printable characters")
    return cleaned


def _descriptors(credentials: list[WebAuthnCredential]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=credential.credential_id,
            transports=[AuthenticatorTransport(t) for t in credential.transports if t in _KNOWN_TRANSPORTS] or None,
        )
        for credential in credentials
    ]


def _refuse_cross_origin(credential: CredentialJSON) -> None:
    """The console is never framed (CSP frame-ancestors 'none'), so an answer made inside a cross-origin
    frame is not ours. py_webauthn does not look at ``crossOrigin``; this does (JSON only, no CBOR)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(_padded(credential.value["response"]["clientDataJSON"])))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CeremonyFailed("clientDataJSON is not JSON") from exc
    if not isinstance(data, dict) or data.get("crossOrigin") is True or "topOrigin" in data:
        raise CeremonyFailed("the answer was made in a cross-origin frame")


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def _new_challenge(store: Store, id_hash: bytes, purpose: str, origin: str, now: float) -> bytes:
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    store.put_challenge(id_hash, Challenge(purpose, challenge, origin, now + CHALLENGE_TTL))
    return challenge


# -- registration --------------------------------------------------------------------------------------
def registration_options(
    store: Store, *, username: str, display_name: str, id_hash: bytes, origin: str, now: float
) -> dict[str, Any]:
    """``PublicKeyCredentialCreationOptionsJSON`` for an active session; its challenge is stored."""
    rp_id = rp_id_for(origin)
    existing = store.credentials(username)
    if len(existing) >= MAX_CREDENTIALS:
        raise WebAuthnError(409, "too_many_credentials", f"at most {MAX_CREDENTIALS} security keys per account")
    user_handle = store.user_handle(username, create=True)
    assert user_handle is not None
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=username,
        user_id=user_handle,
        user_display_name=display_name,
        challenge=_new_challenge(store, id_hash, REGISTER, origin, now),
        timeout=int(CHALLENGE_TTL * 1000),
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            require_resident_key=False,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(existing),
    )
    return options_to_json_dict(options)


def verify_registration(
    store: Store,
    credential: CredentialJSON,
    *,
    username: str,
    id_hash: bytes,
    origin: str,
    name: str | None,
    now: float,
) -> WebAuthnCredential:
    """Verify an attestation against the session's challenge and store the new key.

    :class:`CeremonyFailed` when it does not verify; :class:`WebAuthnError` 409 when the key is already
    registered or the account has too many."""
    challenge = store.take_challenge(id_hash, REGISTER, now)
    if challenge is None:
        raise CeremonyFailed("no live registration challenge for this session")
    if challenge.origin != origin:
        raise CeremonyFailed("the answer comes from another origin than the options request")
    _refuse_cross_origin(credential)
    try:
        verified = verify_registration_response(
            credential=credential.value,
            expected_challenge=challenge.challenge,
            expected_rp_id=rp_id_for(origin),
            expected_origin=origin,
            require_user_presence=True,
            require_user_verification=False,
        )
        # The key must be usable for later assertions: the library decodes it the same way then.
        decoded_public_key_to_cryptography(decode_credential_public_key(verified.credential_public_key))
    except WebAuthnError:
        raise
    except Exception as exc:  # anything raised while looking at untrusted input is a refusal
        raise CeremonyFailed(f"{type(exc).__name__}: {exc}") from exc
    if verified.credential_id != credential.raw_id:
        raise CeremonyFailed("the attested credential id is not the credential's rawId")
    count = store.credential_count(username)
    if count >= MAX_CREDENTIALS:
        raise WebAuthnError(409, "too_many_credentials", f"at most {MAX_CREDENTIALS} security keys per account")
    stored = WebAuthnCredential(
        credential_id=verified.credential_id,
        username=username,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=credential.transports,
        name=check_name(name, count),
        created=now,
        last_used=None,
    )
    try:
        store.add_credential(stored)
    except sqlite3.IntegrityError as exc:
        raise WebAuthnError(409, "credential_exists", "this security key is already registered") from exc
    return stored


# -- login ---------------------------------------------------------------------------------------------
def authentication_options(store: Store, *, username: str, id_hash: bytes, origin: str, now: float) -> dict[str, Any]:
    """``PublicKeyCredentialRequestOptionsJSON`` for a pending session; its challenge is stored."""
    rp_id = rp_id_for(origin)
    credentials = store.credentials(username)
    if not credentials:
        raise WebAuthnError(409, "no_credentials", "no security key is registered for this account; use TOTP")
    options = generate_authentication_options(
        rp_id=rp_id,
        challenge=_new_challenge(store, id_hash, LOGIN, origin, now),
        timeout=int(CHALLENGE_TTL * 1000),
        allow_credentials=_descriptors(credentials),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return options_to_json_dict(options)


def verify_authentication(
    store: Store, credential: CredentialJSON, *, username: str, id_hash: bytes, origin: str, now: float
) -> WebAuthnCredential:
    """Verify an assertion against the session's challenge and one of ``username``'s keys; move its counter
    on. :class:`CeremonyFailed` when anything does not check out."""
    challenge = store.take_challenge(id_hash, LOGIN, now)
    if challenge is None:
        raise CeremonyFailed("no live login challenge for this session")
    if challenge.origin != origin:
        raise CeremonyFailed("the answer comes from another origin than the options request")
    stored = store.credential(credential.raw_id)
    if stored is None or stored.username != username:
        raise CeremonyFailed("not a security key of this account")
    if credential.user_handle is not None and credential.user_handle != store.user_handle(username):
        raise CeremonyFailed("the user handle is not this account's")
    _refuse_cross_origin(credential)
    try:
        verified = verify_authentication_response(
            credential=credential.value,
            expected_challenge=challenge.challenge,
            expected_rp_id=rp_id_for(origin),
            expected_origin=origin,
            credential_public_key=stored.public_key,
            credential_current_sign_count=stored.sign_count,
            require_user_verification=False,
        )
    except WebAuthnError:
        raise
    except Exception as exc:  # anything raised while looking at untrusted input is a refusal
        raise CeremonyFailed(f"{type(exc).__name__}: {exc}") from exc
    if not store.advance_sign_count(stored.credential_id, verified.new_sign_count, now):
        raise CeremonyFailed("the signature counter did not move forward")
    return stored
