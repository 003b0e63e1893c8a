"""``make demo``: the whole product on one machine.

Reusable pieces, each usable on its own:

* :mod:`kiosk.demo.hub`: a development hub (``kiosk-hub init --dev`` + ``kiosk-hub serve``) in a subprocess;
* :mod:`kiosk.demo.browser`: Debian's Chromium through Playwright, trusting the hub's development CA;
* :mod:`kiosk.demo.doctor`: a scripted doctor driving the real console page;
* :mod:`kiosk.demo.card`: a virtual Carte Vitale on a private pcscd;
* :mod:`kiosk.demo.devices`: the peripherals-only demo (emulated devices and card reader).
"""
