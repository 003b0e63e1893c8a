"""Kivy's environment, set before Kivy is first imported.

Kivy writes a log file and a ``config.ini`` under ``~/.kivy`` and parses
``sys.argv`` as soon as it is imported. On the booth neither is wanted: a log
file could outlive the session, and the app's arguments are not Kivy's. Import
this module (``kiosk.ui.app`` does, first) or call :func:`configure` before any
``import kivy``.
"""

from __future__ import annotations

import os
import sys
import tempfile


def configure(kivy_home: str | None = None) -> str:
    """Point ``KIVY_HOME`` at ``kivy_home`` (else ``$KIVY_HOME``, else a fresh temporary directory); no log file,
    no argument parsing, no config file, Kivy's messages through :mod:`logging`. Returns ``KIVY_HOME``.
    """
    if "kivy" in sys.modules and kivy_home is not None and os.environ.get("KIVY_HOME") != kivy_home:
        raise RuntimeError("kivy was imported before its environment was set")
    home = kivy_home or os.environ.get("KIVY_HOME") or tempfile.mkdtemp(prefix="kiosk-kivy-")
    os.makedirs(home, mode=0o700, exist_ok=True)
    os.environ["KIVY_HOME"] = home
    os.environ["KIVY_NO_FILELOG"] = "1"
    os.environ["KIVY_NO_ARGS"] = "1"
    os.environ["KIVY_NO_CONFIG"] = "1"
    os.environ["KIVY_LOG_MODE"] = "PYTHON"
    os.environ.setdefault("KIVY_EVENTLOOP", "asyncio")
    return home


configure()
