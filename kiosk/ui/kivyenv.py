"""Kivy's environment, set before Kivy is first imported, and the booth's Kivy settings.

Kivy writes a log file and a ``config.ini`` under ``~/.kivy`` and parses
``sys.argv`` as soon as it is imported. On the booth neither is wanted: a log
file could outlive the session, and the app's arguments are not Kivy's. This
module sets the environment when first imported (``kiosk.ui.app`` and the
widget modules import it first); set ``KIVY_HOME`` before that to choose where
Kivy may keep its (empty) home, else a fresh temporary directory is used.

Then, before the window opens: Kivy's on-screen keyboard docked at the bottom
(a touchscreen booth has no keyboard), Escape does not close the app, a right
click does not leave multitouch dots.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile


def configure(kivy_home: str | None = None) -> str:
    """Point ``KIVY_HOME`` at ``kivy_home`` (else ``$KIVY_HOME``, else a fresh temporary directory); no log file,
    no argument parsing, no config file, Kivy's messages through :mod:`logging`. Returns ``KIVY_HOME``.
    """
    if "kivy" in sys.modules:
        # Too late for the environment; say so loudly rather than break the caller.
        logging.getLogger(__name__).error("kivy was imported before kiosk.ui.kivyenv: it may write to ~/.kivy")
    home = kivy_home or os.environ.get("KIVY_HOME") or tempfile.mkdtemp(prefix="kiosk-kivy-")
    os.makedirs(home, mode=0o700, exist_ok=True)
    os.environ["KIVY_HOME"] = home
    os.environ["KIVY_NO_FILELOG"] = "1"
    os.environ["KIVY_NO_ARGS"] = "1"
    os.environ["KIVY_NO_CONFIG"] = "1"
    os.environ["KIVY_LOG_MODE"] = "PYTHON"
    os.environ.setdefault("KIVY_EVENTLOOP", "asyncio")
    return home


def _settings() -> None:
    from kivy.config import Config

    Config.set("kivy", "keyboard_mode", "dock")
    Config.set("kivy", "keyboard_layout", "azerty")
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("input", "mouse", "mouse,disable_multitouch")


configure()
_settings()
