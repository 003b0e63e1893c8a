"""Turning a Debian 12 box (or a root filesystem) into a hardened, enrolled booth.

``kiosk-provision --config FILE [--root DIR] [--dry-run | --check]``: each step
(``provisioning/steps/<name>.py``) lists the changes the booth needs; the engine
(``provisioning/core.py``) applies those not yet applied, so a second run
changes nothing and ``--check`` reports drift.
"""
