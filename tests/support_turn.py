"""A real coturn ``turnserver`` on 127.0.0.1 for tests (Debian package ``coturn``).

:func:`running_turnserver` writes a temporary configuration (REST-API shared
secret, a TLS listener with a freshly generated self-signed certificate for
IP 127.0.0.1, no CLI, loopback peers allowed, a small relay port range),
starts the daemon, waits until it accepts TCP connections and stops it
afterwards. Tests skip when ``turnserver`` is not installed.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
REALM = "kiosk.test"


@dataclass(frozen=True)
class TurnServer:
    """Where the test TURN server listens and how to authenticate."""

    port: int
    """TURN over UDP and TCP."""
    tls_port: int
    """TURN over TLS (TCP)."""
    secret: str
    """coturn ``static-auth-secret``."""
    ca_file: Path
    """The self-signed certificate of the TLS listener (trust it via ``SSL_CERT_FILE``)."""
    log_file: Path


def turnserver_path() -> str | None:
    """The ``turnserver`` binary, or ``None`` when coturn is not installed."""
    return shutil.which("turnserver") or next(
        (p for p in ("/usr/bin/turnserver", "/usr/sbin/turnserver") if Path(p).exists()), None
    )


def _free_port() -> int:
    # Free for both UDP and TCP, as coturn listens on both.
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "turn.kiosk.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "turn-cert.pem", directory / "turn-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"turnserver exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("turnserver did not start listening in time")


@contextlib.contextmanager
def running_turnserver(directory: Path, *, timeout: float = 10.0) -> Iterator[TurnServer]:
    """Run coturn on 127.0.0.1 for the duration of the block."""
    binary = turnserver_path()
    if binary is None:
        raise FileNotFoundError("turnserver (Debian package coturn) is not installed")
    port, tls_port = _free_port(), _free_port()
    min_port = random.randrange(40_000, 60_000, 100)
    cert_file, key_file = _self_signed(directory)
    secret = secrets.token_urlsafe(24)
    log_file = directory / "turnserver.log"
    config = directory / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                f"listening-ip={HOST}",
                f"relay-ip={HOST}",
                f"listening-port={port}",
                f"tls-listening-port={tls_port}",
                # Nobody uses the alternate ports; keep them off other tests' ports.
                "alt-listening-port=0",
                "alt-tls-listening-port=0",
                f"min-port={min_port}",
                f"max-port={min_port + 49}",
                "use-auth-secret",
                f"static-auth-secret={secret}",
                f"realm={REALM}",
                f"cert={cert_file}",
                f"pkey={key_file}",
                "no-dtls",
                "no-tlsv1",
                "no-tlsv1_1",
                "no-cli",
                "no-multicast-peers",
                "allow-loopback-peers",
                "fingerprint",
                "no-software-attribute",
                f"log-file={log_file}",
                "simple-log",
                f"pidfile={directory / 'turnserver.pid'}",
                "",
            ]
        )
    )
    process = subprocess.Popen(
        [binary, "-c", str(config), "--no-stdout-log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process, timeout)
        _wait_listening(tls_port, process, timeout)
        yield TurnServer(port, tls_port, secret, cert_file, log_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
