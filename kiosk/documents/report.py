"""The consultation report as a PDF the patient reads: large type, plain words, the booth's language.

One A4 page (more if there are many readings): when, with which doctor, each
measurement in everyday words with its value, the prescription's number and
fetch code when there is one, and what to do if things get worse. No name and
no card number: the report is handed over at the booth and may be left there.

Text is set in DejaVu Sans (Debian's fonts-dejavu-core, the booth's own font)
at 16 points or more, the size large-print guidance asks for. Arabic is shaped
and put in display order line by line (:mod:`kiosk.ui.text`), right-aligned.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from typing import Final
from xml.sax.saxutils import escape

from reportlab.lib.enums import TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

from kiosk.documents.summary import ConsultationSummary
from kiosk.ui.text import FONT, FONT_BOLD, wrap_rtl

BODY_POINTS: Final = 16
TITLE_POINTS: Final = 26
FONT_NAME: Final = "KioskReport"
FONT_NAME_BOLD: Final = "KioskReport-Bold"
RTL: Final = frozenset({"ar"})

STRINGS: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "title": "Your teleconsultation",
        "when": "Date: {date}, from {start} to {end}",
        "doctor": "Doctor: {name}",
        "measures": "Your measurements",
        "none": "No measurement was taken.",
        "spo2": "Oxygen in your blood: {value} %",
        "pulse": "Heart beats per minute: {value}",
        "bp": "Blood pressure: {systolic} / {diastolic} mmHg (high number / low number)",
        "celsius": "Body temperature: {value} °C",
        "stills": "Pictures taken by the doctor: {count}",
        "prescription": "Prescription number: {number}",
        "fetch": "To get your prescription on your phone, use this code: {code}",
        "worse": "If you feel worse, call your doctor. In an emergency, call 15 or 112.",
        "keep": "This paper is for you. Keep it, and show it to your doctor or pharmacist.",
    },
    "fr": {
        "title": "Votre téléconsultation",
        "when": "Date : {date}, de {start} à {end}",
        "doctor": "Médecin : {name}",
        "measures": "Vos mesures",
        "none": "Aucune mesure n’a été prise.",
        "spo2": "Oxygène dans votre sang : {value} %",
        "pulse": "Battements du cœur par minute : {value}",
        "bp": "Tension artérielle : {systolic} / {diastolic} mmHg (chiffre haut / chiffre bas)",
        "celsius": "Température du corps : {value} °C",
        "stills": "Photos prises par le médecin : {count}",
        "prescription": "Numéro de l’ordonnance : {number}",
        "fetch": "Pour retrouver votre ordonnance sur votre téléphone, utilisez ce code : {code}",
        "worse": "Si vous allez plus mal, appelez votre médecin. En cas d’urgence, appelez le 15 ou le 112.",
        "keep": "Ce papier est pour vous. Gardez-le et montrez-le à votre médecin ou à votre pharmacien.",
    },
    "es": {
        "title": "Su teleconsulta",
        "when": "Fecha: {date}, de {start} a {end}",
        "doctor": "Médico: {name}",
        "measures": "Sus mediciones",
        "none": "No se tomó ninguna medición.",
        "spo2": "Oxígeno en su sangre: {value} %",
        "pulse": "Latidos del corazón por minuto: {value}",
        "bp": "Tensión arterial: {systolic} / {diastolic} mmHg (número alto / número bajo)",
        "celsius": "Temperatura del cuerpo: {value} °C",
        "stills": "Fotos tomadas por el médico: {count}",
        "prescription": "Número de la receta: {number}",
        "fetch": "Para ver su receta en el teléfono, use este código: {code}",
        "worse": "Si se siente peor, llame a su médico. En caso de urgencia, llame al 15 o al 112.",
        "keep": "Este papel es para usted. Guárdelo y muéstrelo a su médico o farmacéutico.",
    },
    "pt": {
        "title": "A sua teleconsulta",
        "when": "Data: {date}, das {start} às {end}",
        "doctor": "Médico: {name}",
        "measures": "As suas medições",
        "none": "Não foi feita nenhuma medição.",
        "spo2": "Oxigénio no seu sangue: {value} %",
        "pulse": "Batimentos do coração por minuto: {value}",
        "bp": "Tensão arterial: {systolic} / {diastolic} mmHg (número alto / número baixo)",
        "celsius": "Temperatura do corpo: {value} °C",
        "stills": "Fotografias tiradas pelo médico: {count}",
        "prescription": "Número da receita: {number}",
        "fetch": "Para ver a sua receita no telemóvel, use este código: {code}",
        "worse": "Se se sentir pior, ligue ao seu médico. Em caso de urgência, ligue 15 ou 112.",
        "keep": "Este papel é para si. Guarde-o e mostre-o ao seu médico ou farmacêutico.",
    },
    "ar": {
        "title": "استشارتك عن بعد",
        "when": "التاريخ: {date}، من {start} إلى {end}",
        "doctor": "الطبيب: {name}",
        "measures": "قياساتك",
        "none": "لم يتم أخذ أي قياس.",
        "spo2": "الأكسجين في دمك: {value} %",
        "pulse": "نبضات القلب في الدقيقة: {value}",
        "bp": "ضغط الدم: {systolic} / {diastolic} ملم زئبق",
        "celsius": "حرارة الجسم: {value} °C",
        "stills": "صور التقطها الطبيب: {count}",
        "prescription": "رقم الوصفة: {number}",
        "fetch": "للحصول على وصفتك على هاتفك، استخدم هذا الرمز: {code}",
        "worse": "إذا شعرت بتدهور حالتك، اتصل بطبيبك. في حالة الطوارئ، اتصل بالرقم 15 أو 112.",
        "keep": "هذه الورقة لك. احتفظ بها وأظهرها لطبيبك أو للصيدلي.",
    },
}
FALLBACK: Final = "fr"


def _number(value: float) -> str:
    return f"{value:.1f}" if value != int(value) else str(int(value))


def _width(style: ParagraphStyle, text: str) -> float:
    return float(pdfmetrics.stringWidth(text, style.fontName, style.fontSize))


def _fonts() -> None:
    if FONT_NAME not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT_NAME, FONT))
        pdfmetrics.registerFont(TTFont(FONT_NAME_BOLD, FONT_BOLD))


def report_lines(summary: ConsultationSummary) -> list[tuple[str, str]]:
    """The report's content as ``(style, text)`` pairs in reading order (``title``, ``heading`` or ``body``)."""
    words = STRINGS.get(summary.language, STRINGS[FALLBACK])
    r = summary.readings
    lines = [
        ("title", words["title"]),
        (
            "body",
            words["when"].format(
                date=summary.started.strftime("%d/%m/%Y"),
                start=summary.started.strftime("%H:%M"),
                end=summary.ended.strftime("%H:%M"),
            ),
        ),
    ]
    if summary.doctor_name:
        lines.append(("body", words["doctor"].format(name=summary.doctor_name)))
    lines.append(("heading", words["measures"]))
    measures = []
    if "spo2" in r:
        measures.append(words["spo2"].format(value=_number(r["spo2"])))
    if "pulse" in r:
        measures.append(words["pulse"].format(value=_number(r["pulse"])))
    if "systolic" in r and "diastolic" in r:
        measures.append(words["bp"].format(systolic=_number(r["systolic"]), diastolic=_number(r["diastolic"])))
    if "celsius" in r:
        measures.append(words["celsius"].format(value=_number(r["celsius"])))
    if summary.stills:
        measures.append(words["stills"].format(count=len(summary.stills)))
    lines += [("body", text) for text in measures or [words["none"]]]
    if summary.prescription_number:
        lines.append(("heading", words["prescription"].format(number=summary.prescription_number)))
        if summary.fetch_code:
            lines.append(("body", words["fetch"].format(code=summary.fetch_code)))
    lines += [("body", words["worse"]), ("body", words["keep"])]
    return lines


def consultation_report(summary: ConsultationSummary) -> bytes:
    """The report as PDF bytes, in ``summary.language`` (French when the booth's language has no text here)."""
    _fonts()
    rtl = summary.language in RTL
    align = TA_RIGHT if rtl else TA_LEFT
    styles = {
        "title": ParagraphStyle("title", fontName=FONT_NAME_BOLD, fontSize=TITLE_POINTS, leading=TITLE_POINTS * 1.3,
                                alignment=align, spaceAfter=6 * mm),
        "heading": ParagraphStyle("heading", fontName=FONT_NAME_BOLD, fontSize=BODY_POINTS + 4,
                                  leading=(BODY_POINTS + 4) * 1.4, alignment=align, spaceBefore=5 * mm,
                                  spaceAfter=2 * mm),
        "body": ParagraphStyle("body", fontName=FONT_NAME, fontSize=BODY_POINTS, leading=BODY_POINTS * 1.45,
                               alignment=align, spaceAfter=3 * mm),
    }  # fmt: skip
    out = io.BytesIO()
    document = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
        title=STRINGS.get(summary.language, STRINGS[FALLBACK])["title"],
        lang=summary.language,
        invariant=True,
    )
    story = []
    for style, text in report_lines(summary):
        if rtl:
            # Wrapped here in reading order, each line then reordered: reportlab would wrap the display-order
            # string and put the paragraph's last words first.
            lines = wrap_rtl(text, document.width, functools.partial(_width, styles[style]))
            markup = "<br/>".join(escape(line) for line in lines.split("\n"))
        else:
            markup = escape(text)
        story.append(Paragraph(markup, styles[style]))
        if style == "title":
            story.append(Spacer(1, 2 * mm))
    document.build(story)
    return out.getvalue()
