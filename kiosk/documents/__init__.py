"""Consultation documents: the FHIR R4 bundle, the patient's report, signed prescriptions and printing."""
