"""Coverage-guided fuzzing (atheris) of enrolment's parsers, hub side and booth side.

    python -m tests.fuzz.enrol_parsers TARGET [libFuzzer options, e.g. -max_total_time=5] [CORPUS_DIR]

TARGET: enrol-request (a whole ``POST /api/enrol`` body), csr-der (the DER of
a CSR, as a ``POST /renew`` body), issued (the DER of the certificate a hub
returns, as the booth checks it). Each harness lets only the parser's own
error type through (EnrolmentError on the hub, EnrolError on the booth);
anything else is a crash the fuzzer reports with its input. An empty corpus
directory is first seeded with valid inputs.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp  # noqa: F401  (loaded before instrumentation: only the two parser modules are instrumented)
import atheris
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import hub.accounts  # noqa: F401
import kiosk.enrol.files  # noqa: F401
from hub import pki

with atheris.instrument_imports():
    from hub import enrolment
    from kiosk.enrol import client

BOOTH = "booth-0042"
NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)
TOKEN = "A" * 43


class _Fleet:
    """A fleet CA, a booth key, its CSR and certificate, made once per process."""

    def __init__(self) -> None:
        self.issuer = pki.create_fleet_ca(now=NOW)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.csr = client.make_csr(self.key, BOOTH)
        self.certificate = pki.issue_booth_certificate(self.issuer, self.key.public_key(), BOOTH, now=NOW)


_FLEET: _Fleet | None = None


def _fleet() -> _Fleet:
    global _FLEET
    if _FLEET is None:
        _FLEET = _Fleet()
    return _FLEET


def _pem(label: str, der: bytes) -> str:
    return f"-----BEGIN {label}-----\n" + base64.encodebytes(der).decode() + f"-----END {label}-----\n"


def enrol_request_target(data: bytes) -> None:
    try:
        request = enrolment.parse_enrol_request(data)
        key = enrolment.csr_public_key(request.csr, BOOTH)
    except enrolment.EnrolmentError:
        return
    # What is accepted is a P-256 key whose owner signed a request naming this booth.
    assert isinstance(key.curve, ec.SECP256R1) and request.csr.is_signature_valid


def csr_der_target(data: bytes) -> None:
    body = json.dumps({"csr": _pem("CERTIFICATE REQUEST", data)}).encode()
    with contextlib.suppress(enrolment.EnrolmentError):
        enrolment.csr_public_key(enrolment.parse_renew_request(body), BOOTH)


def issued_target(data: bytes) -> None:
    fleet = _fleet()
    answer = {"certificate": _pem("CERTIFICATE", data)}
    try:
        certificate = client.check_issued(
            answer, key=fleet.key, booth_id=BOOTH, fleet_ca=fleet.issuer.certificate, now=NOW
        )
    except client.EnrolError:
        return
    # Only a certificate the fleet CA signed for this key gets through.
    certificate.verify_directly_issued_by(fleet.issuer.certificate)


def seeds(name: str) -> list[bytes]:
    """Valid inputs for ``name``: where mutation starts."""
    fleet = _fleet()
    if name == "enrol-request":
        return [json.dumps({"token": TOKEN, "csr": fleet.csr}).encode()]
    if name == "csr-der":
        return [x509.load_pem_x509_csr(fleet.csr.encode()).public_bytes(serialization.Encoding.DER)]
    if name == "issued":
        return [fleet.certificate.public_bytes(serialization.Encoding.DER)]
    return []


TARGETS: dict[str, Callable[[bytes], None]] = {
    "enrol-request": enrol_request_target,
    "csr-der": csr_der_target,
    "issued": issued_target,
}


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in TARGETS:
        sys.exit(f"target must be one of: {', '.join(TARGETS)}")
    for argument in sys.argv[2:]:
        corpus = Path(argument)
        if not argument.startswith("-") and corpus.is_dir() and not any(corpus.iterdir()):
            for index, seed in enumerate(seeds(name)):
                (corpus / f"seed-{index}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
