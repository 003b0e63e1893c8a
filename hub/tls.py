"""TLS contexts of the hub's two listeners, and of the clients that talk to them.

TLS 1.3 only, on both listeners (ARCHITECTURE.md, "End-to-end security
model"): a ClientHello offering at most TLS 1.2 fails the handshake. The
booth listener also requires a client certificate that chains to the fleet
CA (CERT_REQUIRED): no certificate, or one from another CA, fails the
handshake before any HTTP is read.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def _tls13_server(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(cert_file, key_file)
    return context


def doctor_server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The doctors' HTTPS listener: TLS 1.3 only, no client certificate."""
    context = _tls13_server(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


def booth_server_context(cert_file: Path, key_file: Path, fleet_ca_file: Path) -> ssl.SSLContext:
    """The booths' listener: TLS 1.3 only, client certificate required and verified against the fleet CA."""
    context = _tls13_server(cert_file, key_file)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(fleet_ca_file))
    # Partial chains would let any intermediate in the file act as a root; only the fleet CA is trusted.
    context.verify_flags &= ~getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def client_context(fleet_ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    """A client of the hub (a booth with its certificate, or a test): TLS 1.3, hub verified against the fleet CA."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(fleet_ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context
