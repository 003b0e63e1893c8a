"""The demo card's identity file (``DEMO_CARD``): accepted shapes and typed refusals. Synthetic identities."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.demo.card import DemoCard
from kiosk.identity.identity import nir_key
from kiosk.identity.virtual.cards import (
    IDENTITY_KEYS,
    IdentityFileError,
    IdentityFileReason,
    make_card,
    parse_identity,
    synthetic_nir,
)

BIRTH = datetime.date(1990, 7, 14)
NIR = synthetic_nir(2, BIRTH, 5)
GOOD = {"surname": "ESSAIVAL", "first_name": "Léonie", "birth_date": "1990-07-14", "nir": NIR}


def refused(document: object) -> IdentityFileReason:
    with pytest.raises(IdentityFileError) as info:
        parse_identity(json.dumps(document))
    return info.value.reason


def test_one_object() -> None:
    (person,) = parse_identity(json.dumps(GOOD))
    assert (person.surname, person.first_name, person.birth_date, person.nir) == ("ESSAIVAL", "Léonie", BIRTH, NIR)


def test_a_list_and_the_beneficiaries_key() -> None:
    child = {**GOOD, "first_name": "Aubin", "birth_date": "2015-02-27", "nir": synthetic_nir(1, BIRTH, 6)}
    assert len(parse_identity(json.dumps([GOOD, child]))) == 2
    assert [p.first_name for p in parse_identity(json.dumps({"beneficiaries": [GOOD, child]}))] == ["Léonie", "Aubin"]


def test_nir_with_spaces_and_without_key() -> None:
    spaced = " ".join([NIR[:1], NIR[1:3], NIR[3:5], NIR[5:7], NIR[7:10], NIR[10:13], NIR[13:]])
    assert parse_identity(json.dumps({**GOOD, "nir": spaced}))[0].nir == NIR
    assert parse_identity(json.dumps({**GOOD, "nir": NIR[:13]}))[0].nir == NIR[:13] + f"{nir_key(NIR[:13]):02d}"


@pytest.mark.parametrize("key", IDENTITY_KEYS)
def test_missing_key_is_named(key: str) -> None:
    with pytest.raises(IdentityFileError, match=key) as info:
        parse_identity(json.dumps({k: v for k, v in GOOD.items() if k != key}))
    assert info.value.reason is IdentityFileReason.MISSING_KEYS


@pytest.mark.parametrize("date", ["1990-13-14", "14/07/1990", "", 19900714, None, "1899-12-31", "2999-01-01"])
def test_bad_birth_date(date: object) -> None:
    assert refused({**GOOD, "birth_date": date}) is IdentityFileReason.BAD_DATE


@pytest.mark.parametrize(
    "nir",
    [
        NIR[:13] + f"{(int(NIR[13:]) % 97) + 1:02d}",  # wrong key
        "290079999900",  # too short
        "9900799999005",  # no such sex digit
        "2 90 07 99 999 005 99 1",  # too long
        1234567890123,
        None,
    ],
)
def test_bad_nir(nir: object) -> None:
    assert refused({**GOOD, "nir": nir}) is IdentityFileReason.BAD_NIR


@pytest.mark.parametrize("name", ["", "   ", 42, None, "Zoë\n", "Łucja", "X" * 65])
def test_bad_name(name: object) -> None:
    assert refused({**GOOD, "first_name": name}) is IdentityFileReason.BAD_VALUE


@pytest.mark.parametrize("document", [[], "text", 3, [GOOD, "x"], {"beneficiaries": []}, [GOOD] * 17])
def test_bad_shape(document: object) -> None:
    assert refused(document) is IdentityFileReason.BAD_SHAPE


def test_not_json() -> None:
    with pytest.raises(IdentityFileError) as info:
        parse_identity('{"surname": "ESSAIVAL",')
    assert info.value.reason is IdentityFileReason.NOT_JSON


def test_messages_never_quote_the_file() -> None:
    with pytest.raises(IdentityFileError) as info:
        parse_identity(json.dumps({**GOOD, "nir": NIR[:13] + "00"}))
    assert "ESSAIVAL" not in str(info.value) and NIR[:13] not in str(info.value)


def test_identity_from_env(tmp_path: Path) -> None:
    assert DemoCard.identity_from_env({}) is None
    path = tmp_path / "card.json"
    path.write_text(json.dumps(GOOD), encoding="utf-8")
    (person,) = DemoCard.identity_from_env({"DEMO_CARD": str(path)}) or []
    assert person.nir == NIR
    with pytest.raises(IdentityFileError) as info:
        DemoCard.identity_from_env({"DEMO_CARD": str(tmp_path / "absent.json")})
    assert info.value.reason is IdentityFileReason.UNREADABLE
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(IdentityFileError) as info:
        DemoCard.identity_from_env({"DEMO_CARD": str(path)})
    assert info.value.reason is IdentityFileReason.UNREADABLE


def test_demo_card_kind() -> None:
    assert DemoCard(Path("unused")).kind == "family"
    assert DemoCard(Path("unused"), parse_identity(json.dumps(GOOD))).kind == "vitale"
    assert [p.first_name for p in DemoCard(Path("unused")).expected()] == ["ORIANE", "NILO", "YSALINE"]


# -- malformed input: a typed refusal, never another exception ---------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(["1990-07-14", "2011-09-14", NIR, NIR[:13], "FICTIVAZ", "ÉLOÏSE"]),
    st.dates().map(datetime.date.isoformat),
    st.text(alphabet="0123456789AB ", min_size=11, max_size=17),
)
beneficiaries = st.fixed_dictionaries({}, optional={key: field_values for key in IDENTITY_KEYS})


def accepted_or_refused(text: str) -> None:
    try:
        people = parse_identity(text)
    except IdentityFileError as exc:
        reason: IdentityFileReason | None = exc.reason
    else:
        reason = None
    if reason is not None:
        return
    assert people
    for person in people:
        assert len(person.nir) == 15
        make_card("vitale", people)  # whatever is accepted fits on a card


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    accepted_or_refused(text)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json(value: object) -> None:
    accepted_or_refused(json.dumps(value))


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        beneficiaries,
        st.lists(beneficiaries, max_size=3),
        st.builds(lambda b: {"beneficiaries": b}, st.lists(beneficiaries, max_size=3)),
    )
)
def test_near_miss_identities(document: object) -> None:
    accepted_or_refused(json.dumps(document))
