"""The console's files as served: JavaScript syntax (node --check), markup that the CSP allows, test hooks.

No browser needed. The page runs under ``default-src 'self'``: any inline script, inline style
attribute, inline event handler or external resource would be blocked there, so none may exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "hub" / "static"
MODULES = sorted((STATIC / "js").glob("*.js"))
TEST_IDS = """
    login-username login-password login-submit totp-code totp-submit webauthn-login register-key queue-entry
    accept sas-digits sas-words sas-verified binding-status vital-spo2 vital-pulse pleth-canvas bp-start bp-abort
    cuff-pressure bp-result temp-read temp-result camera-select still-capture gallery-item steth-toggle oxi-toggle
    chat-input chat-send chat-log file-input file-received end-call logout call-status
""".split()  # noqa: SIM905 - the hooks the brief names, as text


class Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.test_ids: set[str] = set()
        self.resources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...> is inline code or style")
        if tag == "script" and values.get("src") is None:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("inline <style>")
        for name in ("src", "href"):
            value = values.get(name)
            if value and tag in ("script", "link", "img", "iframe"):
                self.resources.append(value)
        if values.get("data-testid"):
            self.test_ids.add(str(values["data-testid"]))


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_module_syntax(module: Path, tmp_path: Path) -> None:
    # Node 20 reads a .js file as CommonJS and does not report errors after an import statement:
    # check a .mjs copy, which is parsed as the ES module the browser loads.
    copy = tmp_path / (module.stem + ".mjs")
    copy.write_text(module.read_text())
    result = subprocess.run(["node", "--check", str(copy)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_markup_is_csp_clean_and_has_the_test_hooks() -> None:
    markup = Markup()
    markup.feed((STATIC / "index.html").read_text())
    assert markup.problems == []
    assert all(resource.startswith("/static/") for resource in markup.resources), markup.resources
    # Hooks made by the scripts (one per queue entry, received file or still) are in the sources.
    sources = "\n".join(path.read_text() for path in MODULES)
    created = set(re.findall(r'testid: "([a-z0-9-]+)"', sources))
    missing = [test_id for test_id in TEST_IDS if test_id not in markup.test_ids | created]
    assert missing == []


def test_scripts_never_use_eval_or_inline_html() -> None:
    for module in MODULES:
        source = module.read_text()
        for pattern in (
            r"\beval\(",
            r"new Function\(",
            r"\.innerHTML\b",
            r"\.outerHTML\b",
            r"insertAdjacentHTML",
            r"setAttribute\(\"style\"",
            r"https?://",
        ):
            assert re.search(pattern, source) is None, f"{module.name}: {pattern}"
