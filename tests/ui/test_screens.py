"""Every screen in every language under Xvfb: screenshots kept, text never clipped, targets large enough,
right-to-left mirrored in Arabic; a whole patient flow by touch; the idle timeout on the real clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ui.driver import SHOTS, VARIANTS

# The first test waits for the whole driver run (about a minute; more on a loaded machine).
pytestmark = pytest.mark.timeout(300)


def test_driver_ran_without_errors(ui_report: dict[str, Any]) -> None:
    assert ui_report["errors"] == []


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shot", SHOTS)
def test_screen_renders_without_clipping(ui_report: dict[str, Any], variant: str, shot: str) -> None:
    taken = ui_report["shots"].get(variant, {}).get(shot)
    assert taken is not None, f"no screenshot of {shot} in {variant}"
    path = Path(taken["path"])
    assert path.is_file() and path.stat().st_size > 5000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert taken["problems"] == [], taken["problems"]
    expected_top = {"measure_oximeter": "consultation", "identification_reading": "identification"}
    top = expected_top.get(shot, shot)
    if not shot.startswith("measure_"):
        assert taken["showing"][0] == top


def test_wipe_screen(ui_report: dict[str, Any]) -> None:
    taken = ui_report["shots"]["fr"]["wipe"]
    assert taken["showing"][0] == "wipe"
    assert taken["problems"] == []


@pytest.mark.parametrize("variant", ["ar", "ar-large"])
def test_arabic_layout_is_mirrored(ui_report: dict[str, Any], variant: str) -> None:
    mirror = ui_report["mirror"][variant]
    middle = mirror["window"] / 2
    assert mirror["back"] > middle, "the back button is on the right in Arabic"
    assert mirror["back"] > mirror["consent_accept"]
    assert mirror["consent_accept"] < mirror["consent_decline"], "the row reads right to left"
    assert mirror["large_text"] < middle


@pytest.mark.parametrize("variant", ["fr", "en", "es", "pt", "fr-large"])
def test_left_to_right_layout(ui_report: dict[str, Any], variant: str) -> None:
    mirror = ui_report["mirror"][variant]
    assert mirror["back"] < mirror["consent_decline"] < mirror["consent_accept"]
    assert mirror["large_text"] > mirror["window"] / 2


def test_whole_flow_by_touch(ui_report: dict[str, Any]) -> None:
    flow = ui_report["flow"]
    assert flow.get("ok"), ui_report["errors"]
    assert flow["steps"][:11] == [
        "welcome",
        "consent",
        "identification",
        "beneficiary",
        "reason",
        "waiting",
        "consultation",
        "end",
        "cleaning",
        "staff_pin",
        "staff",
    ]
    assert flow["chosen_beneficiary"] == 1
    assert flow["announced"]
    assert "2" in flow["waiting_text"] and "5" in flow["waiting_text"]
    assert "1" in flow["waiting_text_updated"] and "2 min" in flow["waiting_text_updated"]
    assert flow["sas_digits"] == "042 917"
    assert flow["sas_words"].split(" · ") == ["abricot", "baleine", "citron", "dauphin"]
    assert flow["doctor_picture"] and flow["self_picture"]
    doctor_w, doctor_h = flow["doctor_view_size"]
    self_w, self_h = flow["self_view_size"]
    assert doctor_w * doctor_h > 4 * self_w * self_h, "the doctor large, the patient small"
    # The booth camera is read for the screen only while a screen shows it.
    assert flow["self_view_watchers_in_call"] == 1
    assert flow["self_view_watchers_after_wipe"] == 0
    assert flow["chat_sent"][-1] == "J'ai mal à la gorge"
    assert flow["cuff_waits_for_patient"], "the cuff must not inflate before the patient confirms"
    assert flow["cuff_allowed_after_confirm"] is True
    assert flow["stop_sent"] and flow["measurement_after_stop"] is None
    assert "98" in flow["readings"] and "66" in flow["readings"]
    assert flow["patient_data_after_wipe"] is False
    assert flow["bad_date_refused"] and flow["manual_fields_cleared"]
    assert flow["keyboard_shown"], "touching a field brings up the on-screen keyboard"
    assert flow["manual_field_above_keyboard"]
    assert flow["chat_keyboard_shown"] and flow["chat_field_above_keyboard"]
    assert flow["stop_above_keyboard"], "STOP stays visible while the patient types"
    assert flow["steps"][-6:] == ["quit", "wipe", "cleaning", "staff_pin", "staff", "welcome"]


def test_idle_warning_then_wipe(ui_report: dict[str, Any]) -> None:
    idle = ui_report["idle"]
    assert idle.get("ok"), ui_report["errors"]
    assert idle["warning_after"] < 5  # due 0.8 s after the last touch (Timeout(2.0, warn=1.2))
    assert 0 <= idle["countdown"] <= 2
    assert idle["still_consent_after_continue"]
    assert idle["wiped"] and idle["language_reset"] == "fr"


def test_kivy_writes_nothing_to_home(ui_report: dict[str, Any]) -> None:
    # No ~/.kivy: no log file, no config.ini that could outlive a session.
    assert ui_report["home_after"] == []
