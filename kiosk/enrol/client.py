"""Enrol and renew against the hub: CSR out, certificate back, checked before it is installed.

The hub is always verified against the fleet CA file the technician brought
(TLS 1.3, host name checked); the chain the hub returns is informative only:
the certificate must be issued directly by *our* fleet CA, certify *our* new
key, and name *our* booth with the booth role, or nothing is installed.
"""

from __future__ import annotations

import datetime
import http.client
import json
import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import EnrolError, Reason
from .files import Identity, IdentityDir, new_key, same_key, tpm_present

logger = logging.getLogger(__name__)

BOOTH_ID: Final = re.compile(r"^booth-[0-9]{4,12}$")
"""The same shape as the hub's ``hub.pki.BOOTH_ID``."""
TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
MAX_RESPONSE: Final = 64 * 1024
TIMEOUT: Final = 30.0
CLOCK_SKEW: Final = datetime.timedelta(minutes=5)
DEFAULT_RENEW_WINDOW: Final = datetime.timedelta(days=30)


@dataclass(frozen=True)
class HubAddress:
    """Where to reach the hub."""

    host: str
    port: int


def parse_hub_url(url: str, *, schemes: tuple[str, ...]) -> HubAddress:
    """``https://host:port`` (or ``wss://host:port/ws`` for renewal): host and port; the path is ignored."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise EnrolError(Reason.USAGE, f"unusable hub URL {url!r}") from exc
    if parts.scheme not in schemes or not parts.hostname:
        raise EnrolError(Reason.USAGE, f"the hub URL must start with {' or '.join(s + '://' for s in schemes)}")
    return HubAddress(parts.hostname, port)


def make_csr(key: ec.EllipticCurvePrivateKey, booth_id: str) -> str:
    """A PEM CSR naming ``booth_id`` (subject CN and a DNS SAN), signed with ``key``."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, booth_id)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(booth_id)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def load_fleet_ca(path: Path) -> x509.Certificate:
    """The fleet root CA the hub and the booth certificate must chain to."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise EnrolError(Reason.USAGE, f"cannot read the fleet CA {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise EnrolError(Reason.USAGE, f"{path} is not a PEM certificate") from exc


def tls_context(fleet_ca: Path, identity: IdentityDir | None = None) -> ssl.SSLContext:
    """TLS 1.3 to the hub, verified against the fleet CA; with the installed pair as client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(fleet_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if identity is not None:
        context.load_cert_chain(identity.cert_path, identity.key_path)
    return context


def post_json(address: HubAddress, path: str, body: dict[str, str], context: ssl.SSLContext) -> dict[str, Any]:
    """POST a JSON object; the answer's JSON object, or :class:`EnrolError` (REFUSED carries the hub's code)."""
    connection = http.client.HTTPSConnection(address.host, address.port, context=context, timeout=TIMEOUT)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read(MAX_RESPONSE + 1)
    except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
        raise EnrolError(Reason.UNREACHABLE, f"cannot reach the hub at {address.host}:{address.port}: {exc}") from exc
    finally:
        connection.close()
    if len(raw) > MAX_RESPONSE:
        raise EnrolError(Reason.BAD_RESPONSE, "the hub's answer is too long")
    try:
        answer = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EnrolError(Reason.BAD_RESPONSE, f"the hub answered {response.status} without JSON") from exc
    if not isinstance(answer, dict):
        raise EnrolError(Reason.BAD_RESPONSE, "the hub's answer is not a JSON object")
    if response.status != 200:
        code = answer.get("error")
        message = answer.get("message")
        raise EnrolError(
            Reason.REFUSED,
            f"the hub refused: {message if isinstance(message, str) else response.status}",
            hub_code=code if isinstance(code, str) else "unknown",
            status=response.status,
        )
    return answer


def check_issued(
    answer: dict[str, Any],
    *,
    key: ec.EllipticCurvePrivateKey,
    booth_id: str,
    fleet_ca: x509.Certificate,
    now: datetime.datetime,
) -> x509.Certificate:
    """The certificate in the hub's answer, once it is ours: fleet CA, key, booth id and role, dates."""
    text = answer.get("certificate")
    if not isinstance(text, str):
        raise EnrolError(Reason.BAD_RESPONSE, "the hub's answer has no certificate")
    try:
        certificate = x509.load_pem_x509_certificate(text.encode())
    except (ValueError, UnicodeEncodeError, x509.InvalidVersion) as exc:
        raise EnrolError(Reason.BAD_RESPONSE, "the hub's certificate is not PEM") from exc
    try:
        certificate.verify_directly_issued_by(fleet_ca)
        same = same_key(certificate, key)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise EnrolError(Reason.BAD_CERTIFICATE, "the certificate is not issued by the fleet CA") from exc
    if not same:
        raise EnrolError(Reason.BAD_CERTIFICATE, "the certificate does not certify this booth's key")
    names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    units = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if names != [booth_id] or units != ["booth"]:
        raise EnrolError(Reason.BAD_CERTIFICATE, "the certificate is not a booth certificate for this booth")
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise EnrolError(Reason.BAD_CERTIFICATE, "the certificate has no client-authentication usage") from exc
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise EnrolError(Reason.BAD_CERTIFICATE, "the certificate has no client-authentication usage")
    if not certificate.not_valid_before_utc - CLOCK_SKEW <= now < certificate.not_valid_after_utc:
        raise EnrolError(Reason.BAD_CERTIFICATE, "the certificate is not valid now (check the booth's clock)")
    return certificate


def _summary(status: str, booth_id: str, certificate: x509.Certificate) -> dict[str, Any]:
    return {
        "status": status,
        "booth_id": booth_id,
        "serial": f"{certificate.serial_number:x}",
        "not_after": certificate.not_valid_after_utc.isoformat(timespec="seconds"),
        "key_storage": "file",
        "tpm_present": tpm_present(),
    }


def _booth_of(identity: Identity) -> str:
    names = [a.value for a in identity.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(names) != 1 or not isinstance(names[0], str) or not BOOTH_ID.match(names[0]):
        raise EnrolError(Reason.IDENTITY, "the installed certificate is not a booth certificate")
    return names[0]


def _new_or_pending_key(directory: IdentityDir, current: Identity | None) -> ec.EllipticCurvePrivateKey:
    """The key of an earlier attempt whose answer never came, else a new one; kept before the hub is asked."""
    key = directory.pending_key()
    if key is None or (current is not None and same_key(current.certificate, key)):
        key = new_key()
        directory.keep_pending_key(key)
    return key


def enrol(
    *,
    hub: str,
    token: str,
    booth_id: str,
    fleet_ca: Path,
    identity_dir: Path,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """First enrolment. A valid certificate for this booth already in place is kept (status
    ``already_enrolled``) and the token is not spent, so running it twice is harmless."""
    if not BOOTH_ID.match(booth_id):
        raise EnrolError(Reason.USAGE, "a booth id looks like booth-0001")
    if not TOKEN.match(token):
        raise EnrolError(Reason.USAGE, "that is not an enrolment token")
    address = parse_hub_url(hub, schemes=("https",))
    ca = load_fleet_ca(fleet_ca)
    at = now or datetime.datetime.now(datetime.UTC)
    directory = IdentityDir(identity_dir)
    directory.prepare()
    try:
        current = directory.load()
        booth_of_current = _booth_of(current) if current is not None else None
    except EnrolError as exc:
        # A broken pair (mismatched, unreadable, a key others can read) is what enrolment replaces.
        logger.warning("replacing the unusable identity in %s: %s", identity_dir, exc)
        current, booth_of_current = None, None
    if current is not None and booth_of_current == booth_id and not current.expires_within(datetime.timedelta(0), at):
        try:
            current.certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            pass  # a certificate from another fleet: enrol in this one
        else:
            return _summary("already_enrolled", booth_id, current.certificate)
    key = _new_or_pending_key(directory, current)
    answer = post_json(address, "/api/enrol", {"token": token, "csr": make_csr(key, booth_id)}, tls_context(fleet_ca))
    certificate = check_issued(answer, key=key, booth_id=booth_id, fleet_ca=ca, now=at)
    directory.install(key, certificate)
    logger.info("enrolled %s (certificate %x)", booth_id, certificate.serial_number)
    return _summary("enrolled", booth_id, certificate)


def renew(
    *,
    hub: str,
    fleet_ca: Path,
    identity_dir: Path,
    window: datetime.timedelta = DEFAULT_RENEW_WINDOW,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """Renew with a new key when the certificate expires within ``window``; status ``valid`` or ``renewed``."""
    address = parse_hub_url(hub, schemes=("https", "wss"))
    ca = load_fleet_ca(fleet_ca)
    at = now or datetime.datetime.now(datetime.UTC)
    directory = IdentityDir(identity_dir)
    current = directory.load()
    if current is None:
        raise EnrolError(Reason.NOT_ENROLLED, f"no {directory.cert_path.name} in {identity_dir}: enrol first")
    booth_id = _booth_of(current)
    if not current.expires_within(window, at):
        return _summary("valid", booth_id, current.certificate)
    key = _new_or_pending_key(directory, current)
    try:
        context = tls_context(fleet_ca, directory)
    except (OSError, ssl.SSLError) as exc:
        raise EnrolError(Reason.IDENTITY, f"cannot use the installed pair for TLS: {exc}") from exc
    answer = post_json(address, "/renew", {"csr": make_csr(key, booth_id)}, context)
    certificate = check_issued(answer, key=key, booth_id=booth_id, fleet_ca=ca, now=at)
    directory.install(key, certificate)
    logger.info("renewed %s (certificate %x)", booth_id, certificate.serial_number)
    return _summary("renewed", booth_id, certificate)
