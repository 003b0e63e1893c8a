"""Enrolment without a network: the hub's request parser and CSR checks (fuzzed), the token store, the
booth's identity directory and its check of the certificate the hub returns."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from hub import cli as hub_cli
from hub import pki
from hub.enrolment import (
    MAX_CSR,
    EnrolmentError,
    EnrolReason,
    csr_public_key,
    hash_token,
    issue_token,
    parse_enrol_request,
    parse_renew_request,
    parse_ttl,
)
from hub.store import BoothCertificate, Store
from kiosk.enrol.client import check_issued, make_csr, parse_hub_url
from kiosk.enrol.errors import EnrolError, Reason
from kiosk.enrol.files import IdentityDir, new_key, write_atomic

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)
BOOTH = "booth-0042"
TOKEN = "A" * 43


def csr_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, cn: str | None, sans: list[str] | None) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else [])
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def refused(reason: EnrolReason, data: bytes, *, renew: bool = False) -> None:
    with pytest.raises(EnrolmentError) as caught:
        (parse_renew_request if renew else parse_enrol_request)(data)
    assert caught.value.reason is reason, caught.value


# -- the request parser --------------------------------------------------------------------------------
def test_a_well_formed_request_parses() -> None:
    key = new_key()
    request = parse_enrol_request(body(token=TOKEN, csr=make_csr(key, BOOTH)))
    assert request.token == TOKEN
    assert csr_public_key(request.csr, BOOTH).public_numbers() == key.public_key().public_numbers()
    assert parse_renew_request(body(csr=make_csr(key, BOOTH))).subject == request.csr.subject


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'"text"',
        b"\xff\xfe",
        b"[" * 100_000,
        body(token=TOKEN),
        body(csr="x"),
        body(token=TOKEN, csr="x", extra="y"),
        body(token=1, csr="x"),
        body(token=TOKEN, csr=None),
    ],
)
def test_malformed_bodies_are_bad_requests(data: bytes) -> None:
    refused(EnrolReason.BAD_REQUEST, data)


@pytest.mark.parametrize("token", ["", "short", "A" * 129, "A" * 42 + "/", "A" * 42 + "é", "A" * 42 + " "])
def test_tokens_of_the_wrong_shape_are_refused_before_the_store(token: str) -> None:
    refused(EnrolReason.BAD_TOKEN, body(token=token, csr=make_csr(new_key(), BOOTH)))


def test_bad_csrs_are_refused_with_their_reason() -> None:
    good = make_csr(new_key(), BOOTH)
    refused(EnrolReason.BAD_CSR, body(token=TOKEN, csr="hello"))
    refused(EnrolReason.BAD_CSR, body(token=TOKEN, csr=good.replace("REQUEST", "")))
    refused(EnrolReason.BAD_CSR, body(token=TOKEN, csr=good + " " * MAX_CSR))
    refused(EnrolReason.BAD_CSR, body(token=TOKEN, csr=good[:200] + good[260:]))
    # A CSR whose signature was made by another key: the sender does not hold the key it asks to certify.
    der = bytearray(x509.load_pem_x509_csr(good.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    refused(EnrolReason.CSR_SIGNATURE, body(token=TOKEN, csr=tampered))


def test_the_csr_must_name_exactly_the_tokens_booth() -> None:
    key = new_key()
    for cn, sans in [("booth-0043", None), (None, None), (BOOTH, ["booth-0043"]), (BOOTH, [BOOTH, "hub.example"])]:
        csr = parse_enrol_request(body(token=TOKEN, csr=csr_pem(key, cn, sans))).csr
        with pytest.raises(EnrolmentError) as caught:
            csr_public_key(csr, BOOTH)
        assert caught.value.reason is EnrolReason.NAME_MISMATCH
        assert caught.value.status == 403
    assert csr_public_key(parse_renew_request(body(csr=csr_pem(key, BOOTH, None))), BOOTH)
    assert csr_public_key(parse_renew_request(body(csr=csr_pem(key, BOOTH, [BOOTH]))), BOOTH)


@pytest.mark.parametrize(
    "key", [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()], ids=["p384", "ed25519"]
)
def test_only_p256_keys_are_certified(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
    csr = parse_renew_request(body(csr=csr_pem(key, BOOTH, None)))
    with pytest.raises(EnrolmentError) as caught:
        csr_public_key(csr, BOOTH)
    assert caught.value.reason is EnrolReason.KEY_TYPE


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(st.binary(max_size=2048))
def test_fuzz_any_bytes_parse_or_refuse_typed(data: bytes) -> None:
    # The property is that nothing but an EnrolmentError escapes (no ValueError, no crash in cryptography).
    for parse in (parse_enrol_request, parse_renew_request):
        with contextlib.suppress(EnrolmentError):
            parse(data)


@given(st.dictionaries(st.sampled_from(["token", "csr", "other"]), JSON_VALUES, max_size=3))
def test_fuzz_json_objects_parse_or_refuse_typed(document: dict[str, object]) -> None:
    with pytest.raises(EnrolmentError):  # no real CSR in there: always refused, and typed
        parse_enrol_request(json.dumps(document).encode())


_VALID_CSR = make_csr(new_key(), BOOTH)


@given(st.integers(0, len(_VALID_CSR) - 1), st.integers(0, 255), st.integers(0, 40))
def test_fuzz_mutated_csrs_parse_or_refuse_typed(position: int, value: int, cut: int) -> None:
    text = _VALID_CSR[:position] + chr(value) + _VALID_CSR[position + 1 + cut :]
    # A mutation that still parses (base64 padding, whitespace) must still check out completely, or be refused.
    with contextlib.suppress(EnrolmentError):
        csr_public_key(parse_enrol_request(body(token=TOKEN, csr=text)).csr, BOOTH)


_VALID_DER = x509.load_pem_x509_csr(_VALID_CSR.encode()).public_bytes(serialization.Encoding.DER)


@given(st.lists(st.tuples(st.integers(0, len(_VALID_DER) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_mutated_csr_der_parse_or_refuse_typed(changes: list[tuple[int, int]]) -> None:
    der = bytearray(_VALID_DER)
    for position, value in changes:
        der[position] = value
    text = "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)).decode()
    text += "-----END CERTIFICATE REQUEST-----\n"
    with contextlib.suppress(EnrolmentError):
        csr_public_key(parse_renew_request(body(csr=text)), BOOTH)


# -- tokens ----------------------------------------------------------------------------------------------
def test_parse_ttl() -> None:
    assert parse_ttl("24h") == datetime.timedelta(hours=24)
    assert parse_ttl("90m") == datetime.timedelta(minutes=90)
    assert parse_ttl("7d") == datetime.timedelta(days=7)
    assert parse_ttl("3600") == datetime.timedelta(hours=1)
    for text in ("", "1h30m", "-1h", "10s", "31d", "soon"):
        with pytest.raises(ValueError, match=r"lifetime|token lives"):
            parse_ttl(text)


def test_tokens_are_stored_hashed_and_consumed_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.db")
    events: list[tuple[str, dict[str, str]]] = []
    try:
        token = issue_token(
            store, BOOTH, ttl=datetime.timedelta(hours=1), now=1000.0, audit=lambda k, f: events.append((k, dict(f)))
        )
        assert token.encode() not in (tmp_path / "hub.db").read_bytes() + (tmp_path / "hub.db-wal").read_bytes()
        assert events[0][0] == "enrol_token_issued" and token not in json.dumps(events)
        found = store.enrolment_token(hash_token(token))
        assert found is not None and (found.booth_id, found.expires, found.used) == (BOOTH, 4600.0, None)
        assert not store.consume_enrolment_token(hash_token(token), 4600.0)  # expired at that instant
        assert store.consume_enrolment_token(hash_token(token), 2000.0)
        assert not store.consume_enrolment_token(hash_token(token), 2001.0)  # used
        assert not store.consume_enrolment_token(hash_token("B" * 43), 2000.0)  # unknown
        assert store.purge_enrolment_tokens(before=5000.0) == 1
        with pytest.raises(ValueError, match="booth id"):
            issue_token(store, "kiosk-1", now=1000.0)
    finally:
        store.close()
    assert stat.S_IMODE(os.stat(tmp_path / "hub.db").st_mode) == 0o600


def test_only_the_latest_certificate_is_recorded(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.db")

    def record(serial: str) -> BoothCertificate:
        return BoothCertificate(BOOTH, serial, serial.encode() * 16, f"PEM {serial}", 2.0, 1.0)

    try:
        assert store.booth_certificate(BOOTH) is None
        # A booth minted before enrolment existed: its first renewal records it.
        assert store.record_booth_certificate(record("a1"), previous="a0")
        assert store.booth_certificate(BOOTH) == record("a1")
        assert not store.record_booth_certificate(record("a2"), previous="a0")  # superseded
        assert store.record_booth_certificate(record("a3"), previous="a1")
        assert store.record_booth_certificate(record("b1"))  # enrolment: unconditional
        assert store.booth_certificate(BOOTH) == record("b1")
    finally:
        store.close()


def test_the_token_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert hub_cli.main(["enrol", "token", "--state", str(state), "--booth", BOOTH]) == 1
    assert "no hub state" in capsys.readouterr().err
    state.mkdir()
    Store(state / "hub.db").close()
    assert hub_cli.main(["enrol", "token", "--state", str(state), "--booth", "kiosk-1"]) == 2
    assert "booth id" in capsys.readouterr().err
    assert hub_cli.main(["enrol", "token", "--state", str(state), "--booth", BOOTH, "--ttl", "2h"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["booth"] == BOOTH and len(printed["token"]) == 43
    store = Store(state / "hub.db")
    try:
        found = store.enrolment_token(hash_token(printed["token"]))
    finally:
        store.close()
    assert found is not None and found.expires - found.created == 7200


# -- the booth's identity directory ---------------------------------------------------------------------------
def _certificate(fleet: pki.Issuer, key: ec.EllipticCurvePrivateKey, booth: str = BOOTH) -> x509.Certificate:
    return pki.issue_booth_certificate(fleet, key.public_key(), booth, now=NOW)


def test_install_is_private_and_atomic(tmp_path: Path) -> None:
    fleet = pki.create_fleet_ca(now=NOW)
    directory = IdentityDir(tmp_path / "identity")
    directory.prepare()
    assert directory.load() is None
    key = new_key()
    directory.install(key, _certificate(fleet, key))
    assert stat.S_IMODE(directory.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(directory.key_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in directory.root.iterdir()) == ["booth.key", "booth.pem"]
    loaded = directory.load()
    assert loaded is not None and loaded.key.private_numbers() == key.private_numbers()
    # A certificate for another key is never installed.
    with pytest.raises(EnrolError) as caught:
        directory.install(new_key(), _certificate(fleet, key))
    assert caught.value.reason is Reason.BAD_CERTIFICATE
    loaded_again = directory.load()
    assert loaded_again is not None and loaded_again.key.private_numbers() == key.private_numbers()


def test_an_interrupted_swap_is_completed_or_dropped(tmp_path: Path) -> None:
    fleet = pki.create_fleet_ca(now=NOW)
    directory = IdentityDir(tmp_path / "identity")
    old, new = new_key(), new_key()
    directory.install(old, _certificate(fleet, old))
    pem = _certificate(fleet, new).public_bytes(serialization.Encoding.PEM)
    key_pem = new.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Crash after the key's rename, before the certificate's: the pending certificate matches the key in place.
    write_atomic(directory.key_path, key_pem, 0o600)
    write_atomic(directory.root / "booth.pem.pending", pem, 0o644)
    loaded = directory.load()
    assert loaded is not None and loaded.key.private_numbers() == new.private_numbers()
    # A pending key whose certificate never came stays for the retry; the pair in place stays in use.
    retry = new_key()
    directory.keep_pending_key(retry)
    loaded = directory.load()
    assert loaded is not None and loaded.key.private_numbers() == new.private_numbers()
    pending = directory.pending_key()
    assert pending is not None and pending.private_numbers() == retry.private_numbers()
    assert stat.S_IMODE((directory.root / "booth.key.pending").stat().st_mode) == 0o600
    directory.install(retry, _certificate(fleet, retry))
    assert directory.pending_key() is None
    assert sorted(p.name for p in directory.root.iterdir()) == ["booth.key", "booth.pem"]
    # A mismatched pair is an error, not silently used.
    write_atomic(directory.cert_path, _certificate(fleet, old).public_bytes(serialization.Encoding.PEM), 0o644)
    with pytest.raises(EnrolError) as caught:
        directory.load()
    assert caught.value.reason is Reason.IDENTITY


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    fleet = pki.create_fleet_ca(now=NOW)
    directory = IdentityDir(tmp_path / "identity")
    key = new_key()
    directory.install(key, _certificate(fleet, key))
    directory.key_path.chmod(0o644)
    with pytest.raises(EnrolError, match="readable by other users"):
        directory.load()


def test_the_booth_checks_what_the_hub_returns() -> None:
    fleet = pki.create_fleet_ca(now=NOW)
    rogue = pki.create_fleet_ca(now=NOW, name="Rogue CA")
    key = new_key()

    def answer(cert: x509.Certificate) -> dict[str, object]:
        return {"certificate": pki.pem(cert)}

    assert check_issued(answer(_certificate(fleet, key)), key=key, booth_id=BOOTH, fleet_ca=fleet.certificate, now=NOW)
    for bad, reason in [
        ({}, Reason.BAD_RESPONSE),
        ({"certificate": "junk"}, Reason.BAD_RESPONSE),
        (answer(_certificate(rogue, key)), Reason.BAD_CERTIFICATE),
        (answer(_certificate(fleet, new_key())), Reason.BAD_CERTIFICATE),
        (answer(_certificate(fleet, key, "booth-0043")), Reason.BAD_CERTIFICATE),
        (answer(pki.issue_server_certificate(fleet, key, ["localhost"], now=NOW)), Reason.BAD_CERTIFICATE),
    ]:
        with pytest.raises(EnrolError) as caught:
            check_issued(bad, key=key, booth_id=BOOTH, fleet_ca=fleet.certificate, now=NOW)
        assert caught.value.reason is reason
    later = NOW + datetime.timedelta(days=4 * 365)
    with pytest.raises(EnrolError, match="clock"):
        check_issued(answer(_certificate(fleet, key)), key=key, booth_id=BOOTH, fleet_ca=fleet.certificate, now=later)


def test_hub_urls() -> None:
    assert parse_hub_url("https://hub.example:8443", schemes=("https",)).port == 8443
    booth = parse_hub_url("wss://hub.example:8444/ws", schemes=("https", "wss"))
    assert (booth.host, booth.port) == ("hub.example", 8444)
    assert parse_hub_url("https://[::1]:9", schemes=("https",)).host == "::1"
    for url in ("http://hub:1", "hub:1", "https://", "https://hub:99999"):
        with pytest.raises(EnrolError) as caught:
            parse_hub_url(url, schemes=("https",))
        assert caught.value.reason is Reason.USAGE
