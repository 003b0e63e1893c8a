"""Enrolment: the fleet CA in place, the identity directory, and a valid booth certificate.

Reads ``[enrolment]`` (``provisioning/example.toml`` documents each key); without
that table the step does nothing. The changes, in order:

- ``/etc/kiosk/fleet-ca.pem``: the fleet root CA the technician brought, the
  one trust anchor for the hub (the booth never learns it from the network);
- ``/var/lib/kiosk/identity``: 0700, owned by the kiosk user;
- :class:`Enrolled`: holds when ``booth.key`` + ``booth.pem`` there match, name
  this booth, chain to that fleet CA and do not expire within the renewal
  window. Otherwise ``kiosk-enrol`` runs *in the target* (through chroot on a
  root filesystem): ``renew`` when a still-valid certificate exists, else
  ``enrol`` with the one-time token, passed on standard input so that it
  never shows in a process list or a log. The files are then given to the
  kiosk user.

So ``--check`` reports a missing, foreign or expiring certificate as drift,
and a second run with an enrolled booth asks nothing of the hub and does not
need the (spent) token. ``enabled = false`` keeps only the first two changes:
an image built without network access to the hub enrols on first boot.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from provisioning.config import BoothConfig
from provisioning.core import Change, EnsureDirectory, Target, WriteFile
from provisioning.errors import ConfigError, TargetError

BOOTH_ID: Final = re.compile(r"booth-[0-9]{4,12}")
"""The hub certifies booth ids of this shape only (``hub.pki.BOOTH_ID``)."""
TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{32,128}")
HUB_URL: Final = re.compile(r"https://[^\s/]+(?::[0-9]{1,5})?/?")
DEFAULT_COMMAND: Final = ("/opt/kiosk/venv/bin/kiosk-enrol",)
TIMEOUT: Final = 120.0


@dataclass(frozen=True)
class EnrolSettings:
    """``[enrolment]``, checked."""

    enabled: bool
    hub: str
    """The hub's HTTPS address (default from ``[hub]``)."""
    booth_wss: str
    """The hub's booth listener, for renewal."""
    token: str = field(repr=False)
    token_file: Path | None
    fleet_ca: Path
    """The fleet CA on the machine running kiosk-provision."""
    fleet_ca_path: str
    """Where it goes in the target."""
    identity_dir: str
    owner: str
    renew_before_days: int
    command: tuple[str, ...]


def settings(config: BoothConfig) -> EnrolSettings:
    table = config.table("enrolment")
    enabled = table.boolean("enabled", True)
    hub = table.string("hub", config.hub_https_url, pattern=HUB_URL, what="an https://host:port URL")
    token = table.string("token", "")
    token_file_text = table.string("token_file", "")
    if token and token_file_text:
        raise ConfigError(table.key("token"), "give token or token_file, not both")
    if token and TOKEN.fullmatch(token) is None:
        raise ConfigError(table.key("token"), "is not an enrolment token (kiosk-hub enrol token prints one)")
    if not table.has("fleet_ca"):
        raise ConfigError(table.key("fleet_ca"), "is required: the fleet CA certificate (PEM) to trust the hub with")
    fleet_ca = Path(table.string("fleet_ca", ""))
    fleet_ca_path = table.string("fleet_ca_path", "/etc/kiosk/fleet-ca.pem", pattern=re.compile(r"/\S+"))
    identity_dir = table.string("identity_dir", "/var/lib/kiosk/identity", pattern=re.compile(r"/\S+"))
    owner = table.string("owner", "kiosk", pattern=re.compile(r"[a-z_][a-z0-9_-]{0,31}"), what="a user name")
    days = table.integer("renew_before_days", 30, minimum=1, maximum=3650)
    command = table.strings("command", DEFAULT_COMMAND)
    if not command or not command[0].startswith("/"):
        raise ConfigError(table.key("command"), "must start with an absolute path")
    table.done()
    if enabled and BOOTH_ID.fullmatch(config.booth_id) is None:
        raise ConfigError("booth.id", "enrolment needs a booth id like booth-0001")
    return EnrolSettings(
        enabled=enabled,
        hub=hub.rstrip("/"),
        booth_wss=config.hub_wss_url,
        token=token,
        token_file=Path(token_file_text) if token_file_text else None,
        fleet_ca=fleet_ca,
        fleet_ca_path=fleet_ca_path,
        identity_dir=identity_dir.rstrip("/"),
        owner=owner,
        renew_before_days=days,
        command=command,
    )


def _fleet_ca_pem(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        x509.load_pem_x509_certificate(data)
    except OSError as exc:
        raise ConfigError("enrolment.fleet_ca", f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError("enrolment.fleet_ca", f"{path} is not a PEM certificate") from exc
    return data


def certificate_problem(
    identity: Path, *, booth_id: str, fleet_ca: x509.Certificate, window: datetime.timedelta, now: datetime.datetime
) -> str | None:
    """Why the pair in ``identity`` (a host path) is not good enough; None when it is."""
    try:
        certificate = x509.load_pem_x509_certificate((identity / "booth.pem").read_bytes())
        key = serialization.load_pem_private_key((identity / "booth.key").read_bytes(), password=None)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        return "unreadable"
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(serialization.Encoding.DER, spki) != key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        return "mismatched"
    try:
        certificate.verify_directly_issued_by(fleet_ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return "foreign"
    if [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] != [booth_id]:
        return "foreign"
    if certificate.not_valid_after_utc <= now:
        return "expired"
    if certificate.not_valid_after_utc - now <= window:
        return "expiring"
    return None


@dataclass(frozen=True)
class Enrolled:
    """A booth certificate for this booth from this fleet, valid beyond the renewal window."""

    settings: EnrolSettings
    booth_id: str
    fleet_ca_pem: bytes = field(repr=False)

    def _problem(self, target: Target) -> str | None:
        return certificate_problem(
            target.path(self.settings.identity_dir, follow=True),
            booth_id=self.booth_id,
            fleet_ca=x509.load_pem_x509_certificate(self.fleet_ca_pem),
            window=datetime.timedelta(days=self.settings.renew_before_days),
            now=datetime.datetime.now(datetime.UTC),
        )

    def describe(self) -> str:
        return f"enrol {self.booth_id} with {self.settings.hub} (certificate in {self.settings.identity_dir})"

    def is_applied(self, target: Target) -> bool:
        return self._problem(target) is None

    def apply(self, target: Target) -> None:
        s = self.settings
        common = ["--fleet-ca", s.fleet_ca_path, "--identity-dir", s.identity_dir]
        if self._problem(target) == "expiring":
            argv = [*s.command, "renew", "--hub", s.booth_wss, *common, "--before-days", str(s.renew_before_days)]
            target.run(argv, timeout=TIMEOUT)
        else:
            token = self._token()
            argv = [*s.command, "enrol", "--hub", s.hub, "--token-file", "-", "--booth-id", self.booth_id, *common]
            target.run(argv, input=token + "\n", timeout=TIMEOUT)
        self._give_to_owner(target)

    def _token(self) -> str:
        s = self.settings
        if s.token_file is not None:
            try:
                token = s.token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise TargetError("enrol", f"cannot read the token file {s.token_file}") from exc
        else:
            token = s.token
        if not token:
            raise TargetError("enrol", "the booth has no valid certificate and [enrolment] gives no token")
        if TOKEN.fullmatch(token) is None:
            raise TargetError("enrol", f"{s.token_file or 'enrolment.token'} does not hold an enrolment token")
        return token

    def _give_to_owner(self, target: Target) -> None:
        uid, gid = target.uid(self.settings.owner), target.gid(self.settings.owner)
        directory = target.path(self.settings.identity_dir, follow=True)
        for name in ("booth.key", "booth.pem"):
            os.chown(directory / name, uid, gid, follow_symlinks=False)


@dataclass(frozen=True)
class EnrolStep:
    name: str = "enrol"
    description: str = "fleet CA, identity directory, booth certificate (kiosk-enrol)"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        if "enrolment" not in config.sections:
            return []  # enrolment not configured: the booth is enrolled some other way
        s = settings(config)
        pem = _fleet_ca_pem(s.fleet_ca)
        changes: list[Change] = [
            WriteFile(s.fleet_ca_path, pem, mode=0o644),
            EnsureDirectory(s.identity_dir, mode=0o700, owner=s.owner, group=s.owner),
        ]
        if s.enabled:
            changes.append(Enrolled(s, config.booth_id, pem))
        return changes


STEP: Final = EnrolStep()
