"""Text as Kivy should draw it: right-to-left languages shaped and reordered, wrapped in logical order.

Kivy lays glyphs out left to right and knows nothing of Arabic letter forms.
So Arabic is shaped first (``arabic_reshaper``: each letter takes its joined
form), then put in display order (``bidi``'s ``get_display``, the Unicode
bidirectional algorithm). Reordering a whole paragraph and letting Kivy wrap it
would put the paragraph's *last* words on the first line, so RTL paragraphs are
wrapped here, in reading order, and each line is reordered on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import arabic_reshaper
from bidi import get_display

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
"""DejaVu Sans (Debian's fonts-dejavu-core): Latin and Arabic glyphs in one font."""
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
FONT_NAME = "Booth"


def shape_line(text: str) -> str:
    """One line of RTL text in display order, letters joined."""
    return str(get_display(arabic_reshaper.reshape(text)))


def shape(text: str, rtl: bool) -> str:
    """``text`` ready for a single-line Kivy label (no wrapping)."""
    if not rtl or not text:
        return text
    return "\n".join(shape_line(line) for line in text.split("\n"))


def wrap_rtl(text: str, width: float, measure: Callable[[str], float]) -> str:
    """Wrap RTL ``text`` to ``width`` (``measure`` gives a shaped string's width) and shape each line."""
    out: list[str] = []
    for paragraph in text.split("\n"):
        words = arabic_reshaper.reshape(paragraph).split()
        line: list[str] = []
        for word in words:
            candidate = " ".join([*line, word])
            if line and measure(str(get_display(candidate))) > width:
                out.append(" ".join(line))
                line = [word]
            else:
                line.append(word)
        out.append(" ".join(line))
    return "\n".join(str(get_display(line)) for line in out)


def has_rtl_script(text: str) -> bool:
    """True when ``text`` holds Arabic letters (logical or presentation forms)."""
    return any("\u0600" <= c <= "\u06ff" or "\ufb50" <= c <= "\ufefc" for c in text)


def is_shaped(text: str) -> bool:
    """True when Arabic letters in ``text`` are in presentation forms (what Kivy must be given)."""
    letters = [c for c in text if "\u0621" <= c <= "\u064a"]
    forms = [c for c in text if "\ufb50" <= c <= "\ufefc"]
    return bool(forms) and len(letters) == 0
