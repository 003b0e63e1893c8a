"""The booth's side of enrolment: its key, its certificate signing request, its certificate and renewal.

``kiosk-enrol enrol`` makes the booth's key, sends a CSR with the one-time
token to the hub's ``POST /api/enrol``, checks the certificate that comes back
against the fleet CA and the key, and installs ``booth.key`` + ``booth.pem`` in
the identity directory. ``kiosk-enrol renew`` does the same over mutual TLS
(``POST /renew`` on the booth listener) with a new key when the certificate
expires within the renewal window. See :mod:`hub.enrolment` for the hub's side.
"""
