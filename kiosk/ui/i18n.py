"""The patient app's strings: gettext catalogs, one ``kiosk.po`` per language.

Messages are keyed by stable ids (``consent.title``); French is the reference
text. Placeholders use :meth:`str.format` names (``{minutes}``) and every
translation keeps them.

The booth ships the ``.po`` sources; this module compiles them to ``.mo`` with
the standard library only (no ``msgfmt`` binary on the appliance), either in
memory or into a cache directory, and loads them with :mod:`gettext`.
"""

from __future__ import annotations

import ast
import gettext
import io
import struct
from dataclasses import dataclass
from pathlib import Path

DOMAIN = "kiosk"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES: tuple[str, ...] = ("fr", "en", "es", "pt", "ar")
REFERENCE = "fr"
_RTL = frozenset({"ar", "he", "fa", "ur"})


class CatalogError(ValueError):
    """A ``.po`` file does not parse."""

    def __init__(self, message: str, *, path: str, line: int) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line


@dataclass
class _Entry:
    msgctxt: str | None = None
    msgid: str | None = None
    msgstr: str | None = None
    fuzzy: bool = False


def is_rtl(lang: str) -> bool:
    """True for languages written right to left (Arabic)."""
    return lang.split("_")[0].split("-")[0].lower() in _RTL


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def parse_po(text: str, *, path: str = "<po>") -> dict[str, str]:
    """Parse a ``.po`` file into ``{msgid: msgstr}``; the header is under ``""``.

    Supports what our catalogs use: comments, ``#, fuzzy`` (skipped),
    ``msgctxt`` (joined as gettext does, with EOT), multi-line strings. Plural
    forms are refused: the kiosk's wording avoids them.
    """
    messages: dict[str, str] = {}
    entry = _Entry()
    current: str | None = None

    def finish(line: int) -> None:
        nonlocal entry, current
        if entry.msgid is not None:
            if entry.msgstr is None:
                raise CatalogError("msgid without msgstr", path=path, line=line)
            key = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
            if key in messages:
                raise CatalogError(f"duplicate msgid {entry.msgid!r}", path=path, line=line)
            if not entry.fuzzy or key == "":
                messages[key] = entry.msgstr
        elif entry.msgctxt is not None or entry.msgstr is not None:
            raise CatalogError("entry without msgid", path=path, line=line)
        entry = _Entry()
        current = None

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            finish(number)
            continue
        if line.startswith("#"):
            if entry.msgid is not None:
                finish(number)
            if line.startswith("#,") and "fuzzy" in (flag.strip() for flag in line[2:].split(",")):
                entry.fuzzy = True
            continue
        keyword, _, rest = line.partition(" ")
        if keyword in ("msgctxt", "msgid", "msgstr"):
            if keyword in ("msgctxt", "msgid") and entry.msgstr is not None:
                finish(number)
            if getattr(entry, keyword) is not None:
                raise CatalogError(f"repeated {keyword}", path=path, line=number)
            setattr(entry, keyword, _unquote(rest.strip(), path=path, line=number))
            current = keyword
        elif keyword in ("msgid_plural",) or keyword.startswith("msgstr["):
            raise CatalogError("plural forms are not supported", path=path, line=number)
        elif line.startswith('"'):
            if current is None:
                raise CatalogError("continuation line outside an entry", path=path, line=number)
            setattr(entry, current, getattr(entry, current) + _unquote(line, path=path, line=number))
        else:
            raise CatalogError(f"unexpected line {line[:30]!r}", path=path, line=number)
    finish(len(text.splitlines()) + 1)
    return messages


def _unquote(token: str, *, path: str, line: int) -> str:
    if len(token) < 2 or not (token.startswith('"') and token.endswith('"')):
        raise CatalogError("expected a quoted string", path=path, line=line)
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError) as exc:
        raise CatalogError(f"bad string: {exc}", path=path, line=line) from None
    if not isinstance(value, str):
        raise CatalogError("expected a quoted string", path=path, line=line)
    return value


def compile_mo(messages: dict[str, str]) -> bytes:
    """Build a GNU ``.mo`` file (the layout of CPython's ``Tools/i18n/msgfmt.py``)."""
    keys = sorted(messages)
    ids = b""
    strs = b""
    offsets: list[tuple[int, int, int, int]] = []
    for key in keys:
        kid = key.encode("utf-8")
        kstr = messages[key].encode("utf-8")
        offsets.append((len(ids), len(kid), len(strs), len(kstr)))
        ids += kid + b"\0"
        strs += kstr + b"\0"
    count = len(keys)
    header_size = 7 * 4
    key_table = header_size
    value_table = key_table + count * 8
    ids_start = value_table + count * 8
    strs_start = ids_start + len(ids)
    key_entries: list[int] = []
    value_entries: list[int] = []
    for id_off, id_len, str_off, str_len in offsets:
        key_entries += [id_len, ids_start + id_off]
        value_entries += [str_len, strs_start + str_off]
    output = struct.pack("<7I", 0x950412DE, 0, count, key_table, value_table, 0, 0)
    output += struct.pack(f"<{len(key_entries)}I", *key_entries)
    output += struct.pack(f"<{len(value_entries)}I", *value_entries)
    return output + ids + strs


def load_catalog(lang: str) -> dict[str, str]:
    """The messages of one language's ``.po`` file."""
    path = po_path(lang)
    return parse_po(path.read_text(encoding="utf-8"), path=str(path))


def compile_catalogs(cache_dir: Path, languages: tuple[str, ...] = LANGUAGES) -> Path:
    """Write ``<cache_dir>/<lang>/LC_MESSAGES/kiosk.mo`` for each language when missing or stale.

    Returns ``cache_dir``, ready to pass to :func:`gettext.translation` as ``localedir``.
    """
    for lang in languages:
        source = po_path(lang)
        target = cache_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".mo.tmp")
        partial.write_bytes(compile_mo(load_catalog(lang)))
        partial.replace(target)
    return cache_dir


def translation(lang: str, cache_dir: Path | None = None) -> gettext.NullTranslations:
    """The catalog for ``lang``, falling back to French, then to the msgids.

    With ``cache_dir``, ``.mo`` files are compiled there and loaded with
    :func:`gettext.translation`; without, they are compiled in memory.
    """
    fallback_lang = REFERENCE if lang != REFERENCE else None
    if cache_dir is not None:
        known = tuple(code for code in (lang, REFERENCE) if code in LANGUAGES)
        compile_catalogs(cache_dir, known)
        return gettext.translation(DOMAIN, localedir=str(cache_dir), languages=[lang, REFERENCE], fallback=True)
    if lang not in LANGUAGES:
        lang, fallback_lang = REFERENCE, None
    catalog = gettext.GNUTranslations(io.BytesIO(compile_mo(load_catalog(lang))))
    if fallback_lang is not None:
        catalog.add_fallback(gettext.GNUTranslations(io.BytesIO(compile_mo(load_catalog(fallback_lang)))))
    return catalog


class Translator:
    """What screens call: ``tr("waiting.estimate", minutes=12)``, with the language switchable at run time."""

    def __init__(self, lang: str = REFERENCE, cache_dir: Path | None = None) -> None:
        self._cache_dir = cache_dir
        self._catalogs: dict[str, gettext.NullTranslations] = {}
        self.lang = REFERENCE
        self.set_language(lang)

    def set_language(self, lang: str) -> None:
        if lang not in LANGUAGES:
            lang = REFERENCE
        if lang not in self._catalogs:
            self._catalogs[lang] = translation(lang, self._cache_dir)
        self.lang = lang

    @property
    def rtl(self) -> bool:
        return is_rtl(self.lang)

    def __call__(self, msgid: str, /, **values: object) -> str:
        text = self._catalogs[self.lang].gettext(msgid)
        return text.format(**values) if values else text
