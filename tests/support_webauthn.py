"""A software WebAuthn authenticator (ES256, attestation "none") for tests, written from the specification.

It plays both the authenticator and the browser: from the JSON options the
hub hands out (``PublicKeyCredential*OptionsJSON``) it builds what
``PublicKeyCredential.toJSON()`` gives the console, so tests post exactly what
a browser would. Nothing here comes from the hub or py_webauthn, except
that ``cbor2`` (which py_webauthn depends on) encodes the CBOR.

WebAuthn Level 3 structures used:

- authenticatorData = rpIdHash (32) | flags (1) | signCount (4, big-endian)
  [| attestedCredentialData = aaguid (16) | credentialIdLength (2) | credentialId | credentialPublicKey (COSE)]
- flags: UP 0x01, UV 0x04, AT 0x40;
- COSE EC2 key: {1 (kty): 2 (EC2), 3 (alg): -7 (ES256), -1 (crv): 1 (P-256), -2 (x): 32 bytes, -3 (y): 32 bytes};
- attestationObject = CBOR {"fmt": "none", "attStmt": {}, "authData": bytes};
- assertion signature: ECDSA P-256 SHA-256, DER, over authenticatorData | SHA-256(clientDataJSON).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

UP = 0x01
UV = 0x04
AT = 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cose_es256(key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = key.public_numbers()
    return bytes(
        cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
    )


def client_data(kind: str, challenge: str, origin: str, **extra: Any) -> bytes:
    """clientDataJSON as a browser serialises it (type, challenge, origin, crossOrigin first)."""
    return json.dumps(
        {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False, **extra},
        separators=(",", ":"),
    ).encode()


@dataclass
class SoftKey:
    """One credential on a software security key."""

    rp_id: str
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    sign_count: int = 0
    counter_step: int = 1
    """0 makes a key without a signature counter (always reports 0), as many passkeys do."""
    aaguid: bytes = bytes(16)
    user_handle: bytes | None = None

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def auth_data(self, *, rp_id: str | None = None, flags: int = UP | UV, attested: bool = False) -> bytes:
        data = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        data += bytes([flags | (AT if attested else 0)]) + struct.pack(">I", self.sign_count)
        if attested:
            data += self.aaguid + struct.pack(">H", len(self.credential_id)) + self.credential_id
            data += cose_es256(self.key.public_key())
        return data

    def create(
        self,
        options: dict[str, Any],
        origin: str,
        *,
        rp_id: str | None = None,
        challenge: str | None = None,
        flags: int = UP | UV,
    ) -> dict[str, Any]:
        """``navigator.credentials.create({publicKey: options})`` then ``toJSON()``."""
        self.user_handle = unb64url(options["user"]["id"])
        auth_data = self.auth_data(rp_id=rp_id or options["rp"]["id"], flags=flags, attested=True)
        attestation = bytes(cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data}))
        data = client_data("webauthn.create", challenge or options["challenge"], origin)
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(data),
                "attestationObject": b64url(attestation),
                "authenticatorData": b64url(auth_data),
                "transports": ["usb", "nfc", "smoke-signals"],
                "publicKeyAlgorithm": -7,
                "publicKey": b64url(
                    self.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
                ),
            },
        }

    def get(
        self,
        options: dict[str, Any],
        origin: str,
        *,
        rp_id: str | None = None,
        challenge: str | None = None,
        flags: int = UP | UV,
        sign_count: int | None = None,
        user_handle: bool = False,
    ) -> dict[str, Any]:
        """``navigator.credentials.get({publicKey: options})`` then ``toJSON()``; the counter moves on."""
        self.sign_count = self.sign_count + self.counter_step if sign_count is None else sign_count
        auth_data = self.auth_data(rp_id=rp_id or options["rpId"], flags=flags)
        data = client_data("webauthn.get", challenge or options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(self.user_handle) if user_handle and self.user_handle else None,
            },
        }
