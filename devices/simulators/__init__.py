"""Firmware emulators of the booth's peripherals, for tests and the demo."""
