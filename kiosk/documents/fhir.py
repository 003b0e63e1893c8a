"""The consultation as a FHIR R4 (4.0.1) Bundle, validated with the ``fhir.resources`` 6.4 models.

``fhir.resources`` 7 and later default to R5 and only offer R4B; 6.4 is the last
release whose default models are R4 4.0.1, so it is pinned (it needs pydantic 1).

The bundle is a ``collection``: an Encounter, one Observation per reading
(vital-signs profile codes: LOINC for what, UCUM for units) and a Media per
still. The patient is a logical reference by opaque token, never a Patient
resource with a name: the hub links the token to a person, the booth cannot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any, Final

import pydantic
from fhir.resources.bundle import Bundle

from kiosk.documents.errors import DocumentError, Reason
from kiosk.documents.summary import ConsultationSummary, Still

LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
MEDIA_TYPE: Final = "http://terminology.hl7.org/CodeSystem/media-type"
PATIENT_TOKEN_SYSTEM: Final = "urn:kiosk:patient-token"
"""The identifier system of the opaque per-session patient token."""
BOOTH_SYSTEM: Final = "urn:kiosk:booth"
SESSION_SYSTEM: Final = "urn:kiosk:session"
PRESCRIPTION_SYSTEM: Final = "urn:kiosk:prescription"

# (reading key, LOINC codes (first is the profile's), display, UCUM code) for single-value vital signs.
# FHIR R4 vital-signs profile: SpO2 is 2708-6 with 59408-5 (by pulse oximetry) beside it.
_SIMPLE: Final = (
    ("spo2", (("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
              ("2708-6", "Oxygen saturation in Arterial blood")), "%"),
    ("pulse", (("8867-4", "Heart rate"),), "/min"),
    ("celsius", (("8310-5", "Body temperature"),), "Cel"),
)  # fmt: skip
BP_PANEL: Final = ("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC: Final = ("8480-6", "Systolic blood pressure")
DIASTOLIC: Final = ("8462-4", "Diastolic blood pressure")
MM_HG: Final = "mm[Hg]"
_CAMERA_TEXT: Final = {"booth": "Booth camera", "otoscope": "Otoscope", "dermatoscope": "Dermatoscope"}


def _instant(value: Any) -> str:
    return str(value.isoformat(timespec="seconds"))


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _concept(codes: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display} for code, display in codes],
            "text": codes[0][1]}  # fmt: skip


class _Builder:
    def __init__(self, summary: ConsultationSummary, *, embed_stills: bool) -> None:
        self.summary = summary
        self.embed_stills = embed_stills
        # Deterministic ids from the session id: the same consultation always gives the same bundle.
        self._namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"{SESSION_SYSTEM}:{summary.session_id}")
        self.encounter_url = self._url("encounter")
        self.subject = {
            "identifier": {"system": PATIENT_TOKEN_SYSTEM, "value": summary.patient_token},
            "type": "Patient",
        }

    def _url(self, name: str) -> str:
        return f"urn:uuid:{uuid.uuid5(self._namespace, name)}"

    def entry(self, name: str, resource: dict[str, Any]) -> dict[str, Any]:
        return {"fullUrl": self._url(name), "resource": resource}

    def encounter(self) -> dict[str, Any]:
        s = self.summary
        resource: dict[str, Any] = {
            "resourceType": "Encounter",
            "status": "finished",
            # VR: a virtual encounter (teleconsultation), HL7 v3 ActCode.
            "class": {"system": ACT_CODE, "code": "VR", "display": "virtual"},
            "identifier": [{"system": SESSION_SYSTEM, "value": s.session_id}],
            "subject": self.subject,
            "period": {"start": _instant(s.started), "end": _instant(s.ended)},
            "location": [{"location": {"identifier": {"system": BOOTH_SYSTEM, "value": s.booth_id}}}],
        }
        if s.doctor_name:
            resource["participant"] = [{"individual": {"display": s.doctor_name}}]
        return resource

    def _observation(self, code: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}
            ],
            "code": code,
            "subject": self.subject,
            "encounter": {"reference": self.encounter_url},
            "effectiveDateTime": _instant(self.summary.ended),
        }

    def observations(self) -> list[dict[str, Any]]:
        readings = self.summary.readings
        entries = []
        for key, codes, unit in _SIMPLE:
            if key in readings:
                resource = self._observation(_concept(codes))
                resource["valueQuantity"] = _quantity(readings[key], unit)
                entries.append(self.entry(key, resource))
        if "systolic" in readings and "diastolic" in readings:
            resource = self._observation(_concept((BP_PANEL,)))
            resource["component"] = [
                {"code": _concept((SYSTOLIC,)), "valueQuantity": _quantity(readings["systolic"], MM_HG)},
                {"code": _concept((DIASTOLIC,)), "valueQuantity": _quantity(readings["diastolic"], MM_HG)},
            ]
            entries.append(self.entry("blood-pressure", resource))
        return entries

    def media(self, index: int, still: Still) -> dict[str, Any]:
        content: dict[str, Any] = {
            "contentType": still.mime,
            "size": len(still.data),
            # R4 Attachment.hash is the base64 SHA-1 of the data.
            "hash": base64.b64encode(hashlib.sha1(still.data, usedforsecurity=False).digest()).decode(),
            "title": f"{_CAMERA_TEXT.get(still.camera, still.camera)} {index + 1}",
        }
        if self.embed_stills:
            content["data"] = base64.b64encode(still.data).decode()
        resource: dict[str, Any] = {
            "resourceType": "Media",
            "status": "completed",
            "type": {"coding": [{"system": MEDIA_TYPE, "code": "image", "display": "Image"}]},
            "subject": self.subject,
            "encounter": {"reference": self.encounter_url},
            "device": {"display": _CAMERA_TEXT.get(still.camera, still.camera)},
            "content": content,
        }
        if still.taken is not None:
            resource["createdDateTime"] = _instant(still.taken)
        return self.entry(f"still-{index}", resource)

    def bundle(self) -> dict[str, Any]:
        s = self.summary
        entries = [self.entry("encounter", self.encounter()), *self.observations()]
        entries += [self.media(i, still) for i, still in enumerate(s.stills)]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid5(self._namespace, "bundle")),
            "identifier": {"system": SESSION_SYSTEM, "value": s.session_id},
            "type": "collection",
            "timestamp": _instant(s.ended),
            "entry": entries,
        }
        return bundle


def consultation_bundle(summary: ConsultationSummary, *, embed_stills: bool = True) -> dict[str, Any]:
    """The consultation as a FHIR R4 Bundle (a JSON-ready dict), checked against the R4 models.

    Raises :class:`DocumentError` (``INVALID_SUMMARY``) when the summary does not make valid resources;
    the message lists the failing fields (``entry -> 2 -> resource -> ...``), never their values.
    """
    data = _Builder(summary, embed_stills=embed_stills).bundle()
    validate_bundle(data)
    return data


def validate_bundle(data: Mapping[str, Any]) -> Bundle:
    """Parse ``data`` with the R4 ``Bundle`` model (every entry's resource with its own model)."""
    try:
        return Bundle.parse_obj(data)
    except (pydantic.ValidationError, TypeError, ValueError) as exc:
        fields = []
        if isinstance(exc, pydantic.ValidationError):
            fields = [" -> ".join(str(part) for part in error["loc"]) for error in exc.errors()]
        raise DocumentError(Reason.INVALID_SUMMARY, f"not a valid FHIR R4 bundle at: {'; '.join(fields)}") from None


def bundle_json(summary: ConsultationSummary, *, embed_stills: bool = True) -> bytes:
    """:func:`consultation_bundle` as UTF-8 JSON bytes (what the records writer seals)."""
    return json.dumps(consultation_bundle(summary, embed_stills=embed_stills), ensure_ascii=False).encode()
