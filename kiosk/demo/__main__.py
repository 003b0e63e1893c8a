"""``python -m kiosk.demo`` (``make demo``): the whole product on one machine; see :mod:`kiosk.demo.consultation`.

The peripherals-only walk-through is ``python -m kiosk.demo.devices``.
"""

import sys

from kiosk.demo.consultation import main

sys.exit(main())
