"""Consultation documents: the FHIR R4 bundle, the patient's report, signed prescriptions and printing."""

from typing import Final

PRESCRIPTION_MIME: Final = "application/vnd.kiosk.prescription+pdf"
"""The data-channel MIME type that marks a file as a signed prescription (the console sends it)."""
