"""Documents: prescription signing and verification times, report and FHIR bundle generation times.

    python -m bench.documents [--exhaustive]

A development hub state in a temporary directory; each prescription is laid
out, signed PAdES by the doctor's signing key (``hub.prescriptions``) and then
verified by the booth's code (``kiosk.documents.prescription``). With
``--exhaustive`` it also changes every byte of one signature value (its DER
and its zero padding) to each of three other values and counts the changes
the booth accepted (the expected count is 0).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import summary_ms
from hub import pki
from hub.app import StatePaths, init_dev_state
from hub.prescriptions import Prescriptions, check_request
from kiosk.documents.errors import PrescriptionRejected
from kiosk.documents.fhir import bundle_json
from kiosk.documents.prescription import verify_prescription
from kiosk.documents.report import consultation_report

ROUNDS = 20


def _summary() -> Any:
    import datetime

    from kiosk.documents.summary import ConsultationSummary, Still

    start = datetime.datetime(2026, 3, 14, 9, 30, tzinfo=datetime.UTC)
    return ConsultationSummary(
        "bench", "pt-bench", "booth-0001", start, start + datetime.timedelta(minutes=12),
        readings={"spo2": 97, "pulse": 72, "systolic": 128, "diastolic": 84, "celsius": 37.4},
        stills=(Still(bytes(200_000)),),
    )  # fmt: skip


def run(exhaustive: bool = False) -> dict[str, Any]:
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)
    logging.getLogger("pyhanko_certvalidator").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as temp:
        state = Path(temp) / "hub"
        init_dev_state(state)
        paths = StatePaths(state)
        root = paths.fleet_ca.read_bytes()
        prescriptions = Prescriptions(state, pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key))
        request = check_request("Synthetic, 40 ans", "Paracétamol 1 g\n3 fois par jour pendant 5 jours")
        sign: list[float] = []
        verify: list[float] = []
        pdf = b""
        for _ in range(ROUNDS):
            started = time.perf_counter()
            pdf = prescriptions.issue("dr.demo", "Dr Demo", request, now=time.time()).pdf
            sign.append(time.perf_counter() - started)
            started = time.perf_counter()
            verify_prescription(pdf, root)
            verify.append(time.perf_counter() - started)
        summary = _summary()
        report: list[float] = []
        bundle: list[float] = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            consultation_report(summary)
            report.append(time.perf_counter() - started)
            started = time.perf_counter()
            bundle_json(summary)
            bundle.append(time.perf_counter() - started)
        result: dict[str, Any] = {
            "rounds": ROUNDS,
            "prescription_bytes": len(pdf),
            "issue_and_sign_ms": summary_ms(sign),
            "verify_ms": summary_ms(verify),
            "report_pdf_ms": summary_ms(report),
            "fhir_bundle_ms": summary_ms(bundle),
        }
        if exhaustive:
            start = pdf.rindex(b"/Contents <")
            end = pdf.index(b">", start)
            tried = accepted = 0
            for position in range(start + len(b"/Contents "), end + 1):
                for value in (b"0", b"7", b"A"):
                    if pdf[position : position + 1] == value:
                        continue
                    tried += 1
                    try:
                        verify_prescription(pdf[:position] + value + pdf[position + 1 :], root)
                        accepted += 1
                    except PrescriptionRejected:
                        pass
            result["signature_value_mutations"] = {"tried": tried, "accepted": accepted}
        return result


if __name__ == "__main__":
    print(json.dumps(run(exhaustive="--exhaustive" in sys.argv[1:]), indent=2))
