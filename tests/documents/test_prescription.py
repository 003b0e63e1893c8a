"""Signed prescriptions: the hub signs (PAdES, pyHanko), the booth verifies before anything is printed.

Real keys from a real development PKI (``init_dev_state``), real pyHanko signing
and validation; the only stand-in is the printer, a recorder owned by the test
(the real CUPS path is in ``test_printing.py``).
"""

from __future__ import annotations

import asyncio
import datetime
import io
import logging
import random
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from hub import pki
from hub.app import StatePaths, init_dev_state
from hub.prescriptions import (
    FETCH_LIFETIME,
    FetchStore,
    PrescriptionError,
    Prescriptions,
    SigningPaths,
    check_request,
    new_fetch_code,
    normalise_code,
    render_pdf,
    sign_pdf,
    signing_identity,
)
from kiosk.documents.errors import PrescriptionRejected, Reason
from kiosk.documents.intake import PrescriptionIntake
from kiosk.documents.prescription import FETCH_CODE, NUMBER, verify_prescription

PATIENT = "Lou, 7 ans"
TEXT = "Paracétamol 250 mg\n1 sachet toutes les 6 heures si fièvre, pendant 3 jours au plus"


class Signed:
    """One signed prescription (a plain class: Hypothesis prints dataclasses field by field, PDF and all)."""

    def __init__(self, state: Path, root: bytes, pdf: bytes, number: str, code: str) -> None:
        self.state, self.root, self.pdf, self.number, self.code = state, root, pdf, number, code

    def __repr__(self) -> str:
        return f"Signed({self.number}, {len(self.pdf)} bytes)"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    state = tmp_path_factory.mktemp("rx") / "hub"
    init_dev_state(state)
    paths = StatePaths(state)
    prescriptions = Prescriptions(state, pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key))
    issued = prescriptions.issue("dr.demo", "Dr Demo", check_request(PATIENT, TEXT), now=time.time())
    return Signed(state, paths.fleet_ca.read_bytes(), issued.pdf, issued.number, issued.fetch_code)


@pytest.fixture(autouse=True)
def _quiet_pyhanko(caplog: pytest.LogCaptureFixture) -> None:
    # pyHanko logs every failed validation with its traceback; at DEBUG that is most of a mutation test's time.
    for name in ("pyhanko", "pyhanko_certvalidator"):
        caplog.set_level(logging.CRITICAL, logger=name)


class RecordingPrinter:
    def __init__(self) -> None:
        self.jobs: list[bytes] = []

    async def __call__(self, pdf: bytes, title: str) -> str:
        self.jobs.append(pdf)
        return f"test-{len(self.jobs)}"


def _rejected(pdf: bytes, root: bytes) -> Reason:
    with pytest.raises(PrescriptionRejected) as caught:
        verify_prescription(pdf, root)
    return caught.value.reason


def _text(pdf: bytes) -> str:
    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


# -- sign, then verify ---------------------------------------------------------------------------------
def test_signed_prescription_verifies(signed: Signed) -> None:
    verified = verify_prescription(signed.pdf, signed.root)
    assert verified.number == signed.number
    assert verified.fetch_code == signed.code
    assert verified.signer == "dr.demo"
    assert verified.pdf == signed.pdf
    assert NUMBER.fullmatch(verified.number) and FETCH_CODE.fullmatch(verified.fetch_code)
    assert b"/ETSI.CAdES.detached" in signed.pdf  # PAdES, not the older adbe.pkcs7 sub-filter


def test_pdf_shows_number_patient_and_text(signed: Signed) -> None:
    text = _text(signed.pdf)
    assert signed.number in text
    assert PATIENT in text
    assert "Paracétamol 250 mg" in text
    assert signed.code in text
    assert "Dr Demo" in text


def test_qr_code_is_drawn(signed: Signed) -> None:
    # The QR code is vector art: many filled rectangles in the page's content stream.
    from pyhanko.pdf_utils.reader import PdfFileReader

    page = PdfFileReader(io.BytesIO(signed.pdf)).root["/Pages"]["/Kids"][0]
    content = page["/Contents"].data
    assert content.count(b" re") > 100


def test_numbers_and_codes_are_unique() -> None:
    now = datetime.datetime.now(datetime.UTC)
    from hub.prescriptions import new_number

    assert len({new_number(now) for _ in range(2000)}) == 2000
    assert len({new_fetch_code() for _ in range(2000)}) == 2000


# -- any change fails ------------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_any_modified_byte_fails(signed: Signed) -> None:
    pdf = signed.pdf
    start = pdf.rindex(b"/Contents <")
    end = pdf.index(b">", start)
    rng = random.Random(5)
    # Every 47th byte of the signature value (its DER, its zero padding), and a sample everywhere else.
    # (bench/documents.py --exhaustive tries every byte of the signature value.)
    positions = list(range(start, end + 1, 47)) + rng.sample(range(len(pdf)), 50)
    for position in positions:
        mutated = bytearray(pdf)
        mutated[position] = (mutated[position] + rng.randrange(1, 256)) % 256
        with pytest.raises(PrescriptionRejected):
            verify_prescription(bytes(mutated), signed.root)


def test_padding_and_case_of_the_signature_value(signed: Signed) -> None:
    pdf = signed.pdf
    end = pdf.index(b">", pdf.rindex(b"/Contents <"))
    assert _rejected(pdf[: end - 1] + b"1" + pdf[end:], signed.root) is Reason.TAMPERED
    digit = pdf.index(b"A", pdf.rindex(b"/Contents <"))
    assert _rejected(pdf[:digit] + b"a" + pdf[digit + 1 :], signed.root) is Reason.TAMPERED


def test_truncated_or_extended_fails(signed: Signed) -> None:
    assert _rejected(signed.pdf[:-10], signed.root) in (Reason.TAMPERED, Reason.NOT_A_PDF)
    assert _rejected(signed.pdf + b"\n% appended\n", signed.root) in (Reason.TAMPERED, Reason.NOT_A_PDF)


def test_incremental_update_after_signing_fails(signed: Signed) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(signed.pdf))
    writer.set_info(writer.trailer["/Info"])  # touches the document information: a new revision
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    assert _rejected(out.getvalue(), signed.root) is Reason.TAMPERED


def test_unsigned_and_not_pdf(signed: Signed) -> None:
    unsigned = render_pdf(
        check_request(PATIENT, TEXT),
        number="RX-20260101-ABCDEFGHJK",
        fetch_code="ABCD-EFGH-JKMN",
        doctor="Dr Demo",
        issued=datetime.datetime.now(datetime.UTC),
    )
    assert _rejected(unsigned, signed.root) is Reason.UNSIGNED
    assert _rejected(b"GIF89a", signed.root) is Reason.NOT_A_PDF
    assert _rejected(b"%PDF-1.7\n", signed.root) is Reason.NOT_A_PDF


# -- only a prescriber of this fleet ------------------------------------------------------------------------
def _sign_with(pdf: bytes, tmp: Path, key: object, chain: list[object]) -> bytes:
    tmp.mkdir(parents=True, exist_ok=True)
    pki.save_key(tmp / "k.key", key)  # type: ignore[arg-type]
    pki.save_certificate(tmp / "c.pem", *chain)  # type: ignore[arg-type]
    return sign_pdf(pdf, SigningPaths(tmp / "k.key", tmp / "c.pem"))


def _unsigned(signed: Signed) -> bytes:
    return render_pdf(
        check_request(PATIENT, TEXT),
        number="RX-20260101-ABCDEFGHJK",
        fetch_code="ABCD-EFGH-JKMN",
        doctor="Dr Demo",
        issued=datetime.datetime.now(datetime.UTC),
    )


def test_a_booth_certificate_is_not_a_prescriber(signed: Signed, tmp_path: Path) -> None:
    paths = StatePaths(signed.state)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    booth_cert = x509.load_pem_x509_certificate(paths.booth_cert("booth-0001").read_bytes())
    booth_key = serialization.load_pem_private_key(paths.booth_key("booth-0001").read_bytes(), None)
    pdf = _sign_with(_unsigned(signed), tmp_path, booth_key, [booth_cert])
    assert _rejected(pdf, signed.root) in (Reason.UNTRUSTED, Reason.TAMPERED)


def test_a_console_login_certificate_is_not_a_prescriber(signed: Signed, tmp_path: Path) -> None:
    paths = StatePaths(signed.state)
    doctor_ca = pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key)
    key = pki.new_key()
    now = datetime.datetime.now(datetime.UTC)
    login = pki.issue_doctor_certificate(
        doctor_ca, key.public_key(), "dr.demo", now=now, not_after=now + datetime.timedelta(hours=1)
    )
    pdf = _sign_with(_unsigned(signed), tmp_path, key, [login, doctor_ca.certificate])
    assert _rejected(pdf, signed.root) in (Reason.UNTRUSTED, Reason.TAMPERED)


def test_a_prescriber_of_another_fleet_is_untrusted(signed: Signed, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_dev_state(other)
    paths = StatePaths(other)
    identity = signing_identity(
        other, "dr.demo", pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key), now=datetime.datetime.now(datetime.UTC)
    )
    pdf = sign_pdf(_unsigned(signed), identity)
    verify_prescription(pdf, paths.fleet_ca.read_bytes())  # fine for its own fleet
    assert _rejected(pdf, signed.root) is Reason.UNTRUSTED


def test_two_signatures_are_refused(signed: Signed) -> None:
    # A second, valid prescriber signature added on top of the first: the booth takes exactly one.
    identity = SigningPaths(signed.state / "signing" / "dr.demo.key", signed.state / "signing" / "dr.demo.pem")
    twice = sign_pdf(signed.pdf, identity, reason="again", field="Second")
    assert _rejected(twice, signed.root) is Reason.MALFORMED


# -- the signing identity ------------------------------------------------------------------------------------
def test_signing_identity_is_private_reused_and_renewed(tmp_path: Path) -> None:
    state = tmp_path / "hub"
    init_dev_state(state)
    paths = StatePaths(state)
    doctor_ca = pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key)
    now = datetime.datetime.now(datetime.UTC)
    first = signing_identity(state, "dr.demo", doctor_ca, now=now)  # made by init --dev already
    assert first.key.stat().st_mode & 0o777 == 0o600
    before = first.certificate.read_bytes()
    assert signing_identity(state, "dr.demo", doctor_ca, now=now).certificate.read_bytes() == before
    later = now + pki.SIGNING_LIFETIME - datetime.timedelta(days=10)
    assert signing_identity(state, "dr.demo", doctor_ca, now=later).certificate.read_bytes() != before
    assert signing_identity(state, "dr.new", doctor_ca, now=now).key.exists()  # on first use


# -- fetch codes -------------------------------------------------------------------------------------------------
def test_fetch_by_code(signed: Signed) -> None:
    paths = StatePaths(signed.state)
    prescriptions = Prescriptions(signed.state, pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key))
    now = time.time()
    number, pdf = prescriptions.fetch(signed.code, client="a", now=now)
    assert (number, pdf) == (signed.number, signed.pdf)
    number, _ = prescriptions.fetch(signed.code.lower().replace("-", " "), client="a", now=now)
    assert number == signed.number


def test_fetch_refusals(tmp_path: Path) -> None:
    store = FetchStore(tmp_path / "rx")
    prescriptions = Prescriptions.__new__(Prescriptions)
    from hub.prescriptions import RateLimit

    prescriptions.store, prescriptions.limiter, prescriptions.audit = store, RateLimit(limit=5, global_limit=8), None
    code = new_fetch_code()
    store.put(code, "RX-20260101-ABCDEFGHJK", b"%PDF-1.7 synthetic", now=1000.0)

    def refusal(code: str, client: str, now: float) -> tuple[str, int]:
        with pytest.raises(PrescriptionError) as caught:
            prescriptions.fetch(code, client=client, now=now)
        return caught.value.code, caught.value.status

    assert refusal("nope", "a", 1000.0) == ("malformed", 400)
    assert refusal(new_fetch_code(), "a", 1000.0) == ("unknown_code", 404)
    assert prescriptions.fetch(code, client="a", now=1001.0)[0] == "RX-20260101-ABCDEFGHJK"
    for _ in range(2):
        refusal(new_fetch_code(), "a", 1002.0)
    assert refusal(new_fetch_code(), "a", 1002.0) == ("rate_limited", 429)  # five per client and minute
    for _ in range(3):
        refusal(new_fetch_code(), "b", 1002.0)
    assert refusal(new_fetch_code(), "c", 1002.0) == ("rate_limited", 429)  # eight for everyone
    assert refusal(new_fetch_code(), "c", 1100.0) == ("unknown_code", 404)  # a minute later
    expiry = 1000.0 + FETCH_LIFETIME.total_seconds()
    assert refusal(code, "d", expiry) == ("expired", 410)
    assert refusal(code, "e", expiry + 1) == ("unknown_code", 404)  # an expired copy is deleted


def test_at_rest_the_store_holds_neither_pdf_nor_code(tmp_path: Path) -> None:
    store = FetchStore(tmp_path / "rx")
    code = new_fetch_code()
    secret = b"%PDF-1.7 Lou synthetic prescription text"
    store.put(code, "RX-20260101-ABCDEFGHJK", secret, now=1000.0)
    (path,) = (tmp_path / "rx").iterdir()
    data = path.read_bytes()
    assert b"Lou" not in data and code.encode() not in data and code.replace("-", "").encode() not in path.name.encode()
    assert path.stat().st_mode & 0o777 == 0o600
    assert store.get(code, now=1000.0)[1] == secret
    assert store.purge(now=1000.0 + FETCH_LIFETIME.total_seconds()) == 1


def test_code_normalisation() -> None:
    assert normalise_code("abcd efgh jkmn") == "ABCD-EFGH-JKMN"
    assert normalise_code("0OIL-1111-2222") == "0011-1111-2222"
    assert normalise_code("ABCD-EFGH-JKM") is None
    assert normalise_code("ABCD-EFGH-JKMU") is None


def test_request_checks() -> None:
    with pytest.raises(PrescriptionError):
        check_request(PATIENT, "")
    with pytest.raises(PrescriptionError):
        check_request(PATIENT, "a\x00b")
    with pytest.raises(PrescriptionError):
        check_request("two\nlines", TEXT)
    with pytest.raises(PrescriptionError):
        check_request(PATIENT, "x" * 5000)
    assert check_request(f"  {PATIENT} ", TEXT + "\r\n").patient == PATIENT


# -- the booth's intake ------------------------------------------------------------------------------------------------
async def test_intake_prints_a_verified_prescription(signed: Signed) -> None:
    printer = RecordingPrinter()
    events: list[tuple[str, dict[str, object]]] = []
    intake = PrescriptionIntake(signed.root, printer, audit=lambda e, f: events.append((e, f)))
    verified, job = await intake.receive(signed.pdf)
    assert job == "test-1"
    assert printer.jobs == [signed.pdf]
    assert verified.fetch_code == signed.code
    assert [e for e, _ in events] == ["prescription_verified", "document_printed"]


async def test_intake_never_prints_a_modified_prescription(signed: Signed) -> None:
    printer = RecordingPrinter()
    events: list[tuple[str, dict[str, object]]] = []
    intake = PrescriptionIntake(signed.root, printer, audit=lambda e, f: events.append((e, f)))
    mutated = bytearray(signed.pdf)
    mutated[len(mutated) // 3] ^= 0x20
    with pytest.raises(PrescriptionRejected):
        await intake.receive(bytes(mutated))
    assert printer.jobs == []
    assert [e for e, _ in events] == ["prescription_refused"]
    assert PATIENT not in repr(events)


@settings(max_examples=40)
@given(
    edits=st.lists(
        st.tuples(st.floats(min_value=0, max_value=1, exclude_max=True), st.integers(0, 255), st.sampled_from("xid")),
        min_size=1,
        max_size=4,
    )
)
def test_fuzz_intake_with_mutated_pdfs(signed: Signed, edits: list[tuple[float, int, str]]) -> None:
    pdf = bytearray(signed.pdf)
    for where, value, kind in edits:
        position = int(where * len(pdf))
        if kind == "x":  # replace a byte
            pdf[position] = value if value != pdf[position] else (value + 1) % 256
        elif kind == "i":  # insert one
            pdf.insert(position, value)
        else:  # delete one
            del pdf[position]
    assume(bytes(pdf) != signed.pdf)
    printer = RecordingPrinter()
    intake = PrescriptionIntake(signed.root, printer)
    with pytest.raises(PrescriptionRejected) as caught:
        asyncio.run(intake.receive(bytes(pdf)))
    assert isinstance(caught.value.reason, Reason)
    assert printer.jobs == []
