"""The console's own cryptography (hub/static/js/sas.js, binding.js), run in Chromium, against Python's.

kiosk/session/binding.py is authoritative: the SAS must come out identical on both screens, a booth
binding Python signs must verify in the browser, every binding Python refuses must be refused by the
browser for the same reason, and what the browser signs with its per-login key must verify in Python.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hub import pki
from kiosk.session.binding import (
    SAS_WORDS,
    BindingError,
    FleetTrust,
    Role,
    short_authentication_string,
    sign_fingerprint,
    verify_binding,
)
from tests.browser.conftest import Console, Hub

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime.datetime.now(datetime.UTC)


def random_fingerprint(lower: bool = False) -> str:
    text = ":".join(f"{byte:02X}" for byte in secrets.token_bytes(32))
    return f"sha-256 {text.lower() if lower else text}"


def load_key(path: Any) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def python_verdict(
    fingerprint: str, signature: str, certificate: str, *, role: Role, session: str, trust: FleetTrust
) -> str:
    try:
        peer = verify_binding(fingerprint, signature, certificate, role=role, session=session, trust=trust, now=NOW)
    except BindingError as exc:
        return exc.reason.value
    return f"ok:{peer.role}:{peer.name}:{peer.fingerprint}"


JS_VERIFY = """async (cases) => {
  const binding = await import('/static/js/binding.js');
  const out = [];
  for (const c of cases) {
    try {
      const peer = await binding.verifyBinding(c);
      out.push(`ok:${peer.role}:${peer.name}:${peer.fingerprint}`);
    } catch (error) {
      if (!(error instanceof binding.BindingError)) throw error;
      out.push(error.reason);
    }
  }
  return out;
}"""


async def test_sas_matches_python(console: Console) -> None:
    await console.open()
    cases = [(random_fingerprint(lower=index % 2 == 1), random_fingerprint(), uuid.uuid4().hex) for index in range(40)]
    cases.append(("  sha-256 " + random_fingerprint()[8:] + " ", random_fingerprint(lower=True), "x"))
    expected = []
    for booth, doctor, session in cases:
        sas = short_authentication_string(booth, doctor, session)
        expected.append({"digits": sas.digits, "words": list(sas.words)})
    got = await console.evaluate(
        """async (cases) => {
          const { shortAuthenticationString } = await import('/static/js/sas.js');
          const out = [];
          for (const [booth, doctor, session] of cases) {
            out.push(await shortAuthenticationString(booth, doctor, session));
          }
          return out;
        }""",
        cases,
    )
    assert got == expected


async def test_sas_word_table_is_pythons(console: Console) -> None:
    await console.open()
    words = await console.evaluate("async () => [...(await import('/static/js/sas.js')).SAS_WORDS]")
    assert words == list(SAS_WORDS)


async def test_ecdsa_der_raw_round_trip(console: Console, hub: Hub) -> None:
    """WebCrypto speaks r||s, Python DER: the conversions agree on every shape (short, high-bit integers)."""
    await console.open()
    key = load_key(hub.paths.booth_key("booth-0001"))
    signatures = [key.sign(secrets.token_bytes(16), ec.ECDSA(hashes.SHA256())) for _ in range(64)]
    raws = [
        (lambda rs: rs[0].to_bytes(32, "big") + rs[1].to_bytes(32, "big"))(decode_dss_signature(der))
        for der in signatures
    ]
    result = await console.evaluate(
        """async ([ders, raws]) => {
          const b = await import('/static/js/binding.js');
          const hex = (u) => Array.from(u, (x) => x.toString(16).padStart(2, '0')).join('');
          const bytes = (h) => Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16));
          return ders.map((der, i) => ({
            raw: hex(b.derToRaw(bytes(der))) === raws[i],
            der: hex(b.rawToDer(bytes(raws[i]))) === der,
          }));
        }""",
        [[der.hex() for der in signatures], [raw.hex() for raw in raws]],
    )
    assert all(item["raw"] and item["der"] for item in result), result
    malformed = await console.evaluate(
        """async (cases) => {
          const b = await import('/static/js/binding.js');
          const bytes = (h) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
          return cases.map((h) => { try { b.derToRaw(bytes(h)); return 'accepted'; } catch { return 'refused'; } });
        }""",
        [
            "3006020101020101ff",  # trailing byte
            "300702010102810101",  # long-form length where the short form is required
            "3006020180020101",  # negative r
            "300702020001020101",  # non-minimal r
            "3003020101",  # one integer
        ],
    )
    assert malformed == ["refused"] * 5


async def test_booth_bindings_verify_like_python(console: Console, hub: Hub) -> None:
    await console.open()
    fleet_pem = hub.fleet_ca_pem
    trust = FleetTrust(fleet_pem)
    booth_pem = hub.paths.booth_cert("booth-0001").read_text()
    booth_key = load_key(hub.paths.booth_key("booth-0001"))
    session = uuid.uuid4().hex
    fingerprint = random_fingerprint()
    good = sign_fingerprint(fingerprint, booth_key, role="booth", session=session)

    # A doctor-role certificate (leaf + doctor CA), signing as if it were a booth.
    doctor_ca = pki.load_issuer(hub.paths.doctor_ca, hub.paths.doctor_ca_key)
    doctor_key = pki.new_key()
    doctor_cert = pki.issue_doctor_certificate(
        doctor_ca, doctor_key.public_key(), "dr.demo", now=NOW, not_after=NOW + datetime.timedelta(hours=1)
    )
    doctor_chain = pki.pem(doctor_cert) + pki.pem(doctor_ca.certificate)
    # A booth certificate with the right name, from another CA.
    rogue = pki.create_fleet_ca(now=NOW, name="Rogue CA")
    rogue_key = pki.new_key()
    rogue_cert = pki.pem(pki.issue_booth_certificate(rogue, rogue_key.public_key(), "booth-0001", now=NOW))
    # An expired booth certificate from the right CA.
    fleet = pki.load_issuer(hub.paths.fleet_ca, hub.paths.fleet_ca_key)
    old_key = pki.new_key()
    past = NOW - datetime.timedelta(days=4 * 365)
    expired_cert = pki.pem(pki.issue_booth_certificate(fleet, old_key.public_key(), "booth-0001", now=past))
    # A tampered signature: one bit of s flipped (still well-formed DER).
    der = bytearray(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    der[-1] ^= 0x01
    tampered = base64.urlsafe_b64encode(bytes(der)).rstrip(b"=").decode()

    def case(signature: str, certificate: str, *, fp: str = fingerprint, role: Role = "booth") -> dict[str, Any]:
        return {
            "fingerprint": fp,
            "signature": signature,
            "certificate": certificate,
            "role": role,
            "session": session,
            "fleetCa": fleet_pem,
        }

    cases = {
        "valid": case(good, booth_pem),
        "valid, lower-case fingerprint": case(good, booth_pem, fp=fingerprint.lower()),
        "tampered signature": case(tampered, booth_pem),
        "wrong fingerprint": case(good, booth_pem, fp=random_fingerprint()),
        "other session": {**case(good, booth_pem), "session": uuid.uuid4().hex},
        "doctor-role certificate": case(
            sign_fingerprint(fingerprint, doctor_key, role="booth", session=session), doctor_chain
        ),
        "certificate from another CA": case(
            sign_fingerprint(fingerprint, rogue_key, role="booth", session=session), rogue_cert
        ),
        "expired certificate": case(
            sign_fingerprint(fingerprint, old_key, role="booth", session=session), expired_cert
        ),
        "booth certificate, doctor role expected": case(good, booth_pem, role="doctor"),
        "not PEM": case(good, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        "signature not base64url": case("!!" + good, booth_pem),
        "fingerprint not sha-256": case(good, booth_pem, fp="sha-1 " + ":".join(["AB"] * 20)),
        "chain too long": case(good, booth_pem * 5),
    }
    expected = {
        "valid": f"ok:booth:booth-0001:{fingerprint}",
        "valid, lower-case fingerprint": f"ok:booth:booth-0001:{fingerprint}",
        "tampered signature": "bad_signature",
        "wrong fingerprint": "bad_signature",
        "other session": "bad_signature",
        "doctor-role certificate": "wrong_role",
        "certificate from another CA": "untrusted_certificate",
        "expired certificate": "expired",
        "booth certificate, doctor role expected": "wrong_role",
        "not PEM": "malformed",
        "signature not base64url": "malformed",
        "fingerprint not sha-256": "malformed",
        "chain too long": "malformed",
    }
    python = {
        name: python_verdict(
            c["fingerprint"], c["signature"], c["certificate"], role=c["role"], session=c["session"], trust=trust
        )
        for name, c in cases.items()
        if name != "signature not base64url"  # Python's urlsafe_b64decode skips the stray characters
    }
    assert python == {name: verdict for name, verdict in expected.items() if name in python}
    browser = dict(zip(cases, await console.evaluate(JS_VERIFY, list(cases.values())), strict=True))
    assert browser == expected


async def test_offer_checks_before_answering(console: Console, hub: Hub) -> None:
    """verifyBoothOffer: the offer's a=fingerprint must be the signed one, and the CN the announced booth."""
    await console.open()
    booth_pem = hub.paths.booth_cert("booth-0001").read_text()
    booth_key = load_key(hub.paths.booth_key("booth-0001"))
    session = uuid.uuid4().hex
    fingerprint = random_fingerprint()
    identity = {
        "fingerprint": fingerprint,
        "signature": sign_fingerprint(fingerprint, booth_key, role="booth", session=session),
        "certificate": booth_pem,
    }

    def sdp(*fingerprints: str) -> str:
        lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
        for index, fp in enumerate(fingerprints):
            lines += ["m=video 9 UDP/TLS/RTP/SAVPF 96", f"a=mid:{index}", f"a=fingerprint:{fp}"]
        return "\r\n".join(lines) + "\r\n"

    base = {"identity": identity, "session": session, "booth": "booth-0001", "fleetCa": hub.fleet_ca_pem}
    cases = [
        {**base, "offerSdp": sdp(fingerprint, fingerprint.lower())},
        {**base, "offerSdp": sdp(random_fingerprint())},
        {**base, "offerSdp": sdp(fingerprint, random_fingerprint())},
        {**base, "offerSdp": sdp()},
        {**base, "offerSdp": sdp(fingerprint), "booth": "booth-0002"},
        {**base, "offerSdp": sdp(fingerprint), "identity": None},
        {**base, "offerSdp": sdp(fingerprint), "fleetCa": ""},
    ]
    verdicts = await console.evaluate(
        """async (cases) => {
          const b = await import('/static/js/binding.js');
          const out = [];
          for (const c of cases) {
            try { out.push('ok:' + (await b.verifyBoothOffer(c)).name); }
            catch (error) { out.push(error.reason ?? String(error)); }
          }
          return out;
        }""",
        cases,
    )
    assert verdicts == [
        "ok:booth-0001",
        "fingerprint_mismatch",
        "malformed",  # two different fingerprints in one description
        "malformed",  # none at all
        "wrong_name",
        "missing_identity",
        "no_fleet_ca",
    ]


async def test_browser_signed_binding_verifies_in_python(console: Console, hub: Hub) -> None:
    """The per-login key (certified by POST /api/identity-key at login) signs as binding.py expects."""
    await console.open()
    doctor = hub.new_doctor()
    await console.login(doctor)
    session = uuid.uuid4().hex
    fingerprint = random_fingerprint()
    signed = await console.evaluate(
        """async ([fingerprint, session]) => {
          const { currentIdentity } = await import('/static/js/identity.js');
          const { signFingerprint } = await import('/static/js/binding.js');
          const identity = currentIdentity();
          return { signature: await signFingerprint(fingerprint, identity.privateKey, 'doctor', session),
                   chain: identity.chain, extractable: identity.privateKey.extractable };
        }""",
        [fingerprint, session],
    )
    assert signed["extractable"] is False
    trust = FleetTrust(hub.fleet_ca_pem)
    peer = verify_binding(
        fingerprint, signed["signature"], signed["chain"], role="doctor", session=session, trust=trust, now=NOW
    )
    assert (peer.role, peer.name, peer.fingerprint) == ("doctor", doctor.username, fingerprint)
    leaf = x509.load_pem_x509_certificates(signed["chain"].encode())[0]
    assert leaf.not_valid_after_utc > NOW
    # Bound to its role and session: the same signature means nothing elsewhere.
    misuses: tuple[tuple[Role, str], ...] = (("booth", session), ("doctor", uuid.uuid4().hex))
    for role, other in misuses:
        with pytest.raises(BindingError):
            verify_binding(
                fingerprint, signed["signature"], signed["chain"], role=role, session=other, trust=trust, now=NOW
            )
    # And the console's verifier agrees with Python on it.
    browser = await console.evaluate(
        JS_VERIFY,
        [
            {
                "fingerprint": fingerprint,
                "signature": signed["signature"],
                "certificate": signed["chain"],
                "role": "doctor",
                "session": session,
                "fleetCa": hub.fleet_ca_pem,
            }
        ],
    )
    assert browser == [f"ok:doctor:{doctor.username}:{fingerprint}"]
