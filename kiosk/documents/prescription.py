"""The booth's side of a signed prescription: verify the PAdES signature before anything is printed.

The hub signs each prescription PDF with the doctor's document-signing key
(``hub.prescriptions``); the console sends it over the end-to-end data channel
with the MIME type :data:`PRESCRIPTION_MIME`. Before the booth prints it,
:func:`verify_prescription` requires, with pyHanko's validator:

* exactly one signature, cryptographically intact, covering the whole file
  (no byte after it: an incremental update appended by someone else fails);
* a signer chain up to the fleet root the booth already trusts, through an
  intermediate CA (the doctor-issuing CA) and with a leaf of OU "prescriber"
  whose key usage allows non-repudiation: a booth's or a console's certificate,
  also under the fleet root, cannot pass for a prescriber;
* the prescription's number and fetch code in the signed document information.

The PDF parser meets hostile bytes here (whatever came over the data channel),
so every failure of the third-party parser or validator becomes a
:class:`PrescriptionRejected`; nothing else leaves this module.
"""

from __future__ import annotations

import datetime
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from asn1crypto import cms as asn1_cms
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from kiosk.documents import PRESCRIPTION_MIME
from kiosk.documents.errors import PrescriptionRejected, Reason

PRESCRIBER_UNIT: Final = "prescriber"
NUMBER: Final = re.compile(r"RX-[0-9]{8}-[0-9A-HJKMNP-TV-Z]{10}")
"""A prescription number: ``RX-`` issue date ``-`` ten Crockford base-32 characters (50 random bits)."""
FETCH_CODE: Final = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")
"""A fetch code: twelve Crockford base-32 characters (60 random bits) in groups of four."""
KEYWORDS: Final = "kiosk-prescription number={number} fetch-code={code}"
"""The signed PDF's /Keywords: how the hub hands the booth the number and fetch code it shows."""
_KEYWORDS = re.compile(r"kiosk-prescription number=(?P<number>\S+) fetch-code=(?P<code>\S+)")
MAX_PDF_BYTES: Final = 5 * 1024 * 1024
__all__ = ["PRESCRIPTION_MIME", "VerifiedPrescription", "verify_prescription"]

Audit = Callable[[str, dict[str, object]], None]


@dataclass(frozen=True)
class VerifiedPrescription:
    """A prescription whose signature checked out; ``pdf`` is safe to print."""

    pdf: bytes
    number: str
    fetch_code: str
    signer: str
    """The prescriber's account name (the signing certificate's CN)."""
    signed_at: datetime.datetime | None

    def __repr__(self) -> str:
        return f"VerifiedPrescription({self.number}, signer={self.signer}, {len(self.pdf)} bytes)"


def _reject(reason: Reason, message: str) -> PrescriptionRejected:
    return PrescriptionRejected(reason, message)


def _subject_values(certificate: Any, field: str) -> list[str]:
    """An attribute of the certificate's subject as a list (asn1crypto gives one value bare, several as a list)."""
    value = certificate.subject.native.get(field) if certificate is not None else None
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


_CONTENTS = re.compile(rb"<([0-9A-F]+)>")


def _der_length(data: bytes) -> int:
    """Length of the DER TLV at the start of ``data`` (tag, length octets, content)."""
    if len(data) < 2:
        raise _reject(Reason.MALFORMED, "the signature value is empty")
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        raise _reject(Reason.MALFORMED, "the signature value is not DER")
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _check_cms(signed_data: Any, path: list[Any]) -> None:
    """Nothing in the CMS blob that the signature does not cover and the validator would ignore.

    The signer's signature covers its signed attributes only; the SignedData
    around it (digest algorithm list, certificate set, versions, unsigned
    attributes) could change without the cryptographic check noticing. So the
    booth accepts the one shape the hub produces: DER, SHA-256 and ECDSA, no
    unsigned attributes, and exactly the certificates of the validated path
    below the root, byte for byte.
    """
    signers = list(signed_data["signer_infos"])
    if len(signers) != 1:
        raise _reject(Reason.MALFORMED, "a prescription has exactly one signer")
    signer = signers[0]
    digest = signer["digest_algorithm"].dump()
    shape_ok = (
        signed_data["version"].native == "v1"
        and [a.dump() for a in signed_data["digest_algorithms"]] == [digest]
        and signed_data["encap_content_info"].native == {"content_type": "data", "content": None}
        and signer["version"].native == "v1"
        and signer["digest_algorithm"].native == {"algorithm": "sha256", "parameters": None}
        and signer["signature_algorithm"].native == {"algorithm": "sha256_ecdsa", "parameters": None}
        and signer["unsigned_attrs"].native is None
        and not signed_data["crls"].native
    )
    if not shape_ok:
        raise _reject(Reason.TAMPERED, "the signature's structure is not the one the hub makes")
    embedded = sorted(c.dump() for c in signed_data["certificates"])
    if embedded != sorted(c.dump() for c in path[1:]):
        raise _reject(Reason.TAMPERED, "the signature carries other certificates than its signer's chain")


def _check_contents(pdf: bytes, signature: Any) -> None:
    """The signature value's hex string in canonical form: the CMS blob, then zero padding only.

    The byte range a PDF signature covers leaves out its own /Contents; a
    validator reads the CMS blob from it and ignores what follows it. Without
    this check a changed padding digit (or a hex digit's case) would go
    unnoticed, and the booth promises that any modified byte fails.
    """
    ranges = [int(v) for v in signature["/ByteRange"]]
    if len(ranges) != 4 or ranges[0] != 0 or ranges[2] + ranges[3] != len(pdf):
        raise _reject(Reason.TAMPERED, "the signature does not cover the whole file")
    match = _CONTENTS.fullmatch(pdf[ranges[0] + ranges[1] : ranges[2]])
    if match is None:
        raise _reject(Reason.TAMPERED, "the signature value is not in canonical form")
    digits = match.group(1)
    blob = bytes.fromhex(digits.decode())
    used = _der_length(blob)
    if used > len(blob) or blob[used:].strip(b"\0") or digits[2 * used :].strip(b"0"):
        raise _reject(Reason.TAMPERED, "the signature value is followed by something other than padding")
    if asn1_cms.ContentInfo.load(blob[:used]).dump(force=True) != blob[:used]:
        raise _reject(Reason.TAMPERED, "the signature value is not DER")


def verify_prescription(
    pdf: bytes, fleet_root_pem: bytes, *, now: datetime.datetime | None = None
) -> VerifiedPrescription:
    """Check ``pdf`` as described in the module docstring; :class:`PrescriptionRejected` otherwise.

    CPU-bound and synchronous (pyHanko runs its own event loop inside): call it
    from a worker thread in the booth app.
    """
    if not isinstance(pdf, bytes) or not pdf.startswith(b"%PDF-") or len(pdf) > MAX_PDF_BYTES:
        raise _reject(Reason.NOT_A_PDF, "the prescription is not a PDF")
    try:
        return _verify(pdf, fleet_root_pem, now)
    except PrescriptionRejected:
        raise
    except Exception as exc:  # a hostile PDF can break the parser in any way: it is one more rejected file
        raise _reject(Reason.NOT_A_PDF, f"the prescription PDF cannot be read ({type(exc).__name__})") from None


def _verify(pdf: bytes, fleet_root_pem: bytes, now: datetime.datetime | None) -> VerifiedPrescription:
    _, _, der = asn1_pem.unarmor(fleet_root_pem)
    root = asn1_x509.Certificate.load(der)
    reader = PdfFileReader(io.BytesIO(pdf), strict=True)
    signatures = reader.embedded_signatures
    if not signatures:
        raise _reject(Reason.UNSIGNED, "the prescription is not signed")
    if len(signatures) != 1:
        raise _reject(Reason.MALFORMED, "a prescription carries exactly one signature")
    _check_contents(pdf, signatures[0].sig_object)
    context = ValidationContext(
        trust_roots=[root],
        allow_fetching=False,
        # The development PKI publishes no CRL or OCSP: revocation is the hub's concern (it stops issuing).
        revocation_mode="soft-fail",
        moment=now,
    )
    status = validate_pdf_signature(
        signatures[0],
        context,
        key_usage_settings=KeyUsageConstraints(key_usage={"non_repudiation"}, match_all_key_usages=True),
    )
    if not status.intact or not status.valid:
        raise _reject(Reason.TAMPERED, "the prescription was modified after it was signed")
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        raise _reject(Reason.TAMPERED, "the prescription holds content added after its signature")
    if not status.trusted:
        raise _reject(Reason.UNTRUSTED, "the prescription is not signed by a doctor of this fleet")
    signer = status.signing_cert
    path = list(status.validation_path) if status.validation_path is not None else []
    # Three links exactly: fleet root, an intermediate (the doctor-issuing CA), the prescriber.
    if _subject_values(signer, "organizational_unit_name") != [PRESCRIBER_UNIT] or len(path) != 3:
        raise _reject(Reason.UNTRUSTED, "the signer is not a prescriber certified by the doctor CA")
    _check_cms(signatures[0].signed_data, path)
    names = _subject_values(signer, "common_name")
    info = reader.trailer["/Info"]
    match = _KEYWORDS.fullmatch(str(info.get("/Keywords", "")))
    if match is None or not NUMBER.fullmatch(match["number"]) or not FETCH_CODE.fullmatch(match["code"]):
        raise _reject(Reason.MALFORMED, "the signed prescription has no number or fetch code")
    return VerifiedPrescription(
        pdf=pdf,
        number=match["number"],
        fetch_code=match["code"],
        signer=names[0] if names else "",
        signed_at=status.signer_reported_dt,
    )
