"""Prescriptions on the hub: the PDF, its number and QR code, the doctor's PAdES signature, the fetch code.

Flow: the doctor writes the prescription in the console's call view and posts it
(``POST /api/prescriptions``); the hub lays out the PDF (reportlab) with a
unique number and a QR code carrying that number, signs it PAdES (pyHanko,
``/ETSI.CAdES.detached``) with the doctor's document-signing key, and answers
with the signed PDF, its number and a short fetch code. The console sends the
PDF to the booth over the end-to-end data channel; the booth verifies it
(:mod:`kiosk.documents.prescription`) before printing and shows the fetch code,
with which the patient downloads the same PDF on a phone (``GET /rx/<code>``).

Signing keys: one ECDSA P-256 key and certificate per doctor under
``<state>/signing/<username>.key`` (0600) and ``.pem`` (leaf then doctor CA),
issued by the doctor-issuing CA at ``init --dev`` or on first use, and renewed
when fewer than :data:`RENEW_BEFORE` remain.

At rest: the hub keeps each fetchable PDF encrypted under a key derived from the
fetch code (HKDF-SHA256, AES-256-GCM), in a file named by another derivation of
the code. The hub does not keep the code, so its disk alone opens no
prescription; a code is 60 random bits, and ``/rx`` lookups are rate-limited
per client and overall, so guessing one online is hopeless.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import logging
import os
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore
from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from hub import pki
from hub.accounts import opaque
from kiosk.documents.prescription import FETCH_CODE, KEYWORDS, NUMBER

logger = logging.getLogger(__name__)

CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base 32: no I, L, O or U, so a code read aloud or typed on a phone is not misread."""
RENEW_BEFORE: Final = datetime.timedelta(days=30)
FETCH_LIFETIME: Final = datetime.timedelta(days=7)
MAX_TEXT_CHARS: Final = 4000
MAX_PATIENT_CHARS: Final = 120
MAX_LINES: Final = 40
FONT: Final = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_BOLD: Final = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

Audit = Callable[[str, dict[str, object]], None]


class PrescriptionError(Exception):
    """A prescription the hub cannot make or hand out; ``code`` is the API's error code."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


# -- numbers and codes ------------------------------------------------------------------------------
def _random_base32(count: int) -> str:
    return "".join(secrets.choice(CROCKFORD) for _ in range(count))


def new_number(now: datetime.datetime) -> str:
    """A prescription number: ``RX-YYYYMMDD-`` and 50 random bits (unique without a central counter)."""
    return f"RX-{now.strftime('%Y%m%d')}-{_random_base32(10)}"


def new_fetch_code() -> str:
    """A fetch code: 60 random bits as ``XXXX-XXXX-XXXX`` (Crockford base 32)."""
    raw = _random_base32(12)
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise_code(code: str) -> str | None:
    """A typed code as stored (upper case, dashes put back; Crockford's O→0, I/L→1), or None if malformed."""
    raw = code.strip().upper().replace("-", "").replace(" ", "")
    raw = raw.translate(str.maketrans("OIL", "011"))
    if len(raw) != 12 or any(c not in CROCKFORD for c in raw):
        return None
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


# -- the signing identity ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SigningPaths:
    key: Path
    certificate: Path


def signing_identity(state: Path, username: str, doctor_ca: pki.Issuer, *, now: datetime.datetime) -> SigningPaths:
    """The doctor's signing key and certificate (leaf, doctor CA), made or renewed when needed."""
    paths = SigningPaths(state / "signing" / f"{username}.key", state / "signing" / f"{username}.pem")
    if paths.key.exists() and paths.certificate.exists():
        try:
            leaf = x509.load_pem_x509_certificates(paths.certificate.read_bytes())[0]
        except (ValueError, IndexError):
            leaf = None
        if leaf is not None and leaf.not_valid_after_utc - now > RENEW_BEFORE:
            return paths
    key = pki.new_key()
    cert = pki.issue_signing_certificate(doctor_ca, key.public_key(), username, now=now)
    (state / "signing").mkdir(mode=0o700, exist_ok=True)
    pki.save_key(paths.key, key)
    pki.save_certificate(paths.certificate, cert, doctor_ca.certificate)
    logger.info("issued a signing certificate for %s", username)
    return paths


# -- the document ----------------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class PrescriptionRequest:
    """What the doctor wrote."""

    patient: str
    """As the doctor wrote it (first name, age): the console fills it from the waiting room."""
    text: str
    """The prescription itself, one item per line."""

    def __repr__(self) -> str:
        return f"PrescriptionRequest({len(self.text)} characters)"


def check_request(patient: object, text: object) -> PrescriptionRequest:
    """Validate the console's fields (lengths, no control characters but line breaks)."""
    if not isinstance(patient, str) or not isinstance(text, str):
        raise PrescriptionError("bad_request", "patient and text must be text")
    patient, text = patient.strip(), text.strip().replace("\r\n", "\n")
    if not text or len(text) > MAX_TEXT_CHARS or text.count("\n") >= MAX_LINES:
        raise PrescriptionError(
            "bad_request", f"the prescription needs 1..{MAX_TEXT_CHARS} characters, {MAX_LINES} lines"
        )
    if len(patient) > MAX_PATIENT_CHARS or "\n" in patient:
        raise PrescriptionError("bad_request", f"the patient field holds at most {MAX_PATIENT_CHARS} characters")
    if _CONTROL.search(patient) or _CONTROL.search(text):
        raise PrescriptionError("bad_request", "control characters are not allowed")
    return PrescriptionRequest(patient, text)


def _fonts() -> None:
    if "RxSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("RxSans", FONT))
        pdfmetrics.registerFont(TTFont("RxSans-Bold", FONT_BOLD))


def _wrap(text: str, width: float, font: str, size: float) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and pdfmetrics.stringWidth(candidate, font, size) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def render_pdf(
    request: PrescriptionRequest, *, number: str, fetch_code: str, doctor: str, issued: datetime.datetime
) -> bytes:
    """The unsigned prescription: header, doctor, patient, items, the number as text and as a QR code."""
    _fonts()
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, invariant=True, pageCompression=1)
    canvas.setTitle(f"Ordonnance / Prescription {number}")
    canvas.setSubject(number)
    canvas.setAuthor(doctor)
    canvas.setKeywords(KEYWORDS.format(number=number, code=fetch_code))
    width, height = A4
    left, top = 20 * mm, height - 20 * mm
    canvas.setFont("RxSans-Bold", 22)
    canvas.drawString(left, top - 10 * mm, "Ordonnance / Prescription")
    canvas.setFont("RxSans", 13)
    canvas.drawString(left, top - 20 * mm, f"N° {number}")
    canvas.drawString(left, top - 27 * mm, f"{doctor} — {issued.strftime('%d/%m/%Y %H:%M')} UTC")
    if request.patient:
        canvas.drawString(left, top - 34 * mm, f"Patient : {request.patient}")
    # The QR code carries the number only: a pharmacist scans it to look the prescription up.
    qr = QrCodeWidget(number, barLevel="M")
    x0, y0, x1, y1 = qr.getBounds()
    side = 32 * mm
    drawing = Drawing(side, side, transform=[side / (x1 - x0), 0, 0, side / (y1 - y0), 0, 0])
    drawing.add(qr)
    renderPDF.draw(drawing, canvas, width - 20 * mm - side, top - side)
    y = top - 50 * mm
    canvas.setFont("RxSans", 14)
    for line in _wrap(request.text, width - 40 * mm, "RxSans", 14):
        if y < 40 * mm:
            canvas.showPage()
            canvas.setFont("RxSans", 14)
            y = top
        canvas.drawString(left, y, line)
        y -= 7 * mm
    canvas.setFont("RxSans", 11)
    canvas.drawString(left, 25 * mm, f"Code : {fetch_code}  ·  Signée électroniquement / Electronically signed")
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def sign_pdf(pdf: bytes, identity: SigningPaths, *, reason: str = "Prescription", field: str = "Prescriber") -> bytes:
    """Sign ``pdf`` PAdES baseline B (``ETSI.CAdES.detached``, SHA-256) with the doctor's key, chain embedded."""
    try:
        certificates = x509.load_pem_x509_certificates(identity.certificate.read_bytes())
        key = serialization.load_pem_private_key(identity.key.read_bytes(), password=None)
        key_der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    except (OSError, ValueError) as exc:
        raise PrescriptionError("signing", "the doctor's signing key cannot be loaded", status=500) from exc
    chain = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in certificates]
    signer = signers.SimpleSigner(
        signing_cert=chain[0],
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore.from_certs(chain[1:]),  # type: ignore[no-untyped-call]
    )
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    meta = signers.PdfSignatureMetadata(
        field_name=field, subfilter=SigSeedSubFilter.PADES, md_algorithm="sha256", reason=reason
    )
    out = io.BytesIO()
    signers.sign_pdf(writer, meta, signer=signer, output=out, new_field_spec=fields.SigFieldSpec(field))
    return out.getvalue()


# -- fetchable copies --------------------------------------------------------------------------------------
def _derive(code: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"kiosk-rx-v1", info=purpose).derive(code.encode())


@dataclass
class RateLimit:
    """At most ``limit`` events per ``window`` seconds per key, and ``global_limit`` overall."""

    limit: int = 10
    global_limit: int = 200
    window: float = 60.0
    _events: dict[str, deque[float]] = field(default_factory=dict)
    _all: deque[float] = field(default_factory=deque)

    def allow(self, key: str, now: float) -> bool:
        for queue in (self._all, self._events.setdefault(key, deque())):
            while queue and queue[0] <= now - self.window:
                queue.popleft()
        if len(self._all) >= self.global_limit or len(self._events[key]) >= self.limit:
            return False
        self._all.append(now)
        self._events[key].append(now)
        if len(self._events) > 10_000:  # forget idle clients so a scan of addresses cannot grow memory
            for stale in [k for k, q in self._events.items() if not q]:
                del self._events[stale]
        return True


class FetchStore:
    """Signed prescriptions a patient can fetch by code for :data:`FETCH_LIFETIME`, encrypted at rest."""

    def __init__(self, root: Path, *, lifetime: datetime.timedelta = FETCH_LIFETIME) -> None:
        self.root = root
        self.lifetime = lifetime

    def _path(self, code: str) -> Path:
        return self.root / f"{_derive(code, b'name').hex()}.rx"

    def put(self, code: str, number: str, pdf: bytes, *, now: float) -> float:
        """Keep ``pdf`` for ``code``; returns the expiry (UNIX time).

        Atomic: temporary file, fsync, rename, fsync of the directory.
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        expires = now + self.lifetime.total_seconds()
        nonce = os.urandom(12)
        header = json.dumps({"number": number, "expires": expires}).encode()
        sealed = AESGCM(_derive(code, b"key")).encrypt(nonce, pdf, header)
        path = self._path(code)
        temporary = path.with_suffix(".tmp")
        data = len(header).to_bytes(4, "big") + header + nonce + sealed
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        directory = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return expires

    def get(self, code: str, *, now: float) -> tuple[str, bytes]:
        """``(number, pdf)`` for a valid code; :class:`PrescriptionError` ``unknown_code`` or ``expired``."""
        path = self._path(code)
        try:
            data = path.read_bytes()
            size = int.from_bytes(data[:4], "big")
            header = data[4 : 4 + size]
            meta = json.loads(header)
            pdf = AESGCM(_derive(code, b"key")).decrypt(data[4 + size : 16 + size], data[16 + size :], header)
        except FileNotFoundError:
            raise PrescriptionError("unknown_code", "no prescription has this code", status=404) from None
        except Exception:  # a damaged file is as good as none; never a traceback with its bytes
            logger.warning("unreadable fetchable prescription %s", path.name)
            raise PrescriptionError("unknown_code", "no prescription has this code", status=404) from None
        if float(meta["expires"]) <= now:
            path.unlink(missing_ok=True)
            raise PrescriptionError("expired", "this code has expired; ask the pharmacy", status=410)
        return str(meta["number"]), pdf

    def purge(self, *, now: float) -> int:
        """Delete expired copies (their header is readable without the code); returns how many."""
        removed = 0
        for path in self.root.glob("*.rx") if self.root.exists() else ():
            try:
                data = path.read_bytes()
                expires = float(json.loads(data[4 : 4 + int.from_bytes(data[:4], "big")])["expires"])
            except (OSError, ValueError, KeyError):
                continue
            if expires <= now:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


@dataclass(frozen=True)
class Issued:
    """A signed prescription, as the console receives it."""

    number: str
    fetch_code: str
    expires: float
    pdf: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "number": self.number,
            "fetch_code": self.fetch_code,
            "expires": self.expires,
            "sha256": hashlib.sha256(self.pdf).hexdigest(),
            "pdf": base64.b64encode(self.pdf).decode(),
        }


class Prescriptions:
    """Makes, signs and keeps prescriptions for the doctor listener."""

    def __init__(self, state: Path, doctor_ca: pki.Issuer, *, audit: Audit | None = None) -> None:
        self.state = state
        self.doctor_ca = doctor_ca
        self.store = FetchStore(state / "prescriptions")
        self.limiter = RateLimit()
        self.audit = audit

    def issue(self, username: str, display_name: str, request: PrescriptionRequest, *, now: float) -> Issued:
        """Number, PDF, signature, fetchable copy. CPU-bound: run it in a worker thread."""
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        identity = signing_identity(self.state, username, self.doctor_ca, now=moment)
        number, code = new_number(moment), new_fetch_code()
        assert NUMBER.fullmatch(number) and FETCH_CODE.fullmatch(code)
        unsigned = render_pdf(request, number=number, fetch_code=code, doctor=display_name, issued=moment)
        signed = sign_pdf(unsigned, identity)
        expires = self.store.put(code, number, signed, now=now)
        self.store.purge(now=now)  # expired copies go when new ones come: no separate timer to forget
        if self.audit is not None:
            self.audit(
                "prescription_signed",
                {"number": number, "doctor": opaque(username), "sha256": hashlib.sha256(signed).hexdigest()},
            )
        return Issued(number, code, expires, signed)

    def fetch(self, code: str, *, client: str, now: float) -> tuple[str, bytes]:
        """The PDF for a fetch code typed on a phone: ``rate_limited`` (429), ``malformed`` (400),
        ``unknown_code`` (404), ``expired`` (410) otherwise."""
        if not self.limiter.allow(client, now):
            raise PrescriptionError("rate_limited", "too many attempts; wait a minute", status=429)
        normal = normalise_code(code)
        if normal is None:
            raise PrescriptionError("malformed", "a code looks like XXXX-XXXX-XXXX", status=400)
        number, pdf = self.store.get(normal, now=now)
        if self.audit is not None:
            self.audit("prescription_fetched", {"number": number})
        return number, pdf
