"""Sealed records, store and forward: the booth seals what a session produces and uploads it to the hub.

:mod:`kiosk.records.seal` is the format (sans-IO), :mod:`kiosk.records.spool`
the atomic on-disk queue and :class:`RecordsWriter`, :mod:`kiosk.records.uploader`
the ``kiosk-uploader`` service.
"""

from kiosk.records.seal import FormatError, RecordError
from kiosk.records.spool import RecordsWriter, Spool, SpoolError

__all__ = ["FormatError", "RecordError", "RecordsWriter", "Spool", "SpoolError"]
