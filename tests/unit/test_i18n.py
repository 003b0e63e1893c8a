"""The patient app's catalogs: complete, parseable, placeholders kept, compiled with the stdlib only."""

from __future__ import annotations

import gettext
import io
import shutil
import string
import subprocess
from pathlib import Path

import pytest

from kiosk.ui import flow, i18n


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.fixture(scope="module")
def catalogs() -> dict[str, dict[str, str]]:
    return {lang: i18n.load_catalog(lang) for lang in i18n.LANGUAGES}


def test_five_languages_french_first() -> None:
    assert i18n.LANGUAGES == ("fr", "en", "es", "pt", "ar")
    assert flow.LANGUAGES == i18n.LANGUAGES
    for lang in i18n.LANGUAGES:
        assert i18n.po_path(lang).is_file()


def test_every_msgid_in_every_catalog_non_empty(catalogs: dict[str, dict[str, str]]) -> None:
    reference = set(catalogs["fr"]) - {""}
    assert len(reference) > 80
    for lang, messages in catalogs.items():
        assert set(messages) - {""} == reference, lang
        empty = [key for key in reference if not messages[key].strip()]
        assert not empty, (lang, empty)


def test_headers_declare_utf8_and_language(catalogs: dict[str, dict[str, str]]) -> None:
    for lang, messages in catalogs.items():
        assert "charset=UTF-8" in messages[""]
        assert f"Language: {lang}" in messages[""]


def test_placeholders_preserved(catalogs: dict[str, dict[str, str]]) -> None:
    for key, french in catalogs["fr"].items():
        if not key:
            continue
        expected = _placeholders(french)
        for lang, messages in catalogs.items():
            assert _placeholders(messages[key]) == expected, (lang, key)
    assert _placeholders(catalogs["fr"]["waiting.estimate"]) == {"minutes"}


def test_translations_are_translated(catalogs: dict[str, dict[str, str]]) -> None:
    # Language names and a few shared words stay the same; sentences never do.
    for lang in ("en", "es", "pt", "ar"):
        same = [k for k, v in catalogs[lang].items() if k and v == catalogs["fr"][k] and len(v.split()) > 2]
        assert not same, (lang, same)


def test_arabic_is_in_arabic_script(catalogs: dict[str, dict[str, str]]) -> None:
    for key, text in catalogs["ar"].items():
        if key.startswith("lang.") or not key:
            continue
        assert any("\u0600" <= char <= "\u06ff" for char in text), key


def test_flow_messages_exist(catalogs: dict[str, dict[str, str]]) -> None:
    needed = set(flow.PROMPTS.values()) | {"idle.title", "idle.body"}
    needed |= {f"failure.{kind.value}.{part}" for kind in flow.FailureKind for part in ("title", "body")}
    needed |= {f"measure.{kind.value}.{part}" for kind in flow.Measurement for part in ("title", "steps")}
    needed |= {f"reason.{reason.value}" for reason in flow.VisitReason}
    needed |= {f"lang.{lang}" for lang in i18n.LANGUAGES}
    needed |= {"measure.blood_pressure.confirm", "consultation.stop", "consultation.sas"}
    assert needed <= set(catalogs["fr"])


def test_rtl() -> None:
    assert i18n.is_rtl("ar")
    assert i18n.is_rtl("ar_MA")
    for lang in ("fr", "en", "es", "pt"):
        assert not i18n.is_rtl(lang)
    assert i18n.Translator("ar").rtl
    assert not i18n.Translator("fr").rtl


def test_mo_round_trip_through_gettext() -> None:
    messages = {"": "Content-Type: text/plain; charset=UTF-8\n", "a": "b", "clé": "valeur é", "z.z": "العربية"}
    catalog = gettext.GNUTranslations(io.BytesIO(i18n.compile_mo(messages)))
    assert catalog.gettext("a") == "b"
    assert catalog.gettext("clé") == "valeur é"
    assert catalog.gettext("z.z") == "العربية"
    assert catalog.gettext("missing") == "missing"


def test_compiled_into_cache_dir_and_loaded_with_gettext_translation(tmp_path: Path) -> None:
    i18n.compile_catalogs(tmp_path)
    for lang in i18n.LANGUAGES:
        assert (tmp_path / lang / "LC_MESSAGES" / "kiosk.mo").is_file()
        catalog = gettext.translation("kiosk", localedir=str(tmp_path), languages=[lang])
        assert catalog.gettext("consent.accept") == i18n.load_catalog(lang)["consent.accept"]
    assert i18n.translation("es", tmp_path).gettext("common.yes") == "Sí"


def test_translator_formats_and_switches() -> None:
    tr = i18n.Translator("fr")
    assert tr("waiting.estimate", minutes=12) == "Attente estimée : environ 12 min."
    tr.set_language("en")
    assert tr("waiting.estimate", minutes=12) == "Estimated wait: about 12 min."
    tr.set_language("xx")
    assert tr.lang == "fr"
    assert tr("no.such.key") == "no.such.key"


def test_unknown_language_falls_back_to_french() -> None:
    assert i18n.translation("de").gettext("consent.accept") == "J'accepte"


PO_SAMPLE = """# comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"

#. for translators
msgid "a"
msgstr "first "
"second \\"quoted\\""

#, fuzzy
msgid "fuzzy"
msgstr "skipped"

msgctxt "ctx"
msgid "b"
msgstr "with context"
"""


def test_po_parser() -> None:
    messages = i18n.parse_po(PO_SAMPLE)
    assert messages["a"] == 'first second "quoted"'
    assert "fuzzy" not in messages
    assert messages["ctx\x04b"] == "with context"


@pytest.mark.parametrize(
    "text",
    [
        'msgid "a"\n',
        'msgid "a"\nmsgstr "x"\nmsgid "a"\nmsgstr "y"\n',
        'msgid "a"\nmsgid_plural "as"\nmsgstr[0] "x"\n',
        'msgid a\nmsgstr "x"\n',
        '"orphan"\n',
        'msgid "a"\nmsgstr "x"\ngarbage\n',
        'msgstr "x"\n',
    ],
)
def test_po_parser_rejects(text: str) -> None:
    with pytest.raises(i18n.CatalogError):
        i18n.parse_po(text)


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext's msgfmt is not installed")
@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_same_result_as_gnu_msgfmt(lang: str, tmp_path: Path) -> None:
    mo = tmp_path / "kiosk.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(mo), str(i18n.po_path(lang))], check=True)
    with mo.open("rb") as handle:
        gnu = gettext.GNUTranslations(handle)
    ours = gettext.GNUTranslations(io.BytesIO(i18n.compile_mo(i18n.load_catalog(lang))))
    for key in i18n.load_catalog(lang):
        if key:
            assert ours.gettext(key) == gnu.gettext(key), key
