"""Binding DTLS fingerprints to fleet identities, and the short authentication string.

A DTLS fingerprint is only as trustworthy as the signalling that carried it,
and the signalling goes through the hub. So each side signs its own
fingerprint with an identity key the fleet CA vouches for: the booth with its
enrolled device key, the doctor's browser with a per-login key the hub
certified. Each side checks the other's signature and certificate chain
against the fleet CA before media flows. A hub that swaps fingerprints to
sit in the middle cannot produce those signatures without a fleet
certificate of the right role; and even a hub that holds such a key (it
issues doctors' certificates) is caught by the short authentication string
(SAS), derived from both fingerprints, that patient and doctor compare aloud.

Everything here is pure: keys, certificates and ``now`` come in, results and
typed errors come out.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import re
import warnings
from dataclasses import dataclass
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

Role = Literal["booth", "doctor"]
ROLES: Final = ("booth", "doctor")
"""The subject OU a fleet certificate carries for each role."""

BINDING_CONTEXT: Final = b"kiosk-dtls-binding-v1\0"
SAS_INFO: Final = b"kiosk-sas-v1"
MAX_CHAIN: Final = 4
_FINGERPRINT = re.compile(r"^\s*sha-256\s+((?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2})\s*$")
_SDP_FINGERPRINT = re.compile(r"^a=fingerprint:(.+?)\s*$", re.MULTILINE)

IdentityKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class Reason(enum.Enum):
    """Why a binding was refused."""

    MALFORMED = "malformed"
    """A fingerprint, signature or certificate that cannot be parsed."""
    BAD_SIGNATURE = "bad_signature"
    """The signature does not cover this fingerprint, session and role."""
    UNTRUSTED_CERTIFICATE = "untrusted_certificate"
    """The certificate does not chain to the fleet CA."""
    EXPIRED = "expired"
    """A certificate of the chain is not valid now."""
    WRONG_ROLE = "wrong_role"
    """A booth certificate where a doctor's was expected, or the reverse."""


class BindingError(Exception):
    """The peer's identity binding cannot be trusted; media must not flow."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Peer:
    """A verified peer: who the fleet says signed this fingerprint."""

    role: Role
    name: str
    """The certificate's common name: a booth id or a doctor's account name."""
    fingerprint: str
    """The normalised DTLS fingerprint the peer signed."""


@dataclass(frozen=True)
class Sas:
    """The short authentication string both screens show."""

    digits: str
    """Six digits grouped for reading aloud, e.g. ``"042 917"``."""
    words: tuple[str, str, str, str]
    """Four French words, for patients more at ease with words than digits."""


def normalise_fingerprint(fingerprint: str) -> str:
    """``sha-256 AB:CD:...`` with upper-case hex; anything else is MALFORMED."""
    match = _FINGERPRINT.match(fingerprint)
    if match is None:
        raise BindingError(Reason.MALFORMED, "the DTLS fingerprint is not a SHA-256 fingerprint")
    return f"sha-256 {match.group(1).upper()}"


def fingerprint_of_sdp(sdp: str) -> str:
    """The one DTLS fingerprint of a session description (all its lines must agree)."""
    found = {normalise_fingerprint(value) for value in _SDP_FINGERPRINT.findall(sdp)}
    if len(found) != 1:
        raise BindingError(Reason.MALFORMED, "the session description must carry exactly one DTLS fingerprint")
    return found.pop()


def binding_message(fingerprint: str, *, role: Role, session: str) -> bytes:
    """What a side signs: domain, role and session separate each use of a key."""
    if role not in ROLES:
        raise BindingError(Reason.WRONG_ROLE, f"unknown role {role!r}")
    if not (session.isascii() and session.isprintable()):
        # Session ids are uuid4 hex; anything else cannot be signed unambiguously.
        raise BindingError(Reason.MALFORMED, "the session id is not printable ASCII")
    return b"\0".join(
        (BINDING_CONTEXT.rstrip(b"\0"), role.encode(), session.encode(), normalise_fingerprint(fingerprint).encode())
    )


def sign_fingerprint(fingerprint: str, key: IdentityKey, *, role: Role, session: str) -> str:
    """Sign our own DTLS fingerprint; base64url without padding."""
    message = binding_message(fingerprint, role=role, session=session)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(message)
    else:
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


class FleetTrust:
    """The fleet CA every booth and doctor certificate must chain to."""

    def __init__(self, root_pem: str | bytes) -> None:
        data = root_pem.encode() if isinstance(root_pem, str) else root_pem
        self.root = x509.load_pem_x509_certificate(data)

    def verify_chain(self, chain_pem: str, *, now: datetime.datetime) -> x509.Certificate:
        """The leaf of a PEM chain (leaf first) once every link up to the root checks out."""
        chain = _load_chain(chain_pem)
        if not 1 <= len(chain) <= MAX_CHAIN:
            raise BindingError(Reason.MALFORMED, "the certificate chain has no or too many certificates")
        for cert in (*chain, self.root):
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise BindingError(Reason.EXPIRED, "a certificate of the chain is not valid at this time")
        for child, issuer in zip(chain, (*chain[1:], self.root), strict=True):
            if not _is_ca(issuer):
                raise BindingError(Reason.UNTRUSTED_CERTIFICATE, "a certificate was issued by a non-CA certificate")
            try:
                child.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise BindingError(Reason.UNTRUSTED_CERTIFICATE, "the certificate is not issued by the fleet") from exc
        return chain[0]


def verify_binding(
    fingerprint: str,
    signature: str,
    certificate_pem: str,
    *,
    role: Role,
    session: str,
    trust: FleetTrust,
    now: datetime.datetime,
) -> Peer:
    """Check the peer's signed fingerprint; return who it is or raise :class:`BindingError`."""
    leaf = trust.verify_chain(certificate_pem, now=now)
    if _role_of(leaf) != role:
        raise BindingError(Reason.WRONG_ROLE, f"the certificate is not a {role} certificate")
    if _is_ca(leaf):
        raise BindingError(Reason.WRONG_ROLE, "a CA certificate cannot sign a binding")
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BindingError(Reason.MALFORMED, "the signature is not base64url") from exc
    message = binding_message(fingerprint, role=role, session=session)
    public_key = leaf.public_key()
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(raw, message)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(raw, message, ec.ECDSA(hashes.SHA256()))
        else:
            raise BindingError(Reason.UNTRUSTED_CERTIFICATE, "the certificate's key type is not accepted")
    except InvalidSignature as exc:
        raise BindingError(Reason.BAD_SIGNATURE, "the fingerprint's signature does not verify") from exc
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else ""
    return Peer(role=role, name=name, fingerprint=normalise_fingerprint(fingerprint))


def short_authentication_string(booth_fingerprint: str, doctor_fingerprint: str, session: str) -> Sas:
    """The SAS of a call: the same on both ends exactly when both saw the same two fingerprints.

    The booth's fingerprint comes first whoever computes it. 20 bits of digits
    and 32 bits of words: a hub in the middle has to hit the same string on
    both of its DTLS legs, one chance in a million or more per call.
    """
    material = (normalise_fingerprint(booth_fingerprint) + "\n" + normalise_fingerprint(doctor_fingerprint)).encode()
    okm = HKDF(algorithm=hashes.SHA256(), length=8, salt=session.encode(), info=SAS_INFO).derive(material)
    number = int.from_bytes(okm[:4], "big") % 1_000_000
    digits = f"{number:06d}"
    words = (SAS_WORDS[okm[4]], SAS_WORDS[okm[5]], SAS_WORDS[okm[6]], SAS_WORDS[okm[7]])
    return Sas(digits=f"{digits[:3]} {digits[3:]}", words=words)


def _load_chain(chain_pem: str) -> list[x509.Certificate]:
    """Parse a PEM chain, and every part of it used later, so a malformed one fails here as MALFORMED.

    cryptography parses extensions, names and keys lazily, with their own
    exception types (InvalidVersion, UnsupportedAlgorithm...), and only warns
    about some RFC 5280 violations (a serial number <= 0): both are refused
    here (found by tests/fuzz/link_parsers.py, target ``binding``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            chain = x509.load_pem_x509_certificates(chain_pem.encode("utf-8", "surrogatepass"))
            for cert in chain:
                _ = (cert.subject, cert.issuer, cert.extensions, cert.public_key())
                _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.signature_hash_algorithm)
    except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm, CryptographyDeprecationWarning) as exc:
        raise BindingError(Reason.MALFORMED, "the certificate is not a valid PEM certificate chain") from exc
    return chain


def _role_of(cert: x509.Certificate) -> str | None:
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    roles = {str(unit.value) for unit in units} & set(ROLES)
    return roles.pop() if len(roles) == 1 else None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


SAS_WORDS: Final[tuple[str, ...]] = tuple(
    # Short, concrete, distinct when spoken; accents dropped so every screen shows them alike.
    """
    abeille abri acier agneau aigle aiguille ail allee amande ami ancre ane angle anneau arbre arche
    argent arome atelier aube autruche avion avoine bague baie balai balcon baleine ballon banane banc
    barque bassin bateau baton berger beurre biche bijou bison blason bol bonbon bouchon bougie boussole
    bouton branche brebis brique brume bureau cabane cactus cadeau cadre caillou calme camion canard
    canne carotte carte castor cerise chaise chalet chameau champ chapeau charbon chat chateau chemin
    chene cheval chevre chien cigale citron clairon clef cloche clou cochon coffre colline comete
    concert copain coq corde corne coton coude coussin crabe craie crayon creme criquet cuivre cygne
    dauphin desert diamant domino dragon drapeau dune echelle ecureuil etoile falaise farine fenetre
    ferme feuille figue flamme fleur flute foret fourmi fraise fromage fusee gant gateau gazelle girafe
    glace gomme gorille grenier grille guitare hache hamac harpe herisson hibou horloge ile jardin
    jasmin jouet jument kiwi lac laine lama lampe lapin laurier lavande levier lezard lievre lilas lime
    lion livre loup lune lutin maison manteau marche marmotte marteau melon miel miroir montagne mouette
    moulin mouton muguet mulet navet neige nuage oasis ocean oeuf oignon olive orage orange orchidee
    ours paille palmier panda panier papillon parc pelle perle phare piano pigeon pinceau pirate plage
    plume poire pomme pont potiron poule prairie prune puits quai radis raisin rameau renard requin
    riviere robot rocher rose roue ruban sable sapin savon serpent singe soleil sommet source souris
    sucre tambour tapis tigre tomate tortue toupie train tresor trompette tulipe vague vallee vanille
    velo violon volcan yaourt zebre zeste
    """.split()  # noqa: SIM905 - a word table reads better as text
)
if len(SAS_WORDS) != 256 or len(set(SAS_WORDS)) != 256:  # pragma: no cover - guards the table itself
    raise RuntimeError(f"the SAS word list must hold 256 distinct words, not {len(set(SAS_WORDS))}")
