"""The consultation's FHIR R4 bundle: codes, units, references, and validation by the fhir.resources R4 models."""

from __future__ import annotations

import dataclasses
import json
import math

import fhir.resources
import pytest
from fhir.resources.bundle import Bundle
from hypothesis import given
from hypothesis import strategies as st

from kiosk.documents.errors import DocumentError, Reason
from kiosk.documents.fhir import bundle_json, consultation_bundle, validate_bundle
from tests.documents.support import STILL, summary


def _resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _codes(resource: dict) -> list[str]:
    return [c["code"] for c in resource["code"]["coding"]]


def test_models_are_r4() -> None:
    assert fhir.resources.__fhir_version__ == "4.0.1"


def test_bundle_validates_and_round_trips() -> None:
    bundle = consultation_bundle(summary())
    model = validate_bundle(json.loads(bundle_json(summary())))
    assert isinstance(model, Bundle)
    assert model.type == "collection"
    assert [e.resource.resource_type for e in model.entry] == [
        "Encounter", "Observation", "Observation", "Observation", "Observation", "Media"
    ]  # fmt: skip
    # The model's own serialisation parses back to the same bundle.
    again = Bundle.parse_raw(model.json())
    assert len(again.entry) == len(bundle["entry"])


def test_vital_signs_codes_and_units() -> None:
    bundle = consultation_bundle(summary())
    observations = {_codes(o)[0]: o for o in _resources(bundle, "Observation")}
    assert set(observations) == {"59408-5", "8867-4", "8310-5", "85354-9"}
    spo2 = observations["59408-5"]
    assert _codes(spo2) == ["59408-5", "2708-6"]
    assert spo2["valueQuantity"] == {"value": 97.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    assert observations["8867-4"]["valueQuantity"]["code"] == "/min"
    assert observations["8310-5"]["valueQuantity"]["code"] == "Cel"
    assert observations["8310-5"]["valueQuantity"]["value"] == 37.4
    panel = observations["85354-9"]
    assert "valueQuantity" not in panel
    components = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in panel["component"]}
    assert components["8480-6"]["value"] == 128.0
    assert components["8462-4"]["value"] == 84.0
    assert {q["code"] for q in components.values()} == {"mm[Hg]"}
    for observation in observations.values():
        assert observation["status"] == "final"
        assert observation["category"][0]["coding"][0]["code"] == "vital-signs"
        assert all(c["system"] == "http://loinc.org" for c in observation["code"]["coding"])


def test_references_are_opaque_and_consistent() -> None:
    bundle = consultation_bundle(summary())
    encounter_url = bundle["entry"][0]["fullUrl"]
    (encounter,) = _resources(bundle, "Encounter")
    assert encounter["status"] == "finished"
    assert encounter["class"]["code"] == "VR"
    assert not _resources(bundle, "Patient")  # a logical reference only: the bundle names nobody
    for resource in [encounter, *_resources(bundle, "Observation"), *_resources(bundle, "Media")]:
        assert resource["subject"]["identifier"] == {"system": "urn:kiosk:patient-token", "value": "pt-5f1c2a9e"}
        if resource is not encounter:
            assert resource["encounter"]["reference"] == encounter_url
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])


def test_media_for_stills() -> None:
    (media,) = _resources(consultation_bundle(summary()), "Media")
    assert media["content"]["contentType"] == "image/jpeg"
    assert media["content"]["size"] == len(STILL)
    assert media["type"]["coding"][0]["code"] == "image"
    (light,) = _resources(consultation_bundle(summary(), embed_stills=False), "Media")
    assert "data" not in light["content"]
    assert light["content"]["hash"] == media["content"]["hash"]


def test_only_the_readings_taken() -> None:
    bundle = consultation_bundle(summary(readings={"systolic": 120.0}, stills=()))
    # A systolic value without its diastolic makes no panel; nothing else was measured.
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Encounter"]


def test_same_consultation_same_bundle() -> None:
    assert bundle_json(summary()) == bundle_json(summary())
    assert bundle_json(summary()) != bundle_json(summary(session_id="session-0002"))


def test_invalid_values_are_a_typed_error_without_the_value() -> None:
    with pytest.raises(DocumentError) as caught:
        consultation_bundle(summary(readings={"spo2": math.nan}))
    assert caught.value.reason is Reason.INVALID_SUMMARY
    assert "nan" not in str(caught.value).lower()
    assert "valueQuantity" in str(caught.value)


def test_validation_catches_a_broken_resource() -> None:
    bundle = consultation_bundle(summary())
    broken = json.loads(json.dumps(bundle))
    broken["entry"][1]["resource"]["status"] = 42
    del broken["entry"][1]["resource"]["code"]
    with pytest.raises(DocumentError) as caught:
        validate_bundle(broken)
    assert "entry -> 1 -> resource" in str(caught.value)


@given(
    readings=st.dictionaries(
        st.sampled_from(["spo2", "pulse", "systolic", "diastolic", "celsius"]),
        st.floats(min_value=0, max_value=400, allow_nan=False).map(lambda v: round(v, 1)),
    ),
    stills=st.lists(st.binary(min_size=1, max_size=64), max_size=3),
    language=st.sampled_from(["fr", "en", "es", "pt", "ar"]),
)
def test_any_plausible_summary_makes_a_valid_bundle(
    readings: dict[str, float], stills: list[bytes], language: str
) -> None:
    from kiosk.documents.summary import Still

    s = dataclasses.replace(summary(), readings=readings, stills=tuple(Still(d) for d in stills), language=language)
    bundle = consultation_bundle(s)
    validate_bundle(bundle)
    expected = len([k for k in ("spo2", "pulse", "celsius") if k in readings])
    expected += 1 if {"systolic", "diastolic"} <= set(readings) else 0
    assert len(_resources(bundle, "Observation")) == expected
    assert len(_resources(bundle, "Media")) == len(stills)
