"""``python -m kiosk.demo``: for now, the peripherals-only demo."""

import sys

from kiosk.demo.devices import main

sys.exit(main())
