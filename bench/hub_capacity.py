"""Hub capacity: concurrent booth connections one hub process holds on one core with signalling p99 under 50 ms.

A throwaway development state is created (``kiosk-hub init --dev``, through ``kiosk.demo.hub.DevHub``) and the
hub runs as its own process (``kiosk-hub serve``'s ``main``, under a small
observer of full garbage collections) pinned to one core with ``taskset``.
Load booths run in worker processes pinned to the other core(s), each with
its own event loop and aiohttp session; every load booth has its own
certificate from the fleet CA (one shared key) and holds a mutual-TLS
WebSocket on the booth listener, with a steady signalling load:

* a ``heartbeat`` every ~20 s (jittered, first one at a random phase);
* a patient now and then (on average one an hour per booth): ``announce``,
  then ``withdraw`` 30–90 s later, so the hub broadcasts the queue to the
  connected doctors (three load doctors plus the probe doctor).

The number of booths grows in steps (250, 500, 1000, ...). After each step
has connected, a probe booth and a probe doctor in a consultation exchange
``signal`` messages (payload ``ice``, the send time in the candidate text):
booth → hub → doctor, 300 per step, about 100 a second on a fixed schedule
(open loop, so a stall delays every probe due meanwhile). The step reports
the relay latency, the hub's CPU (``/proc/PID/stat``), RSS and full garbage
collections (they stop the whole hub; a short probe window may miss them).
The ramp stops at the first step whose p99 is over 50 ms, where a booth fails
to connect or drops, or when the time budget, ``--max-booths``, the file
descriptor limit or the memory available is reached. The figure is the
largest step with every booth connected and p99 under the limit; unless
``stop_reason`` is ``p99`` or ``failures``, it is a lower bound.

    python -m bench.hub_capacity [--max-booths N] [--budget-seconds S] [--probes N] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import datetime
import heapq
import itertools
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.stats import summary_ms
from hub import pki, tls
from hub.accounts import Accounts, totp_now
from hub.app import StatePaths
from hub.config import HubConfig
from hub.store import Store
from kiosk.demo.hub import DevHub, HubError

STEPS: Final = (250, 500, 1000, 2000, 4000, 8000, 16000)
DEFAULT_MAX_BOOTHS: Final = 20000
DEFAULT_BUDGET_SECONDS: Final = 200.0
"""Time for the ramp itself; setup and teardown add a few seconds."""
P99_LIMIT_MS: Final = 50.0
PROBES: Final = 300
PROBE_TIMEOUT: Final = 5.0
"""Probes not relayed this many seconds after the last one was sent count as lost."""
PROBE_INTERVAL: Final = (0.005, 0.015)
"""Seconds between two probes (uniform): about 100 a second, whether or not the previous one came back."""
WORKERS: Final = 4
LOAD_DOCTORS: Final = 3
HEARTBEAT_SECONDS: Final = 20.0
PATIENT_INTERVAL_SECONDS: Final = 3600.0
"""Mean time between patients at one booth (exponential)."""
WAIT_SECONDS: Final = (30.0, 90.0)
"""A patient waits this long (uniform), then is withdrawn (seen by a doctor elsewhere, or gone)."""
SETTLE_SECONDS: Final = 1.0
CONNECT_TIMEOUT: Final = 20.0
CONNECT_CONCURRENCY: Final = 32
"""Handshakes in flight per worker."""
MAX_CONNECT_FAILURES: Final = 50
"""Per worker and step: past this, the step's remaining connections are not attempted."""
FD_MARGIN: Final = 64
"""File descriptors the hub keeps for itself (listeners, store, doctors, log) below its RLIMIT_NOFILE."""
MIB_PER_BOOTH: Final = 0.7
"""Memory one booth costs, hub and load together (asyncio gives each TLS connection a 256 KiB read buffer)."""
MEMORY_SHARE: Final = 0.6
"""Share of the machine's available memory the ramp may use."""
READY_TIMEOUT: Final = 30.0
FIRST_NAMES: Final = ("Camille", "Lou", "Jean", "Inès", "Marc", "Nora", "Paul", "Zoé")
REASONS: Final = ("toux", "fièvre depuis hier", "mal de gorge", "renouvellement", "douleur au dos", "éruption")


class BenchError(Exception):
    """The bench could not set up or run."""


def _frame(type_: str, **body: Any) -> str:
    return json.dumps({"v": 1, "type": type_, **body}, ensure_ascii=False, separators=(",", ":"))


def raise_nofile() -> dict[str, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": soft, "hard": hard}


# -- load booths (worker processes) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerOptions:
    """What a load worker needs; picklable (spawned processes)."""

    url: str
    fleet_ca: str
    key_file: str
    cores: tuple[int, ...]
    seed: int
    heartbeat: float = HEARTBEAT_SECONDS
    patient_interval: float = PATIENT_INTERVAL_SECONDS
    wait: tuple[float, float] = WAIT_SECONDS


@dataclass(eq=False)
class _LoadBooth:
    booth_id: str
    ws: aiohttp.ClientWebSocketResponse


class _Load:
    """One worker's booths: connections, their reader tasks, and one agenda of messages to send."""

    def __init__(self, options: WorkerOptions, http: aiohttp.ClientSession) -> None:
        self.options = options
        self.http = http
        self.random = random.Random(options.seed)
        self.booths: list[_LoadBooth] = []
        self.agenda: list[tuple[float, int, str, _LoadBooth]] = []
        self.order = itertools.count()
        self.readers: set[asyncio.Task[None]] = set()
        self.sent: collections.Counter[str] = collections.Counter()
        self.received: collections.Counter[str] = collections.Counter()
        self.close_codes: collections.Counter[str] = collections.Counter()
        self.connect_errors: collections.Counter[str] = collections.Counter()
        self.disconnected = 0
        self.stopping = False
        mean_wait = sum(options.wait) / 2
        self.waiting_share = mean_wait / (options.patient_interval + mean_wait)

    def _schedule(self, when: float, action: str, booth: _LoadBooth) -> None:
        heapq.heappush(self.agenda, (when, next(self.order), action, booth))

    async def grow(self, booths: Sequence[tuple[str, str]], deadline: float) -> dict[str, Any]:
        """Connect ``booths`` ((id, certificate file) pairs); stop trying past ``deadline`` (monotonic)."""
        started = time.monotonic()
        semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)
        outcome: collections.Counter[str] = collections.Counter()

        async def connect(booth_id: str, cert_file: str) -> None:
            async with semaphore:
                if outcome["failed"] >= MAX_CONNECT_FAILURES or time.monotonic() > deadline:
                    outcome["skipped"] += 1
                    return
                try:
                    context = tls.client_context(
                        Path(self.options.fleet_ca), Path(cert_file), Path(self.options.key_file)
                    )
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        ws = await self.http.ws_connect(self.options.url, ssl=context)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    outcome["failed"] += 1
                    self.connect_errors[type(exc).__name__] += 1
                    return
                outcome["connected"] += 1
                self._add(_LoadBooth(booth_id, ws))

        await asyncio.gather(*(connect(booth_id, cert) for booth_id, cert in booths))
        return {
            "connected": outcome["connected"],
            "failed": outcome["failed"],
            "skipped": outcome["skipped"],
            "seconds": time.monotonic() - started,
        }

    def _add(self, booth: _LoadBooth) -> None:
        self.booths.append(booth)
        task = asyncio.get_running_loop().create_task(self._read(booth))
        self.readers.add(task)
        task.add_done_callback(self.readers.discard)
        now = asyncio.get_running_loop().time()
        self._schedule(now + self.random.uniform(0, self.options.heartbeat), "heartbeat", booth)
        if self.random.random() < self.waiting_share:
            # In steady state this booth would already have a patient waiting.
            self._schedule(now + self.random.uniform(0, 2 * SETTLE_SECONDS), "announce", booth)
        else:
            self._schedule(now + self.random.expovariate(1 / self.options.patient_interval), "announce", booth)

    async def _read(self, booth: _LoadBooth) -> None:
        with contextlib.suppress(Exception):
            async for message in booth.ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    match = re.search(r'"type":"([a-z_]+)"', message.data[:40])
                    self.received[match.group(1) if match else "?"] += 1
        if not self.stopping:
            self.disconnected += 1
            self.close_codes[str(booth.ws.close_code)] += 1

    async def run_agenda(self) -> None:
        """Send what is due: heartbeats, announces, withdrawals."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self.agenda and self.agenda[0][0] <= now:
                _, _, action, booth = heapq.heappop(self.agenda)
                await self._act(action, booth, now)
            delay = self.agenda[0][0] - now if self.agenda else 0.5
            await asyncio.sleep(min(max(delay, 0.001), 0.5))

    async def _act(self, action: str, booth: _LoadBooth, now: float) -> None:
        if booth.ws.closed:
            return
        if action == "heartbeat":
            text = _frame("heartbeat")
            self._schedule(now + self.options.heartbeat * self.random.uniform(0.8, 1.2), "heartbeat", booth)
        elif action == "announce":
            patient = {
                "first_name": self.random.choice(FIRST_NAMES),
                "age": self.random.randint(1, 95),
                "reason": self.random.choice(REASONS),
            }
            text = _frame("announce", patient=patient)
            self._schedule(now + self.random.uniform(*self.options.wait), "withdraw", booth)
        else:
            text = _frame("withdraw")
            self._schedule(now + self.random.expovariate(1 / self.options.patient_interval), "announce", booth)
        try:
            await booth.ws.send_str(text)
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            self.sent["send_failed"] += 1
            return
        self.sent[action] += 1

    def stats(self) -> dict[str, Any]:
        return {
            "open": sum(1 for booth in self.booths if not booth.ws.closed),
            "disconnected": self.disconnected,
            "close_codes": dict(self.close_codes),
            "connect_errors": dict(self.connect_errors),
            "sent": dict(self.sent),
            "received": dict(self.received),
        }


async def _worker(conn: Connection, options: WorkerOptions) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        load = _Load(options, http)
        agenda = asyncio.get_running_loop().create_task(load.run_agenda())
        try:
            while True:
                try:
                    command, argument = await asyncio.to_thread(conn.recv)
                except EOFError:  # the orchestrator is gone
                    return
                if command == "grow":
                    booths, deadline = argument
                    conn.send(await load.grow(booths, deadline))
                elif command == "stats":
                    conn.send(load.stats())
                else:
                    return
        finally:
            load.stopping = True
            agenda.cancel()
            for task in list(load.readers):
                task.cancel()
            await asyncio.gather(agenda, *load.readers, return_exceptions=True)


def worker_main(conn: Connection, options: WorkerOptions) -> None:
    """Entry point of a load worker process."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, options.cores)
    raise_nofile()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_worker(conn, options))
    conn.close()


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection

    async def ask(self, command: str, argument: Any = None, timeout: float = 30.0) -> Any:
        self.conn.send((command, argument))
        if not await asyncio.to_thread(self.conn.poll, timeout):
            raise BenchError(f"load worker did not answer {command!r} within {timeout:.0f} s")
        return self.conn.recv()


# -- the hub process ------------------------------------------------------------------------------------------
@dataclass
class _Hub:
    """The development hub (:class:`kiosk.demo.hub.DevHub`) and what the bench reads of its process."""

    dev: DevHub
    gc_log: Path
    pid: int = 0
    clock_ticks: int = field(default_factory=lambda: os.sysconf("SC_CLK_TCK"))
    last_cpu: float = 0.0

    @property
    def doctor_port(self) -> int:
        return self.dev.doctor_port

    @property
    def booth_port(self) -> int:
        return self.dev.booth_port

    def cpu_seconds(self) -> float:
        """User + system CPU time of the hub so far (the last value read, once the process is gone)."""
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            self.last_cpu = (int(fields[11]) + int(fields[12])) / self.clock_ticks  # utime, stime
        return self.last_cpu

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def full_collections(self, since: float, until: float = float("inf")) -> list[float]:
        """Pauses (seconds) of the hub's full garbage collections that overlap ``since``..``until`` (monotonic)."""
        pauses = []
        with contextlib.suppress(OSError):
            for line in self.gc_log.read_text().splitlines():
                end, duration = (float(value) for value in line.split())
                if end > since and end - duration < until:
                    pauses.append(duration)
        return pauses

    def nofile(self) -> int | None:
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        return None

    def log_tail(self, lines: int = 15) -> str:
        return self.dev.log_tail(lines)

    def alive(self) -> bool:
        return self.dev.alive()


def rss_mib(pid: int | None) -> float:
    """Resident memory of a process, in MiB (0 when it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


HUB_LAUNCHER: Final = """
import gc, sys, time
from hub.cli import main
log = open(sys.argv[1], "a", buffering=1)
began = 0.0
def observe(phase, info):
    global began
    if phase == "start":
        began = time.perf_counter()
    elif info["generation"] == 2:
        log.write(f"{time.monotonic():.6f} {time.perf_counter() - began:.6f}\\n")
gc.callbacks.append(observe)
sys.exit(main(sys.argv[2:]))
"""
"""``kiosk-hub``'s own ``main`` with an observer of full garbage collections (end time, duration), whose
pauses stop the whole hub: a short probe window may miss them, the log does not."""


def _hub(state: Path, run_dir: Path, core: int) -> _Hub:
    """``kiosk-hub`` under :data:`HUB_LAUNCHER`, pinned to ``core``; not started yet."""
    run_dir.mkdir(parents=True, exist_ok=True)
    gc_log = run_dir / "hub-gc.log"
    command = [sys.executable, "-c", HUB_LAUNCHER, str(gc_log)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    return _Hub(DevHub(state, run_dir=run_dir, command=command, startup_timeout=READY_TIMEOUT), gc_log)


def _start_hub(hub: _Hub, core: int) -> None:
    try:
        hub.dev.start()
    except HubError as exc:
        raise BenchError(f"the hub did not start: {exc}") from exc
    hub.pid = hub.dev.pid
    with contextlib.suppress(OSError):
        os.sched_setaffinity(hub.pid, {core})  # taskset already did it; this is for machines without it


# -- doctors and the probe (orchestrator) -------------------------------------------------------------------------
class _Doctor:
    """A browser stand-in: its own cookie jar, Origin on every POST and on the WebSocket, the CSRF header."""

    def __init__(self, port: int, fleet_ca: Path) -> None:
        self.origin = f"https://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession(
            self.origin,
            connector=aiohttp.TCPConnector(ssl=tls.client_context(fleet_ca)),
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for an IP-address host
        )
        self.csrf = ""
        self.queue_updates = 0
        self.queue_bytes = 0
        self.queue_entries = 0

    async def post(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        headers = {"Origin": self.origin, "X-CSRF-Token": self.csrf}
        async with self.http.post(path, json=body, headers=headers) as response:
            answer: dict[str, Any] = await response.json(content_type=None)
            if response.status != 200:
                raise BenchError(f"{path}: {response.status} {answer}")
            return answer

    async def login(self, username: str, password: str, secret: str) -> None:
        self.csrf = (await self.post("/api/login", {"username": username, "password": password}))["csrf"]
        self.csrf = (await self.post("/api/login/totp", {"code": totp_now(secret, time.time())}))["csrf"]

    async def certify(self) -> None:
        spki = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        await self.post("/api/identity-key", {"spki": base64.b64encode(spki).decode()})

    async def ws(self) -> aiohttp.ClientWebSocketResponse:
        return await self.http.ws_connect("/api/ws", origin=self.origin, max_msg_size=1 << 20)

    def count_queue(self, text: str) -> None:
        self.queue_updates += 1
        self.queue_bytes += len(text)
        self.queue_entries = text.count('"entry":')


async def _listen(doctor: _Doctor, ws: aiohttp.ClientWebSocketResponse) -> None:
    """A load doctor: reads (and counts) every queue update."""
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT and message.data.startswith('{"v":1,"type":"queue"'):
            doctor.count_queue(message.data)


async def _next_of(ws: aiohttp.ClientWebSocketResponse, type_: str, doctor: _Doctor | None = None) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            text = await ws.receive_str()
            message: dict[str, Any] = json.loads(text)
            if doctor is not None and message["type"] == "queue":
                doctor.count_queue(text)
            if message["type"] == type_:
                return message
            if message["type"] == "error":
                raise BenchError(f"the hub refused: {message}")


class _Probe:
    """A booth and a doctor in a consultation; ``signal`` relayed booth → hub → doctor, timed."""

    def __init__(
        self, booth: aiohttp.ClientWebSocketResponse, doctor: _Doctor, doctor_ws: aiohttp.ClientWebSocketResponse
    ) -> None:
        self.booth = booth
        self.doctor = doctor
        self.doctor_ws = doctor_ws
        self.session = ""
        self.arrived: dict[int, float] = {}
        self.expected: set[int] = set()
        self.progress = asyncio.Event()
        self.readers: list[asyncio.Task[None]] = []
        self.sequence = itertools.count()
        self.booth_messages: collections.Counter[str] = collections.Counter()
        """What the hub sent the probe booth after ``accepted`` (nothing is expected)."""

    async def open(self, booth_id: str) -> None:
        patient = {"first_name": "Sonde", "age": 40, "reason": "latence"}
        await self.booth.send_str(_frame("announce", patient=patient))
        async with asyncio.timeout(10):
            entry = None
            while entry is None:
                queue = await _next_of(self.doctor_ws, "queue", self.doctor)
                entry = next((e["entry"] for e in queue["entries"] if e["booth"] == booth_id), None)
        await self.doctor_ws.send_str(_frame("accept", entry=entry))
        self.session = (await _next_of(self.doctor_ws, "session", self.doctor))["session"]
        accepted = await _next_of(self.booth, "accepted")
        if accepted["session"] != self.session:
            raise BenchError("the probe booth and doctor disagree on the session")
        loop = asyncio.get_running_loop()
        # Both sockets are read all along: reading is also what answers the hub's pings.
        self.readers = [loop.create_task(self._read_doctor()), loop.create_task(self._read_booth())]

    async def _read_booth(self) -> None:
        async for message in self.booth:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.booth_messages[json.loads(message.data)["type"]] += 1
        self.progress.set()  # a waiting measure() looks at failure()

    def failure(self) -> str | None:
        """Why the probe consultation cannot carry probes any more, if it cannot."""
        for name, ws in (("booth", self.booth), ("doctor", self.doctor_ws)):
            if ws.closed:
                received = dict(self.booth_messages)
                return f"the probe {name} connection closed (code {ws.close_code}); the booth received {received}"
        return None

    async def _read_doctor(self) -> None:
        async for message in self.doctor_ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            text = message.data
            if text.startswith('{"v":1,"type":"queue"'):
                self.doctor.count_queue(text)
                continue
            received = time.monotonic()
            decoded = json.loads(text)
            if decoded["type"] != "signal":
                continue
            _, sequence, sent = decoded["payload"]["candidate"].split()
            self.arrived[int(sequence)] = received - float(sent)
            self.progress.set()
        self.progress.set()

    async def measure(self, count: int, rng: random.Random) -> tuple[list[float], int]:
        """``count`` probes on a fixed schedule (open loop: a stalled hub delays every probe due meanwhile,
        as it would real signalling); the relay latencies (seconds) and how many never came back."""
        self.arrived.clear()
        self.expected.clear()
        loop = asyncio.get_running_loop()
        due = loop.time()
        for _ in range(count):
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += rng.uniform(*PROBE_INTERVAL)
            sequence = next(self.sequence)
            payload = {
                "kind": "ice",
                "candidate": f"probe {sequence} {time.monotonic():.9f}",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
            }
            try:
                await self.booth.send_str(_frame("signal", session=self.session, payload=payload))
            except (aiohttp.ClientError, ConnectionError):  # the hub closed the probe booth: the rest is lost
                break
            self.expected.add(sequence)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROBE_TIMEOUT):
                while not self.expected <= self.arrived.keys() and self.failure() is None:
                    self.progress.clear()
                    await self.progress.wait()
        latencies = [self.arrived[sequence] for sequence in self.expected if sequence in self.arrived]
        return latencies, count - len(latencies)

    async def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


# -- the ramp -----------------------------------------------------------------------------------------------------
@dataclass
class _Setup:
    root: Path
    credentials: dict[str, str]
    load_doctors: list[tuple[str, str, str]]
    key_file: Path
    key: ec.EllipticCurvePrivateKey
    fleet: pki.Issuer
    minted: int = 0

    def mint(self, first: int, last: int) -> list[tuple[str, str]]:
        """Certificates for load booths ``first``..``last`` (one key, one certificate and CN each)."""
        now = datetime.datetime.now(datetime.UTC)
        public_key = self.key.public_key()
        booths = []
        for index in range(first, last + 1):
            booth_id = f"booth-{index:06d}"
            path = self.root / "load" / f"{booth_id}.pem"
            pki.save_certificate(path, pki.issue_booth_certificate(self.fleet, public_key, booth_id, now=now))
            booths.append((booth_id, str(path)))
        self.minted = last
        return booths


def _make_state(hub: DevHub, load_doctors: int) -> _Setup:
    try:
        hub.init()
    except HubError as exc:
        raise BenchError(str(exc)) from exc
    root, credentials = hub.state, hub.credentials
    paths = StatePaths(root)
    store = Store(paths.database)
    doctors = []
    try:
        accounts = Accounts(store, HubConfig(state=root))
        for index in range(load_doctors):
            username, password = f"dr.load-{index + 1}", f"load-doctor-password-{index + 1}"
            secret = accounts.create_account(username, f"Dr Load {index + 1}", password, now=time.time())
            doctors.append((username, password, secret))
    finally:
        store.close()
    key_file, key = root / "load" / "booth.key", pki.new_key()
    pki.save_key(key_file, key)
    return _Setup(root, credentials, doctors, key_file, key, pki.load_issuer(paths.fleet_ca, paths.fleet_ca_key))


def _sum_stats(stats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"open": 0, "disconnected": 0}
    counters: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for item in stats:
        total["open"] += item["open"]
        total["disconnected"] += item["disconnected"]
        for key in ("close_codes", "connect_errors", "sent", "received"):
            counters[key].update(item[key])
    total.update({key: dict(counter) for key, counter in counters.items()})
    return total


async def _ramp(
    setup: _Setup, hub: _Hub, workers: list[_Worker], plan: list[int], probes: int, deadline: float
) -> tuple[list[dict[str, Any]], str]:
    fleet_ca = StatePaths(setup.root).fleet_ca
    rng = random.Random(1)
    doctors: list[_Doctor] = []
    listeners: list[asyncio.Task[None]] = []
    booth_http = aiohttp.ClientSession()
    probe: _Probe | None = None
    try:
        # The probe: the development booth and the demo doctor, in a consultation.
        probe_doctor = _Doctor(hub.doctor_port, fleet_ca)
        doctors.append(probe_doctor)
        await probe_doctor.login(
            setup.credentials["username"], setup.credentials["password"], setup.credentials["totp_secret"]
        )
        await probe_doctor.certify()
        probe_doctor_ws = await probe_doctor.ws()
        booth_context = tls.client_context(
            fleet_ca, Path(setup.credentials["booth_certificate"]), Path(setup.credentials["booth_key"])
        )
        probe_booth_ws = await booth_http.ws_connect(f"wss://127.0.0.1:{hub.booth_port}/ws", ssl=booth_context)
        probe = _Probe(probe_booth_ws, probe_doctor, probe_doctor_ws)
        await probe.open(setup.credentials["booth"])
        # Doctors who only watch the queue.
        for username, password, secret in setup.load_doctors:
            doctor = _Doctor(hub.doctor_port, fleet_ca)
            doctors.append(doctor)
            await doctor.login(username, password, secret)
            listeners.append(asyncio.get_running_loop().create_task(_listen(doctor, await doctor.ws())))

        steps: list[dict[str, Any]] = []
        connected = 0
        connect_rate = 0.0
        last_overhead = 0.0
        previous_sent: dict[str, int] = {}
        for target in plan:
            if not hub.alive():
                return steps, "hub_exited"
            delta = target - connected
            if connect_rate and time.monotonic() + delta / connect_rate + last_overhead > deadline:
                return steps, "budget"
            step_started = time.monotonic()
            booths = await asyncio.to_thread(setup.mint, setup.minted + 1, setup.minted + delta)
            shares = [booths[index :: len(workers)] for index in range(len(workers))]
            cpu_before, wall_before = hub.cpu_seconds(), time.monotonic()
            grown = await asyncio.gather(
                *(
                    worker.ask("grow", (share, deadline), timeout=max(60.0, deadline - time.monotonic() + 60))
                    for worker, share in zip(workers, shares, strict=True)
                )
            )
            connect_seconds = time.monotonic() - wall_before
            connect_cpu = (hub.cpu_seconds() - cpu_before) / max(connect_seconds, 1e-9) * 100
            ok = sum(g["connected"] for g in grown)
            failed = sum(g["failed"] for g in grown)
            skipped = sum(g["skipped"] for g in grown)
            connected += ok
            if ok:
                connect_rate = ok / connect_seconds
            await asyncio.sleep(SETTLE_SECONDS)
            before = _sum_stats([await worker.ask("stats") for worker in workers])
            doctor_updates = sum(d.queue_updates for d in doctors)
            cpu_before, wall_before = hub.cpu_seconds(), time.monotonic()
            latencies, lost = await probe.measure(probes, rng)
            window = time.monotonic() - wall_before
            step_pauses = hub.full_collections(step_started, time.monotonic())
            window_pauses = hub.full_collections(wall_before, wall_before + window)
            hub_cpu = (hub.cpu_seconds() - cpu_before) / window * 100
            after = _sum_stats([await worker.ask("stats") for worker in workers])
            sent = {
                key: after["sent"].get(key, 0) - before["sent"].get(key, 0)
                for key in ("heartbeat", "announce", "withdraw")
            }
            step: dict[str, Any] = {
                "booths": target,
                "connected": connected,
                "open": after["open"],
                "failed": failed + skipped,
                "disconnected": after["disconnected"],
                "connect_seconds": round(connect_seconds, 2),
                "connects_per_second": round(ok / connect_seconds, 1) if connect_seconds else None,
                "connect_hub_cpu_percent": round(connect_cpu, 1),
                "lost": lost,
                **(summary_ms(latencies) if latencies else {}),
                "hub_cpu_percent": round(hub_cpu, 1),
                "hub_full_gc": len(step_pauses),
                "hub_full_gc_max_ms": round(max(step_pauses, default=0.0) * 1000, 1),
                "probe_window_full_gc_ms": round(sum(window_pauses, 0.0) * 1000, 1),
                "hub_rss_mib": hub.rss_mib() if hub.alive() else None,
                "load_rss_mib": round(sum(rss_mib(worker.process.pid) for worker in workers), 1),
                "booth_messages_per_second": round(sum(sent.values()) / window, 1),
                "queue_updates_per_second": round((sum(d.queue_updates for d in doctors) - doctor_updates) / window, 1),
                "queue_entries": probe_doctor.queue_entries,
            }
            if after["close_codes"]:
                step["close_codes"] = after["close_codes"]
            if lost and (reason := probe.failure()):
                step["probe_failure"] = reason
            if after["received"].get("error"):
                step["booth_errors"] = after["received"]["error"]  # the hub refused a load booth's message
            if after["connect_errors"]:
                step["connect_errors"] = after["connect_errors"]
            if after["sent"].get("send_failed", 0) != previous_sent.get("send_failed", 0):
                step["send_failed"] = after["sent"]["send_failed"]
            previous_sent = after["sent"]
            steps.append(step)
            last_overhead = time.monotonic() - step_started - connect_seconds
            if skipped and not failed:
                return steps, "budget"
            if failed or after["disconnected"] or after["open"] != connected or lost or not hub.alive():
                return steps, "failures" if hub.alive() else "hub_exited"
            if step["p99_ms"] >= P99_LIMIT_MS:
                return steps, "p99"
        return steps, "max_booths"
    finally:
        if probe is not None:
            await probe.close()
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        for doctor in doctors:
            await doctor.http.close()
        await booth_http.close()


def _available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 1e9


def _plan(steps: Sequence[int], cap: int) -> list[int]:
    return sorted({step for step in steps if 0 < step < cap} | {cap})


def run(
    *,
    max_booths: int = DEFAULT_MAX_BOOTHS,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    probes: int = PROBES,
    workers: int = WORKERS,
    steps: Sequence[int] = STEPS,
) -> dict[str, Any]:
    """Ramp booth connections on one hub process; the figures as a JSON-ready dict."""
    if probes < 1 or max_booths < 1:
        raise ValueError("probes and max_booths must be at least 1")
    started = time.monotonic()
    cores = sorted(os.sched_getaffinity(0))
    hub_core = cores[0]
    load_cores = tuple(cores[1:] or cores)
    own_affinity = set(cores)
    own_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = raise_nofile()
    limits = {
        "max_booths": max_booths,
        "nofile": nofile["soft"] - FD_MARGIN,
        "memory": int(_available_mib() * MEMORY_SHARE / MIB_PER_BOOTH),
    }
    cap = min(limits.values())
    plan = _plan(steps, cap)
    context = multiprocessing.get_context("spawn")
    pool: list[_Worker] = []
    hub: _Hub | None = None
    tmp = tempfile.TemporaryDirectory(prefix="hub-capacity-")
    try:
        os.sched_setaffinity(0, load_cores)
        hub = _hub(Path(tmp.name) / "state", Path(tmp.name) / "run", hub_core)
        setup = _make_state(hub.dev, LOAD_DOCTORS)
        _start_hub(hub, hub_core)
        options = WorkerOptions(
            url=f"wss://127.0.0.1:{hub.booth_port}/ws",
            fleet_ca=str(StatePaths(setup.root).fleet_ca),
            key_file=str(setup.key_file),
            cores=load_cores,
            seed=0,
        )
        for index in range(max(1, workers)):
            parent, child = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(child, replace(options, seed=index)),
                name=f"hub-capacity-load-{index}",
                daemon=True,
            )
            process.start()
            child.close()
            pool.append(_Worker(process, parent))
        results, stop_reason = asyncio.run(_ramp(setup, hub, pool, plan, probes, started + budget_seconds))
        if stop_reason == "max_booths":
            stop_reason = min(limits, key=lambda name: limits[name])
        hub_nofile = hub.nofile() if hub.alive() else None
        pauses = hub.full_collections(0.0)
        hub_failure = None if hub.alive() else hub.log_tail()
    finally:
        for worker in pool:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(("stop", None))
        for worker in pool:
            worker.process.join(15)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.conn.close()
        if hub is not None:
            hub.dev.stop()
        tmp.cleanup()
        os.sched_setaffinity(0, own_affinity)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, own_limit)
    good = [
        step["booths"]
        for step in results
        if step["connected"] == step["booths"] == step["open"]
        and not step["failed"]
        and not step["disconnected"]
        and not step["lost"]
        and step.get("p99_ms", float("inf")) < P99_LIMIT_MS
    ]
    report: dict[str, Any] = {
        "bench": "hub_capacity",
        "core": hub_core,
        "load_cores": list(load_cores),
        "nofile": {**nofile, "hub": hub_nofile},
        "p99_limit_ms": P99_LIMIT_MS,
        "probes_per_step": probes,
        "load": {
            "workers": len(pool),
            "heartbeat_seconds": HEARTBEAT_SECONDS,
            "patient_interval_seconds": PATIENT_INTERVAL_SECONDS,
            "wait_seconds": list(WAIT_SECONDS),
            "doctors": 1 + LOAD_DOCTORS,
        },
        "steps": results,
        "stop_reason": stop_reason,
        "capacity_booths": max(good, default=0),
        "hub_rss_kib_per_booth": _rss_slope(results),
        "hub_full_gc": {"count": len(pauses), "max_ms": round(max(pauses, default=0.0) * 1000, 1)},
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    if hub_failure:
        report["hub_log_tail"] = hub_failure
    return report


def _rss_slope(steps: Sequence[dict[str, Any]]) -> float | None:
    """Hub memory per extra booth, from the first to the last step."""
    measured = [step for step in steps if step.get("hub_rss_mib") is not None]
    if len(measured) < 2 or measured[-1]["open"] == measured[0]["open"]:
        return None
    grown: float = measured[-1]["hub_rss_mib"] - measured[0]["hub_rss_mib"]
    booths: int = measured[-1]["open"] - measured[0]["open"]
    return round(grown * 1024 / booths, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hub_capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-booths", type=int, default=DEFAULT_MAX_BOOTHS, help="largest step (default %(default)s)")
    parser.add_argument(
        "--budget-seconds", type=float, default=DEFAULT_BUDGET_SECONDS, help="time for the ramp (default %(default)s)"
    )
    parser.add_argument("--probes", type=int, default=PROBES, help="signalling probes per step (default %(default)s)")
    parser.add_argument("--workers", type=int, default=WORKERS, help="load processes (default %(default)s)")
    args = parser.parse_args(argv)
    report = run(
        max_booths=args.max_booths, budget_seconds=args.budget_seconds, probes=args.probes, workers=args.workers
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
