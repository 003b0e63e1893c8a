"""One module and one ``.kv`` file per screen; :data:`SCREENS` maps each flow step's value to its class."""

from __future__ import annotations

from kiosk.ui import kivyenv  # noqa: F401  (Kivy's environment and settings, before any kivy import)

# isort: split

from kiosk.ui.screens.beneficiary import BeneficiaryScreen
from kiosk.ui.screens.cleaning import CleaningScreen
from kiosk.ui.screens.consent import ConsentScreen
from kiosk.ui.screens.consultation import ConsultationScreen
from kiosk.ui.screens.declined import DeclinedScreen
from kiosk.ui.screens.end import EndScreen
from kiosk.ui.screens.identification import IdentificationScreen
from kiosk.ui.screens.manual_entry import ManualEntryScreen
from kiosk.ui.screens.reason import ReasonScreen
from kiosk.ui.screens.selfcheck import SelfCheckScreen
from kiosk.ui.screens.staff import StaffScreen
from kiosk.ui.screens.staff_pin import StaffPinScreen
from kiosk.ui.screens.waiting import WaitingScreen
from kiosk.ui.screens.welcome import WelcomeScreen
from kiosk.ui.screens.wipe import WipeScreen
from kiosk.ui.widgets import BoothScreen

SCREENS: dict[str, type[BoothScreen]] = {
    "welcome": WelcomeScreen,
    "consent": ConsentScreen,
    "declined": DeclinedScreen,
    "identification": IdentificationScreen,
    "beneficiary": BeneficiaryScreen,
    "manual_entry": ManualEntryScreen,
    "reason": ReasonScreen,
    "selfcheck": SelfCheckScreen,
    "waiting": WaitingScreen,
    "consultation": ConsultationScreen,
    "end": EndScreen,
    "wipe": WipeScreen,
    "cleaning": CleaningScreen,
    "staff_pin": StaffPinScreen,
    "staff": StaffScreen,
}
