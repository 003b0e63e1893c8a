"""The patient's report PDF: its words as pdftotext (poppler-utils) reads them, in the booth's language."""

from __future__ import annotations

import re
import subprocess

import pytest

from kiosk.documents.report import BODY_POINTS, STRINGS, consultation_report, report_lines
from tests.documents.support import summary


def _text(pdf: bytes) -> str:
    result = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True)
    return re.sub(r"\s+", " ", result.stdout.decode())


def _fonts(pdf: bytes) -> str:
    return subprocess.run(["pdffonts", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def test_french_report_in_plain_words() -> None:
    text = _text(
        consultation_report(summary(prescription_number="RX-20260314-ABCDEFGHJK", fetch_code="ABCD-EFGH-JKMN"))
    )
    for expected in (
        "Votre téléconsultation",
        "Date : 14/03/2026, de 09:30 à 09:42",
        "Médecin : Dr Demo",
        "Oxygène dans votre sang : 97 %",
        "Battements du cœur par minute : 72",
        "Tension artérielle : 128 / 84 mmHg",
        "Température du corps : 37.4 °C",
        "Photos prises par le médecin : 1",
        "Numéro de l’ordonnance : RX-20260314-ABCDEFGHJK",
        "ABCD-EFGH-JKMN",
        "appelez le 15 ou le 112",
    ):
        assert expected in text


def test_english_report() -> None:
    text = _text(consultation_report(summary(language="en")))
    assert "Your teleconsultation" in text
    assert "Oxygen in your blood: 97 %" in text
    assert "Blood pressure: 128 / 84 mmHg" in text
    assert "Prescription" not in text  # no prescription in this consultation


def test_no_measurement() -> None:
    text = _text(consultation_report(summary(language="en", readings={}, stills=())))
    assert "No measurement was taken." in text


def test_unknown_language_falls_back_to_french() -> None:
    assert "Votre téléconsultation" in _text(consultation_report(summary(language="de")))


def test_large_type_embedded_font() -> None:
    pdf = consultation_report(summary())
    assert BODY_POINTS >= 16
    assert "DejaVuSans" in _fonts(pdf)
    assert pdf.startswith(b"%PDF-")


@pytest.mark.parametrize("language", sorted(STRINGS))
def test_every_language_has_every_line(language: str) -> None:
    assert set(STRINGS[language]) == set(STRINGS["en"])
    lines = report_lines(summary(language=language, prescription_number="RX-1", fetch_code="ABCD-EFGH-JKMN"))
    assert all(text for _, text in lines)
    assert consultation_report(summary(language=language)).startswith(b"%PDF-")


def test_arabic_is_shaped() -> None:
    # Shaped Arabic uses presentation forms; pdftotext gives them back as such, in display order.
    text = _text(consultation_report(summary(language="ar")))
    assert any("\ufe70" <= c <= "\ufefc" for c in text)


def test_report_names_nobody() -> None:
    s = summary()
    pdf = consultation_report(s)
    assert s.patient_token.encode() not in pdf
    assert s.patient_token not in _text(pdf)
