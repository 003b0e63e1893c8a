"""Identity binding of DTLS fingerprints and the short authentication string."""

from __future__ import annotations

import base64
import datetime
import hashlib
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from kiosk.session.binding import (
    SAS_WORDS,
    BindingError,
    FleetTrust,
    Reason,
    fingerprint_of_sdp,
    normalise_fingerprint,
    short_authentication_string,
    sign_fingerprint,
    verify_binding,
)

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
SESSION = "0f" * 16


def fingerprint(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "sha-256 " + ":".join(f"{b:02X}" for b in digest)


def _name(cn: str, ou: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name(attributes)


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    days: int = 365,
    start: datetime.datetime = NOW - datetime.timedelta(days=1),
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


@dataclass
class Fleet:
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    doctor_ca: x509.Certificate
    doctor_ca_key: ec.EllipticCurvePrivateKey

    @property
    def trust(self) -> FleetTrust:
        return FleetTrust(pem(self.root))

    def booth(self, cn: str = "booth-0001", **kw: object) -> tuple[ec.EllipticCurvePrivateKey, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(_name(cn, "booth"), key, self.root.subject, self.root_key, ca=False, **kw)  # type: ignore[arg-type]
        return key, pem(cert)

    def doctor(self, cn: str = "dr.demo") -> tuple[ec.EllipticCurvePrivateKey, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(_name(cn, "doctor"), key, self.doctor_ca.subject, self.doctor_ca_key, ca=False, days=1)
        return key, pem(cert, self.doctor_ca)


def make_fleet(name: str = "Fleet CA") -> Fleet:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert(_name(name), root_key, _name(name), root_key, ca=True, days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    doctor_ca = _cert(_name(f"{name} doctors"), ca_key, root.subject, root_key, ca=True, days=3650)
    return Fleet(root, root_key, doctor_ca, ca_key)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return make_fleet()


def test_both_roles_verify(fleet: Fleet) -> None:
    booth_key, booth_pem = fleet.booth()
    doctor_key, doctor_pem = fleet.doctor()
    booth_fp, doctor_fp = fingerprint("booth"), fingerprint("doctor")
    booth_sig = sign_fingerprint(booth_fp, booth_key, role="booth", session=SESSION)
    doctor_sig = sign_fingerprint(doctor_fp, doctor_key, role="doctor", session=SESSION)
    booth = verify_binding(booth_fp, booth_sig, booth_pem, role="booth", session=SESSION, trust=fleet.trust, now=NOW)
    doctor = verify_binding(
        doctor_fp, doctor_sig, doctor_pem, role="doctor", session=SESSION, trust=fleet.trust, now=NOW
    )
    assert (booth.role, booth.name, booth.fingerprint) == ("booth", "booth-0001", booth_fp)
    assert (doctor.role, doctor.name) == ("doctor", "dr.demo")


def test_ed25519_identity_keys_are_accepted(fleet: Fleet) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = _cert(_name("booth-0009", "booth"), key, fleet.root.subject, fleet.root_key, ca=False)
    fp = fingerprint("ed")
    signature = sign_fingerprint(fp, key, role="booth", session=SESSION)
    peer = verify_binding(fp, signature, pem(cert), role="booth", session=SESSION, trust=fleet.trust, now=NOW)
    assert peer.name == "booth-0009"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("fingerprint", Reason.BAD_SIGNATURE),
        ("session", Reason.BAD_SIGNATURE),
        ("role", Reason.WRONG_ROLE),
        ("signature", Reason.BAD_SIGNATURE),
        ("signature-garbage", Reason.MALFORMED),
        ("pem-garbage", Reason.MALFORMED),
        ("other-ca", Reason.UNTRUSTED_CERTIFICATE),
        ("expired", Reason.EXPIRED),
        ("ca-as-leaf", Reason.WRONG_ROLE),
    ],
)
def test_every_tampering_is_refused(fleet: Fleet, change: str, reason: Reason) -> None:
    key, cert_pem = fleet.booth()
    fp, session, role = fingerprint("booth"), SESSION, "booth"
    signature = sign_fingerprint(fp, key, role="booth", session=SESSION)
    if change == "fingerprint":
        fp = fingerprint("attacker")
    elif change == "session":
        session = "1e" * 16
    elif change == "role":
        role = "doctor"
    elif change == "signature":
        signature = sign_fingerprint(fp, ec.generate_private_key(ec.SECP256R1()), role="booth", session=SESSION)
    elif change == "signature-garbage":
        signature = "!!not base64!!"
    elif change == "pem-garbage":
        cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    elif change == "other-ca":
        key, cert_pem = make_fleet("Rogue CA").booth()
        signature = sign_fingerprint(fp, key, role="booth", session=SESSION)
    elif change == "expired":
        key, cert_pem = fleet.booth(days=1, start=NOW - datetime.timedelta(days=30))
        signature = sign_fingerprint(fp, key, role="booth", session=SESSION)
    elif change == "ca-as-leaf":
        cert_pem = pem(fleet.doctor_ca)
        role = "doctor"
    with pytest.raises(BindingError) as caught:
        verify_binding(fp, signature, cert_pem, role=role, session=session, trust=fleet.trust, now=NOW)  # type: ignore[arg-type]
    assert caught.value.reason is reason


def test_rogue_hub_swapping_fingerprints_is_caught(fleet: Fleet) -> None:
    """The hub relays its own DTLS fingerprints to each side (a man in the middle)."""
    booth_key, booth_pem = fleet.booth()
    booth_fp, doctor_fp = fingerprint("booth"), fingerprint("doctor")
    hub_towards_booth, hub_towards_doctor = fingerprint("hub-leg-1"), fingerprint("hub-leg-2")
    booth_sig = sign_fingerprint(booth_fp, booth_key, role="booth", session=SESSION)
    # The doctor receives the hub's fingerprint with the booth's real signature: refused.
    with pytest.raises(BindingError) as caught:
        verify_binding(
            hub_towards_doctor, booth_sig, booth_pem, role="booth", session=SESSION, trust=fleet.trust, now=NOW
        )
    assert caught.value.reason is Reason.BAD_SIGNATURE
    # A hub that could still get both legs accepted (it can issue doctor
    # certificates) shows each side a different SAS.
    booth_screen = short_authentication_string(booth_fp, hub_towards_booth, SESSION)
    doctor_screen = short_authentication_string(hub_towards_doctor, doctor_fp, SESSION)
    honest = short_authentication_string(booth_fp, doctor_fp, SESSION)
    assert booth_screen != doctor_screen
    assert honest not in (booth_screen, doctor_screen)


def test_sas_is_the_same_on_both_ends_and_well_formed() -> None:
    a, b = fingerprint("booth"), fingerprint("doctor")
    sas = short_authentication_string(a, b.lower().replace("SHA-256", "sha-256"), SESSION)
    assert sas == short_authentication_string(a, b, SESSION)
    assert len(sas.digits) == 7
    assert sas.digits[3] == " "
    assert sas.digits.replace(" ", "").isdigit()
    assert all(word in SAS_WORDS for word in sas.words)
    assert short_authentication_string(b, a, SESSION) != sas
    assert short_authentication_string(a, b, "1e" * 16) != sas


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_sas_depends_on_both_fingerprints(one: bytes, two: bytes) -> None:
    fp1 = "sha-256 " + ":".join(f"{x:02X}" for x in one)
    fp2 = "sha-256 " + ":".join(f"{x:02X}" for x in two)
    if one != two:
        assert short_authentication_string(fp1, fp2, SESSION) != short_authentication_string(fp2, fp2, SESSION)


def test_fingerprints_from_sdp() -> None:
    fp = fingerprint("x")
    sdp = f"v=0\r\na=fingerprint:{fp}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:{fp.lower()}\r\n"
    assert fingerprint_of_sdp(sdp) == normalise_fingerprint(fp)
    with pytest.raises(BindingError):
        fingerprint_of_sdp(sdp + f"a=fingerprint:{fingerprint('y')}\r\n")
    with pytest.raises(BindingError):
        fingerprint_of_sdp("v=0\r\n")
    with pytest.raises(BindingError):
        normalise_fingerprint("sha-1 AB:CD")


@given(st.text(max_size=300))
def test_any_text_is_a_fingerprint_or_a_binding_error(text: str) -> None:
    try:
        normalised = normalise_fingerprint(text)
    except BindingError as exc:
        reason = exc.reason
    else:
        assert normalised == normalise_fingerprint(normalised)
        return
    assert reason is Reason.MALFORMED


def _der_with(cert_pem: str, old: bytes, new: bytes) -> str:
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    assert old in der
    return pem_of_der(der.replace(old, new, 1))


def pem_of_der(der: bytes) -> str:
    return "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n"


def test_certificates_cryptography_parses_lazily_or_warns_about_are_malformed(fleet: Fleet) -> None:
    """Found by the atheris target ``binding`` (tests/fuzz/link_parsers.py)."""
    key, cert_pem = fleet.booth()
    fp = fingerprint("booth")
    signature = sign_fingerprint(fp, key, role="booth", session=SESSION)
    serial = x509.load_pem_x509_certificate(cert_pem.encode()).serial_number
    serial_der = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    broken = [
        _der_with(cert_pem, b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x2c"),  # X.509 version 45
        _der_with(cert_pem, serial_der, b"\x80" + serial_der[1:]),  # a negative serial number
        cert_pem.replace("MI", "M\u00e9", 1),
        cert_pem.replace("MI", "M\ud800", 1),
    ]
    for cert in broken:
        with pytest.raises(BindingError) as caught:
            verify_binding(fp, signature, cert, role="booth", session=SESSION, trust=fleet.trust, now=NOW)
        assert caught.value.reason is Reason.MALFORMED


def test_a_session_id_that_is_not_printable_ascii_is_malformed(fleet: Fleet) -> None:
    key, _ = fleet.booth()
    for session in ("\ud800", "a\nb", "é"):
        with pytest.raises(BindingError) as caught:
            sign_fingerprint(fingerprint("x"), key, role="booth", session=session)
        assert caught.value.reason is Reason.MALFORMED
