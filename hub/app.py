"""The hub process: a state directory, two TLS listeners, the waiting room between them.

State directory layout (created by ``kiosk-hub init``)::

    fleet-ca.pem  fleet-ca.key        fleet root CA
    doctor-ca.pem doctor-ca.key       doctor-issuing intermediate CA
    hub.pem       hub.key             hub server certificate (both listeners)
    booths/booth-0001.pem, .key       booth certificates (development: the hub mints one)
    signing/<doctor>.pem, .key        doctors' prescription-signing certificates (hub.prescriptions)
    prescriptions/                    signed prescriptions fetchable by code, encrypted under the code
        hub.db                            SQLite store (accounts, sessions, login failures, enrolment tokens)
    dev-credentials.json              development only: the demo doctor's password and TOTP secret
    records-key.pem records-pub.pem   records key pair (X25519; the private key is the operator's, see hub.records)
    records/<booth id>/<id>.rec       sealed records uploaded by booths
    audit/                            the hub's hash-chained audit log (hub.audit)

Private keys and the credentials file are mode 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from aiohttp import web
from cryptography import x509

from hub import enrolment, pki, prescription_api, records, tls
from hub.accounts import Accounts, AuditHook, totp_uri
from hub.audit import AuditWriter, BoothHeads, open_hub_audit, record_start
from hub.booth_api import booth_app
from hub.config import HubConfig
from hub.doctor_api import check_sessions, doctor_app
from hub.prescriptions import Prescriptions, signing_identity
from hub.store import Store
from hub.waiting_room import WaitingRoom
from kiosk.audit import AuditError

logger = logging.getLogger(__name__)

DEV_DOCTOR: Final = "dr.demo"
DEV_BOOTH: Final = "booth-0001"
SERVER_NAMES: Final = ["localhost", "127.0.0.1", "::1"]


class StateError(Exception):
    """A state directory that cannot be created or used."""


@dataclass(frozen=True)
class StatePaths:
    """Where each file of a state directory lives."""

    root: Path

    @property
    def fleet_ca(self) -> Path:
        return self.root / "fleet-ca.pem"

    @property
    def fleet_ca_key(self) -> Path:
        return self.root / "fleet-ca.key"

    @property
    def doctor_ca(self) -> Path:
        return self.root / "doctor-ca.pem"

    @property
    def doctor_ca_key(self) -> Path:
        return self.root / "doctor-ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "hub.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "hub.key"

    @property
    def database(self) -> Path:
        return self.root / "hub.db"

    @property
    def credentials(self) -> Path:
        return self.root / "dev-credentials.json"

    def booth_cert(self, booth_id: str) -> Path:
        return self.root / "booths" / f"{booth_id}.pem"

    def booth_key(self, booth_id: str) -> Path:
        return self.root / "booths" / f"{booth_id}.key"


def init_dev_state(root: Path, *, force: bool = False) -> dict[str, str]:
    """Create a development state in ``root``: PKI, one booth, one doctor. The demo credentials are returned
    and saved (0600); an existing state is refused unless ``force``."""
    paths = StatePaths(root)
    if paths.fleet_ca.exists() or paths.database.exists():
        if not force:
            raise StateError(f"{root} already holds a hub state; use --force to replace it")
        for path in (paths.database, paths.root / "hub.db-wal", paths.root / "hub.db-shm"):
            path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    now = datetime.datetime.now(datetime.UTC)
    fleet = pki.create_fleet_ca(now=now)
    pki.save_certificate(paths.fleet_ca, fleet.certificate)
    pki.save_key(paths.fleet_ca_key, fleet.key)
    doctor_ca = pki.create_doctor_ca(fleet, now=now)
    pki.save_certificate(paths.doctor_ca, doctor_ca.certificate)
    pki.save_key(paths.doctor_ca_key, doctor_ca.key)
    server_key = pki.new_key()
    pki.save_certificate(
        paths.server_cert, pki.issue_server_certificate(fleet, server_key, SERVER_NAMES, now=now), fleet.certificate
    )
    pki.save_key(paths.server_key, server_key)
    booth_key = pki.new_key()
    pki.save_certificate(
        paths.booth_cert(DEV_BOOTH), pki.issue_booth_certificate(fleet, booth_key.public_key(), DEV_BOOTH, now=now)
    )
    pki.save_key(paths.booth_key(DEV_BOOTH), booth_key)
    records.ensure_records_key(root)
    signing = signing_identity(root, DEV_DOCTOR, doctor_ca, now=now)  # prescriptions; others get theirs on first use
    store = Store(paths.database)
    try:
        accounts = Accounts(store, HubConfig(state=root))
        password = secrets.token_urlsafe(15)
        secret = accounts.create_account(DEV_DOCTOR, "Dr Demo", password, now=now.timestamp())
    finally:
        store.close()
    credentials = {
        "username": DEV_DOCTOR,
        "password": password,
        "totp_secret": secret,
        "totp_uri": totp_uri(secret, DEV_DOCTOR),
        "booth": DEV_BOOTH,
        "booth_certificate": str(paths.booth_cert(DEV_BOOTH)),
        "booth_key": str(paths.booth_key(DEV_BOOTH)),
        "fleet_ca": str(paths.fleet_ca),
        "signing_certificate": str(signing.certificate),
    }
    pki.write_private(paths.credentials, (json.dumps(credentials, indent=2) + "\n").encode())
    return credentials


@dataclass
class RunningHub:
    """A started hub: its actual ports (useful with port 0) and how to stop it."""

    doctor_port: int
    booth_port: int
    room: WaitingRoom
    accounts: Accounts
    _runners: tuple[web.AppRunner, web.AppRunner]
    _tasks: tuple[asyncio.Task[None], ...]
    _store: Store
    heads: BoothHeads | None = None
    _audit: AuditWriter | None = None

    async def stop(self) -> None:
        """Close both listeners, the store and the audit log."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in self._runners:
            await runner.cleanup()
        self._store.close()
        writer, self._audit = self._audit, None
        if writer is not None:
            writer.hook("service_stopped", {"service": "hub"})
            writer.close()
            writer.log.close()


def _text_fields(fields: Mapping[str, object]) -> dict[str, str]:
    return {key: str(value) for key, value in fields.items()}


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise StateError("listener did not bind")


async def _housekeeping(app: web.Application, room: WaitingRoom, config: HubConfig) -> None:
    interval = max(0.2, min(5.0, config.idle_timeout / 4, config.absolute_lifetime / 4, config.queue_refresh))
    last_refresh = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        try:
            check_sessions(app)
            if time.monotonic() - last_refresh >= config.queue_refresh:
                last_refresh = time.monotonic()
                room.refresh(last_refresh)
        except Exception:  # the housekeeping loop must survive a transient store error
            logger.exception("housekeeping failed")


async def start(config: HubConfig, audit: AuditHook | None = None) -> RunningHub:
    """Open the store and both listeners; return once they accept connections.

    Security events go to ``audit``; by default, to the hub's hash-chained audit log in the state directory."""
    paths = StatePaths(config.state)
    if not paths.database.exists() or not paths.server_cert.exists():
        raise StateError(f"{config.state} holds no hub state; run `kiosk-hub init` first")
    doctor_ca = pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key)
    fleet_ca = x509.load_pem_x509_certificate(paths.fleet_ca.read_bytes())
    writer: AuditWriter | None = None
    if audit is None:
        try:
            writer = AuditWriter(open_hub_audit(config.state))
        except AuditError as exc:
            raise StateError(f"audit log: {exc}") from exc
        audit = writer.hook
        record_start(audit, config.state, config)
    store = Store(paths.database)
    accounts = Accounts(store, config, audit)
    heads = BoothHeads(store, audit)
    room = WaitingRoom(max_invalid_per_minute=config.max_invalid_per_minute, audit=audit, audit_heads=heads.receive)
    # A mutable set: with port 0 the served origin is only known once the listener is bound.
    origins = set(config.allowed_origins())
    doctors = doctor_app(
        accounts,
        room,
        doctor_ca,
        fleet_ca=pki.pem(fleet_ca),
        origins=origins,
        static_dir=config.static_dir,
        heartbeat=config.heartbeat,
    )
    prescription_api.add_routes(
        doctors, Prescriptions(config.state, doctor_ca, audit=lambda kind, data: audit(kind, _text_fields(data)))
    )
    booths = booth_app(room, fleet_ca, heartbeat=config.heartbeat)
    fleet = pki.load_issuer(paths.fleet_ca, paths.fleet_ca_key)
    enrolment.install(
        doctors,
        booths,
        enrolment.Enrolment(store, fleet, audit=audit, burst=config.enrol_burst, per_minute=config.enrol_per_minute),
    )
    inbox = records.RecordsInbox(config.state / "records", key_ids=records.records_key_ids(config.state), audit=audit)
    records.add_routes(booths, inbox)
    doctor_runner = web.AppRunner(doctors, access_log=None)
    booth_runner = web.AppRunner(booths, access_log=None)
    await doctor_runner.setup()
    await booth_runner.setup()
    try:
        await web.TCPSite(
            doctor_runner,
            config.host,
            config.port,
            ssl_context=tls.doctor_server_context(paths.server_cert, paths.server_key),
        ).start()
        await web.TCPSite(
            booth_runner,
            config.booth_host,
            config.booth_port,
            ssl_context=tls.booth_server_context(paths.server_cert, paths.server_key, paths.fleet_ca),
        ).start()
    except OSError:
        await doctor_runner.cleanup()
        await booth_runner.cleanup()
        store.close()
        if writer is not None:
            writer.close()
            writer.log.close()
        raise
    doctor_port = _bound_port(doctor_runner)
    if not config.origins and config.port != doctor_port:
        origins.clear()
        origins.update(replace(config, port=doctor_port).allowed_origins())
    task = asyncio.get_running_loop().create_task(_housekeeping(doctors, room, config))
    return RunningHub(
        doctor_port,
        _bound_port(booth_runner),
        room,
        accounts,
        (doctor_runner, booth_runner),
        (task,),
        store,
        heads,
        writer,
    )
