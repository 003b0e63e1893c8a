"""The booth's intake of a prescription from the doctor: verify, then print, then tell the patient's screen.

Order matters and is the point of this module: nothing reaches the printer
unless :func:`~kiosk.documents.prescription.verify_prescription` accepted the
exact bytes that are printed. A rejected file raises
:class:`~kiosk.documents.errors.PrescriptionRejected` (the screen says,
calmly, that the prescription could not be checked and the doctor is told);
a printer problem (:class:`~kiosk.documents.errors.PrintError`, after the
verification succeeded) is logged and audited, and the fetch code still works.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable

from kiosk.documents.errors import PrescriptionRejected, PrintError
from kiosk.documents.prescription import Audit, VerifiedPrescription, verify_prescription
from kiosk.documents.printing import PrinterConfig, print_pdf

logger = logging.getLogger(__name__)

Printer = Callable[[bytes, str], Awaitable[str]]
"""``(pdf, title) -> job id``: :func:`printing.print_pdf` bound to a queue, or a test's recorder."""


def cups_printer(config: PrinterConfig) -> Printer:
    """A :data:`Printer` that queues on CUPS."""

    async def send(pdf: bytes, title: str) -> str:
        return await print_pdf(pdf, config, title=title)

    return send


class PrescriptionIntake:
    """Verifies prescriptions against the fleet root and prints the ones that pass."""

    def __init__(self, fleet_root_pem: bytes, printer: Printer | None, *, audit: Audit | None = None) -> None:
        self.fleet_root_pem = fleet_root_pem
        self.printer = printer
        self.audit = audit

    def _audit(self, event: str, fields: dict[str, object]) -> None:
        if self.audit is not None:
            self.audit(event, fields)

    async def receive(self, pdf: bytes) -> tuple[VerifiedPrescription, str | None]:
        """Verify ``pdf`` (in a worker thread), then print it; ``(prescription, job id or None)``.

        Raises :class:`PrescriptionRejected` (never printed); a :class:`PrintError` (verified, not printed)
        gives a None job id: the patient still gets the fetch code.
        """
        digest = hashlib.sha256(pdf).hexdigest()
        try:
            verified = await asyncio.to_thread(verify_prescription, pdf, self.fleet_root_pem)
        except PrescriptionRejected as exc:
            logger.warning("prescription rejected: %s", exc.reason.value)
            self._audit("prescription_refused", {"sha256": digest, "size": len(pdf), "reason": exc.reason.value})
            raise
        self._audit("prescription_verified", {"number": verified.number, "signer": verified.signer, "sha256": digest})
        if self.printer is None:
            return verified, None
        try:
            job = await self.printer(verified.pdf, verified.number)
        except PrintError as exc:
            logger.warning("prescription not printed: %s", exc)
            self._audit("document_print_failed", {"number": verified.number, "queue": exc.queue})
            return verified, None
        self._audit("document_printed", {"number": verified.number, "job": job})
        return verified, job


class BoothPrescriptions:
    """The patient app's :class:`kiosk.ui.services.PrescriptionService` over an intake."""

    def __init__(self, intake: PrescriptionIntake) -> None:
        self.intake = intake

    async def receive(self, pdf: bytes) -> tuple[str, bool]:
        verified, job = await self.intake.receive(pdf)
        return verified.fetch_code, job is not None
