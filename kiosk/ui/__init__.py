"""The patient app: a sans-IO flow (:mod:`kiosk.ui.flow`), its catalogs (:mod:`kiosk.ui.i18n`), and the screens."""
