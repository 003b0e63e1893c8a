"""The fleet's public-key infrastructure: CAs, the hub's certificate, booth and doctor certificates.

Trust layout (every key ECDSA P-256, every signature ECDSA-SHA256)::

    fleet CA (10 years, path length 1)
    ├── hub server certificate        OU "hub",    serverAuth, SAN localhost/127.0.0.1/::1
    ├── booth certificates            OU "booth",  clientAuth, CN = booth id ("booth-0001")
    └── doctor-issuing CA (path length 0)
        └── per-login doctor certificates   OU "doctor", CN = username, hours

Booths present their certificate on the booth listener (mutual TLS) and sign
their DTLS fingerprint with the same key; a doctor's browser signs its DTLS
fingerprint with a WebCrypto key the hub certifies at login through the
doctor-issuing CA. ``kiosk.session.binding`` checks both against the fleet CA
and tells the roles apart by the subject OU.

Because a doctor certificate chains to the fleet CA too, the booth listener
does not stop at the TLS handshake: it also requires OU "booth" and a
certificate issued directly by the fleet CA (:func:`booth_identity`).

Everything here is pure (keys, names and ``now`` in, objects out) except the
small ``save_*``/``load_*`` helpers that write private keys with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORGANISATION: Final = "Teleconsult kiosk"
FLEET_CA_LIFETIME: Final = datetime.timedelta(days=3653)
DOCTOR_CA_LIFETIME: Final = datetime.timedelta(days=1826)
SERVER_LIFETIME: Final = datetime.timedelta(days=397)
"""Public CAs cap server certificates at 398 days; we follow the same rule."""
BOOTH_LIFETIME: Final = datetime.timedelta(days=3 * 365)
DOCTOR_MAX_LIFETIME: Final = datetime.timedelta(hours=12)
SIGNING_LIFETIME: Final = datetime.timedelta(days=397)
PRESCRIBER_UNIT: Final = "prescriber"
"""Subject OU of a doctor's document-signing certificate (prescriptions), apart from per-login "doctor" keys."""
CLOCK_SKEW: Final = datetime.timedelta(minutes=5)
"""Certificates start a little in the past so a booth whose clock lags still accepts them."""
BOOTH_ID: Final = re.compile(r"^booth-[0-9]{4,12}$")
DOCTOR_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class PkiError(Exception):
    """A key or certificate the hub cannot use: bad input, wrong curve, missing file."""


@dataclass(frozen=True)
class Issuer:
    """A CA certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION)]
    if unit is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: Issuer | None,
    *,
    now: datetime.datetime,
    lifetime: datetime.timedelta,
) -> x509.CertificateBuilder:
    not_after = now + lifetime
    if issuer is not None:
        # A certificate never outlives its issuer.
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    authority = issuer.key.public_key() if issuer else public_key
    return builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), critical=False)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def create_fleet_ca(*, now: datetime.datetime, name: str = "Kiosk fleet CA") -> Issuer:
    """A new self-signed fleet root CA (10 years)."""
    key = new_key()
    cert = (
        _builder(_name(name), key.public_key(), None, now=now, lifetime=FLEET_CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issuer(cert, key)


def create_doctor_ca(fleet: Issuer, *, now: datetime.datetime) -> Issuer:
    """The intermediate CA that certifies doctors' per-login keys; it can issue leaves only."""
    key = new_key()
    cert = (
        _builder(_name("Kiosk doctor-issuing CA"), key.public_key(), fleet, now=now, lifetime=DOCTOR_CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(fleet.key, hashes.SHA256())
    )
    return Issuer(cert, key)


def issue_server_certificate(
    fleet: Issuer, key: ec.EllipticCurvePrivateKey, names: list[str], *, now: datetime.datetime
) -> x509.Certificate:
    """The hub's TLS server certificate; ``names`` are DNS names or IP addresses for the SAN."""
    alternatives: list[x509.GeneralName] = []
    for entry in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            alternatives.append(x509.DNSName(entry))
    return (
        _builder(_name(names[0] if names else "hub", "hub"), key.public_key(), fleet, now=now, lifetime=SERVER_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .sign(fleet.key, hashes.SHA256())
    )


def issue_booth_certificate(
    fleet: Issuer, public_key: ec.EllipticCurvePublicKey, booth_id: str, *, now: datetime.datetime
) -> x509.Certificate:
    """A booth's device certificate: mutual TLS to the hub and the booth's identity key."""
    if not BOOTH_ID.match(booth_id):
        raise PkiError("a booth id looks like booth-0001")
    return (
        _builder(_name(booth_id, "booth"), public_key, fleet, now=now, lifetime=BOOTH_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(fleet.key, hashes.SHA256())
    )


def load_doctor_public_key(spki_der: bytes) -> ec.EllipticCurvePublicKey:
    """A browser's per-login public key (SubjectPublicKeyInfo DER); P-256 only."""
    try:
        key = serialization.load_der_public_key(spki_der)
    except (ValueError, TypeError) as exc:
        raise PkiError("the public key is not a DER SubjectPublicKeyInfo") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PkiError("the public key must be ECDSA P-256")
    return key


def issue_doctor_certificate(
    doctor_ca: Issuer,
    public_key: ec.EllipticCurvePublicKey,
    username: str,
    *,
    now: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    """Certify a doctor's per-login key until ``not_after`` (at most 12 hours from now)."""
    if not DOCTOR_NAME.match(username):
        raise PkiError("unusable doctor account name")
    lifetime = min(not_after - now, DOCTOR_MAX_LIFETIME)
    if lifetime <= datetime.timedelta(0):
        raise PkiError("the session has already expired")
    return (
        _builder(_name(username, "doctor"), public_key, doctor_ca, now=now, lifetime=lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .sign(doctor_ca.key, hashes.SHA256())
    )


def issue_signing_certificate(
    doctor_ca: Issuer, public_key: ec.EllipticCurvePublicKey, username: str, *, now: datetime.datetime
) -> x509.Certificate:
    """A doctor's document-signing certificate (prescriptions, PAdES): OU "prescriber", non-repudiation.

    Kept apart from the per-login "doctor" certificates: those only carry digital
    signature, so a console identity key can never pass for a prescription signer.
    """
    if not DOCTOR_NAME.match(username):
        raise PkiError("unusable doctor account name")
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        _builder(_name(username, PRESCRIBER_UNIT), public_key, doctor_ca, now=now, lifetime=SIGNING_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(doctor_ca.key, hashes.SHA256())
    )


@dataclass(frozen=True)
class BoothIdentity:
    """Who is on the other end of a booth connection."""

    booth_id: str
    certificate_pem: str


def booth_identity(peer_der: bytes, fleet_ca: x509.Certificate) -> BoothIdentity:
    """Check a booth's client certificate beyond the TLS handshake.

    The handshake proved the chain ends at the fleet CA; this also requires the
    booth role (OU "booth"), a booth-shaped CN and a certificate signed by the
    fleet CA itself, so a doctor's certificate (issued by the doctor-issuing
    CA, also under the fleet CA) cannot log in as a booth.
    """
    try:
        cert = x509.load_der_x509_certificate(peer_der)
    except ValueError as exc:
        raise PkiError("unreadable client certificate") from exc
    units = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if units != ["booth"] or len(names) != 1 or not BOOTH_ID.match(names[0]):
        raise PkiError("the client certificate is not a booth certificate")
    try:
        cert.verify_directly_issued_by(fleet_ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PkiError("the booth certificate is not issued by the fleet CA itself") from exc
    return BoothIdentity(names[0], cert.public_bytes(serialization.Encoding.PEM).decode())


# -- files -------------------------------------------------------------------------------
def pem(cert: x509.Certificate) -> str:
    """A certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only, created with mode 0600 (never widened first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def save_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """A private key as unencrypted PKCS#8 PEM, mode 0600 (the state directory is the protection)."""
    write_private(
        path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def save_certificate(path: Path, *certs: x509.Certificate) -> None:
    """One or more certificates (leaf first) as PEM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(pem(cert) for cert in certs))


def load_issuer(cert_path: Path, key_path: Path) -> Issuer:
    """A CA certificate and key saved by :func:`save_certificate` / :func:`save_key`."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot load the CA from {cert_path.name}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path.name} is not an ECDSA key")
    return Issuer(cert, key)
