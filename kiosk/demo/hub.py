"""A development hub in a subprocess: ``kiosk-hub init --dev`` once, then ``kiosk-hub serve`` on free ports.

The demo, the browser tests and the benchmarks all start the hub the way an operator would, through its
CLI, and learn its real ports from the one line ``serve`` prints once both listeners are up::

    ready doctor=https://127.0.0.1:43211 booth=wss://127.0.0.1:43212

The state directory is reused when it already holds a hub state (``init`` refuses to overwrite one), so a
second ``make demo`` keeps its PKI and doctor account. The development doctor's credentials are the ones
``init`` saved (``dev-credentials.json``, 0600). Nothing here logs a credential.

    with DevHub(Path("demo-out/hub")) as hub:
        print(hub.origin, hub.booth_url, hub.doctor.username)

``async with`` works too (start and stop run in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import re
import secrets
import selectors
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Self

from hub import pki
from hub.accounts import Accounts, totp_now
from hub.app import StatePaths
from hub.config import HubConfig
from hub.store import Store

logger = logging.getLogger(__name__)

ROOT: Final = Path(__file__).resolve().parents[2]
READY: Final = re.compile(
    r"^ready doctor=https://(?P<host>[^ ]+):(?P<port>\d+) booth=wss://(?P<bhost>[^ ]+):(?P<bport>\d+)$"
)
"""``kiosk-hub serve``'s ready line (hub/cli.py)."""
RELAXED_RATE_LIMIT: Final = "[rate_limit]\nburst = 1000\nper_minute = 1000\n"
"""Settings for tests and benchmarks that log in many times from 127.0.0.1."""
STARTUP_TIMEOUT: Final = 30.0


class HubError(Exception):
    """The development hub could not be initialised or started."""


@dataclass(frozen=True)
class DevDoctor:
    """A doctor account: what the login form asks for. The secrets stay out of ``repr``."""

    username: str
    password: str = field(repr=False)
    totp_secret: str = field(repr=False)

    def totp(self, now: float | None = None) -> str:
        """The code an authenticator app shows at ``now`` (default: the current time)."""
        return totp_now(self.totp_secret, time.time() if now is None else now)


def kiosk_hub_command() -> list[str]:
    """The ``kiosk-hub`` script next to this interpreter, else ``python -m hub.cli``."""
    script = Path(sys.executable).with_name("kiosk-hub")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hub.cli"]


def stop_process(process: subprocess.Popen[str] | subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it lingers; every wait bounded."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process.stdout is not None:
        process.stdout.close()


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file ("" when it cannot be read)."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class DevHub:
    """A development hub: state directory, ``kiosk-hub serve`` subprocess, dev doctor.

    ``state``: the hub's state directory (created with ``kiosk-hub init --dev`` unless it holds one).
    ``run_dir``: where the settings file (``hub.toml``) and the hub's stderr (``hub.log``) go; default
    ``state``. ``settings``: TOML appended to the generated settings file (e.g. :data:`RELAXED_RATE_LIMIT`).
    ``command``: replaces ``kiosk-hub`` in both invocations (a wrapper such as ``taskset``, a launcher).
    ``host``, ``doctor_port``, ``booth_port``: where to listen; port 0 (default) picks free ports.
    """

    def __init__(
        self,
        state: Path,
        *,
        run_dir: Path | None = None,
        settings: str = "",
        command: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        doctor_port: int = 0,
        booth_port: int = 0,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.state = state.resolve()
        self.run_dir = (run_dir or state).resolve()
        self.settings = settings
        self.command = list(command) if command is not None else kiosk_hub_command()
        self.host = host
        self.startup_timeout = startup_timeout
        self.doctor_port = doctor_port
        """The doctor HTTPS port (the real one once started)."""
        self.booth_port = booth_port
        """The booth mutual-TLS port (the real one once started)."""
        self.process: subprocess.Popen[str] | None = None
        self.created = False
        """True when :meth:`init` created the state (False: an existing one was reused)."""

    # -- state --------------------------------------------------------------------------------------------
    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.state)

    @property
    def initialised(self) -> bool:
        paths = self.paths
        return paths.fleet_ca.exists() and paths.database.exists() and paths.credentials.exists()

    def init(self) -> None:
        """``kiosk-hub init --dev --state DIR`` unless the directory already holds a state."""
        if self.initialised:
            return
        self.state.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [*self.command, "init", "--dev", "--state", str(self.state)],
            cwd=ROOT,
            capture_output=True,  # stdout holds the credentials: never echoed
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0 or not self.initialised:
            raise HubError(f"kiosk-hub init failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        self.created = True
        logger.info("development hub state created")

    @property
    def credentials(self) -> dict[str, str]:
        """What ``init`` saved: username, password, totp_secret, totp_uri, booth, booth_certificate, ..."""
        try:
            document = json.loads(self.paths.credentials.read_text())
        except (OSError, ValueError) as exc:
            raise HubError(f"no readable development credentials in {self.state}: {exc}") from exc
        if not isinstance(document, dict):
            raise HubError(f"{self.paths.credentials} is not a JSON object")
        return {str(key): str(value) for key, value in document.items()}

    @property
    def doctor(self) -> DevDoctor:
        """The development doctor ``init`` created."""
        saved = self.credentials
        try:
            return DevDoctor(saved["username"], saved["password"], saved["totp_secret"])
        except KeyError as exc:
            raise HubError(f"{self.paths.credentials} lacks {exc}") from exc

    def totp(self, now: float | None = None) -> str:
        """The development doctor's current TOTP code."""
        return self.doctor.totp(now)

    @property
    def booth_id(self) -> str:
        """The booth ``init`` enrolled (its certificate and key are in the state)."""
        return self.credentials.get("booth", "booth-0001")

    @property
    def fleet_ca_pem(self) -> str:
        return self.paths.fleet_ca.read_text()

    def new_doctor(self, display_name: str = "Dr Test") -> DevDoctor:
        """A fresh account in the hub's store (SQLite in WAL mode: a running hub sees it at once)."""
        username = f"dr.{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(18)
        store = Store(self.paths.database)
        try:
            secret = Accounts(store, HubConfig(state=self.state)).create_account(
                username, display_name, password, now=time.time()
            )
        finally:
            store.close()
        return DevDoctor(username, password, secret)

    def new_booth(self, booth_id: str) -> None:
        """Mint a booth certificate with the fleet CA (like ``kiosk-hub add-booth``); kept if it exists."""
        paths = self.paths
        if paths.booth_cert(booth_id).exists():
            return
        fleet = pki.load_issuer(paths.fleet_ca, paths.fleet_ca_key)
        key = pki.new_key()
        now = datetime.datetime.now(datetime.UTC)
        pki.save_certificate(
            paths.booth_cert(booth_id), pki.issue_booth_certificate(fleet, key.public_key(), booth_id, now=now)
        )
        pki.save_key(paths.booth_key(booth_id), key)

    def booth_context(self, booth_id: str | None = None) -> ssl.SSLContext:
        """A client TLS context for the booth port: trusts the fleet CA, presents the booth's certificate."""
        booth_id = booth_id or self.booth_id
        context = ssl.create_default_context(cafile=str(self.paths.fleet_ca))
        context.load_cert_chain(self.paths.booth_cert(booth_id), self.paths.booth_key(booth_id))
        return context

    # -- the serve process --------------------------------------------------------------------------------
    @property
    def settings_file(self) -> Path:
        return self.run_dir / "hub.toml"

    @property
    def log(self) -> Path:
        """The hub's stderr."""
        return self.run_dir / "hub.log"

    @property
    def origin(self) -> str:
        """The console's origin: a host name (``localhost``, in the server certificate), as WebAuthn requires."""
        return f"https://localhost:{self.doctor_port}"

    @property
    def booth_url(self) -> str:
        """The booths' signalling WebSocket."""
        return f"wss://localhost:{self.booth_port}/ws"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise HubError("the hub is not running")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        return tail(self.log, lines)

    def start(self) -> Self:
        """Initialise if needed, start ``kiosk-hub serve``, return once it printed its ready line."""
        if self.process is not None:
            raise HubError("the hub is already running")
        self.init()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.settings_file.write_text(f"state = {json.dumps(str(self.state))}\n\n{self.settings}")
        command = [*self.command, "serve", "--config", str(self.settings_file), "--host", self.host]
        command += ["--port", str(self.doctor_port), "--booth-port", str(self.booth_port)]
        with self.log.open("w") as log_file:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, text=True
            )
        try:
            match = self._read_ready_line(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.doctor_port, self.booth_port = int(match["port"]), int(match["bport"])
        logger.info("development hub ready on ports %d (doctors) and %d (booths)", self.doctor_port, self.booth_port)
        return self

    def _read_ready_line(self, deadline: float) -> re.Match[str]:
        assert self.process is not None and self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                if not selector.select(remaining):
                    continue
                line = self.process.stdout.readline()
                if line == "":
                    code = self.process.wait(5)
                    raise HubError(f"kiosk-hub exited with {code} before it was ready:\n{self.log_tail()}")
                if match := READY.match(line.strip()):
                    return match
        finally:
            selector.close()
        raise HubError(f"kiosk-hub did not print its ready line in {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the serve process (SIGTERM, then SIGKILL); the state stays."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)
