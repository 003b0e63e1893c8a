"""The booth's identity directory: ``booth.key`` (0600) and ``booth.pem``, in a 0700 directory.

Every file is written atomically (a temporary file in the same directory,
fsync, rename, fsync of the directory), so a power cut leaves the old file or
the new one, never half of one. A key and its certificate are two files and
cannot be swapped in one rename: a new pair is first written as
``booth.key.pending`` + ``booth.pem.pending``, then renamed key first,
certificate second. :meth:`IdentityDir.finish_pending` completes a swap a
crash interrupted (it runs before every enrolment and renewal), so the pair
in place always ends up matching. The pending key is written *before* the hub
is asked, and reused by the next attempt until its certificate is installed:
an answer lost on the way is asked for again with the same key.

Key storage: a file. A TPM (``/dev/tpmrm0``) is detected and reported, but
not used yet: the booth's key must also serve Python's TLS stack (``ssl``
loads keys from files only; a TPM key needs the tpm2 OpenSSL provider) and
the DTLS-fingerprint signature, so moving it into the TPM is a separate step
(see the README, "Enrolment").
"""

from __future__ import annotations

import datetime
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import EnrolError, Reason

KEY_FILE: Final = "booth.key"
CERT_FILE: Final = "booth.pem"
PENDING: Final = ".pending"
TPM_DEVICES: Final = (Path("/dev/tpmrm0"), Path("/dev/tpm0"))


def tpm_present(devices: tuple[Path, ...] = TPM_DEVICES) -> bool:
    """Whether the machine has a TPM character device (resource manager or raw)."""
    return any(device.exists() for device in devices)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (created with ``mode``, never wider) in one rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (the only type the hub certifies)."""
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def same_key(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    """Whether ``certificate`` certifies ``key``."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return certificate.public_key().public_bytes(serialization.Encoding.DER, spki) == key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )


@dataclass(frozen=True)
class Identity:
    """The installed key and certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def expires_within(self, window: datetime.timedelta, now: datetime.datetime) -> bool:
        return self.certificate.not_valid_after_utc - now <= window


class IdentityDir:
    """``booth.key`` and ``booth.pem`` in ``root`` (created 0700)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def key_path(self) -> Path:
        return self.root / KEY_FILE

    @property
    def cert_path(self) -> Path:
        return self.root / CERT_FILE

    def _pending(self, path: Path) -> Path:
        return path.with_name(path.name + PENDING)

    def prepare(self) -> None:
        """Create the directory owner-only; refuse one that others can write into or read."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.root.stat()
        except OSError as exc:
            raise EnrolError(Reason.IDENTITY, f"cannot create {self.root}: {exc.strerror}") from exc
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Only our own, freshly made or already private, directories are tightened silently; a shared
            # directory someone else owns is not ours to change.
            if info.st_uid != os.geteuid():
                raise EnrolError(Reason.IDENTITY, f"{self.root} is open to other users and not ours to fix")
            os.chmod(self.root, 0o700)

    def load(self) -> Identity | None:
        """The installed pair, None when there is none; an unreadable or mismatched pair is an error."""
        self.finish_pending()
        if not self.key_path.exists() and not self.cert_path.exists():
            return None
        key = self._load_key(self.key_path)
        certificate = self._load_certificate(self.cert_path)
        if not same_key(certificate, key):
            raise EnrolError(Reason.IDENTITY, f"{CERT_FILE} does not certify {KEY_FILE}")
        return Identity(key, certificate)

    def _load_key(self, path: Path) -> ec.EllipticCurvePrivateKey:
        try:
            if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise EnrolError(Reason.IDENTITY, f"{path.name} is readable by other users")
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise EnrolError(Reason.IDENTITY, f"cannot read {path.name}: {exc.strerror}") from exc
        except (ValueError, TypeError) as exc:
            raise EnrolError(Reason.IDENTITY, f"{path.name} is not a PEM private key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise EnrolError(Reason.IDENTITY, f"{path.name} is not an ECDSA key")
        return key

    def _load_certificate(self, path: Path) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except OSError as exc:
            raise EnrolError(Reason.IDENTITY, f"cannot read {path.name}: {exc.strerror}") from exc
        except ValueError as exc:
            raise EnrolError(Reason.IDENTITY, f"{path.name} is not a PEM certificate") from exc

    def install(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        """Install a new pair in place of the current one (if any)."""
        if not same_key(certificate, key):
            raise EnrolError(Reason.BAD_CERTIFICATE, "the certificate does not certify the new key")
        self.prepare()
        try:
            write_atomic(self._pending(self.key_path), _key_pem(key), 0o600)
            write_atomic(self._pending(self.cert_path), certificate.public_bytes(serialization.Encoding.PEM), 0o644)
            self.finish_pending()
        except OSError as exc:
            raise EnrolError(Reason.IDENTITY, f"cannot write into {self.root}: {exc.strerror}") from exc

    def pending_key(self) -> ec.EllipticCurvePrivateKey | None:
        """The new key of an enrolment or renewal that has not installed its certificate yet, if any."""
        path = self._pending(self.key_path)
        if not path.exists():
            return None
        try:
            return self._load_key(path)
        except EnrolError:
            return None  # unusable: a fresh key replaces it

    def keep_pending_key(self, key: ec.EllipticCurvePrivateKey) -> None:
        """Keep a new key before asking for its certificate: if the answer is lost, the next attempt asks
        with the same key and the hub hands the same certificate out again."""
        try:
            write_atomic(self._pending(self.key_path), _key_pem(key), 0o600)
        except OSError as exc:
            raise EnrolError(Reason.IDENTITY, f"cannot write into {self.root}: {exc.strerror}") from exc

    def finish_pending(self) -> None:
        """Complete an interrupted swap. A pending key alone (its certificate never came) stays for a retry."""
        pending_key, pending_cert = self._pending(self.key_path), self._pending(self.cert_path)
        if pending_cert.exists():
            if pending_key.exists():
                os.replace(pending_key, self.key_path)
            # The key went first: whether the crash came before or after that rename, the pending
            # certificate matches the key now in place (else it is stale and goes).
            if self.key_path.exists() and same_key(self._load_certificate(pending_cert), self._load_key(self.key_path)):
                os.replace(pending_cert, self.cert_path)
            else:
                pending_cert.unlink()
            _sync_directory(self.root)
