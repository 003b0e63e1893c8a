"""Sealed records end to end: a real hub over mutual TLS, the kiosk-uploader process, kill -9, a stolen booth."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from hub.records import export, records_key_paths
from hub.tls import client_context
from kiosk.demo.hub import DevHub, stop_process
from kiosk.records.seal import load_private_key, load_public_key, open_record, seal
from kiosk.records.service import SealedRecords, open_records
from kiosk.records.spool import RecordsWriter, Spool
from kiosk.records.uploader import SHA256_HEADER, Uploader, UploaderConfig
from kiosk.session.binding import Sas
from kiosk.session.consultation import ChatEvent, FileEvent, MeasurementEvent, SessionState, StateEvent, VerifiedEvent
from kiosk.ui.controller import Controller
from kiosk.ui.flow import Step, VisitReason
from kiosk.ui.main import empty_directory
from kiosk.ui.services import CardIdentityRead, CardPresented
from tests.ui_fakes import FakeServices, synthetic_identity

ROOT = Path(__file__).resolve().parents[2]
BOOTH = "booth-0001"
PATIENT = synthetic_identity(("TESTDURAND", "Bérénice", datetime.date(1948, 3, 14)))
READINGS = {"spo2": 93.0, "pulse": 117.0}
TEMPERATURE = {"celsius": 38.7}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHub]:
    with DevHub(tmp_path_factory.mktemp("records-hub") / "state") as running:
        yield running


def uploader(hub: DevHub, state: Path) -> Uploader:
    paths = hub.paths
    return Uploader(
        UploaderConfig(state, hub.booth_url, paths.fleet_ca, paths.booth_cert(BOOTH), paths.booth_key(BOOTH)),
        poll_seconds=0.1,
        backoff_first=0.05,
        backoff_max=0.5,
    )


def records_writer(hub: DevHub, state: Path, booth: str = BOOTH) -> RecordsWriter:
    public = load_public_key(records_key_paths(hub.state)[1].read_bytes())
    return RecordsWriter(Spool(state / "records"), public, booth)


def inbox(hub: DevHub, booth: str = BOOTH) -> dict[str, Path]:
    return {path.stem: path for path in (hub.state / "records" / booth).glob("*.rec")}


def operator_key(hub: DevHub):  # type: ignore[no-untyped-def]
    return load_private_key(records_key_paths(hub.state)[0].read_bytes())


def uploader_command(hub: DevHub, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kiosk.records.uploader",
        "--state",
        str(state),
        "--hub-state",
        str(hub.state),
        "--hub",
        hub.booth_url,
        *extra,
    ]


# -- upload over mutual TLS ----------------------------------------------------------------------------
async def test_records_arrive_verified_and_leave_the_spool(hub: DevHub, tmp_path: Path) -> None:
    writer = records_writer(hub, tmp_path)
    payloads = {writer.write("still", os.urandom(size), {"mime": "image/jpeg"}): size for size in (0, 10, 2_500_000)}
    sent = uploader(hub, tmp_path)
    assert await sent.once() == 0
    assert writer.spool.pending() == []
    stored = inbox(hub)
    assert set(payloads) <= set(stored)
    key = operator_key(hub)
    for record_id, size in payloads.items():
        assert len(open_record(stored[record_id].read_bytes(), key).payload) == size


async def test_a_retried_upload_is_acknowledged_once_and_a_conflict_set_aside(hub: DevHub, tmp_path: Path) -> None:
    writer = records_writer(hub, tmp_path)
    record_id = writer.write("chat", b"hello", {})
    original = writer.spool.pending()[0].path.read_bytes()
    assert await uploader(hub, tmp_path).once() == 0
    before = inbox(hub)[record_id].stat().st_mtime_ns
    # The booth crashed before deleting: the same record goes again, the hub acknowledges, nothing duplicates.
    (tmp_path / "records" / f"{time.time_ns():020d}-{record_id}.rec").write_bytes(original)
    events: list[tuple[str, dict[str, object]]] = []
    again = uploader(hub, tmp_path)
    again.report = lambda event, fields: events.append((event, fields))
    assert await again.once() == 0
    assert events == [("uploaded", {"record": record_id, "size": len(original), "again": True})]
    assert inbox(hub)[record_id].stat().st_mtime_ns == before
    # Different bytes under the same id: 409, and the booth keeps the record aside rather than lose it.
    public = load_public_key(records_key_paths(hub.state)[1].read_bytes())
    forged = seal(b"other", public, record_id=record_id, kind="chat", booth_id=BOOTH, created_ms=1)
    (tmp_path / "records" / f"{time.time_ns():020d}-{record_id}.rec").write_bytes(forged)
    assert await again.once() == 0
    assert events[-1][0] == "rejected" and events[-1][1]["reason"] == "conflict"
    assert len(again.spool.rejected()) == 1
    assert inbox(hub)[record_id].read_bytes() == original


async def test_a_booth_cannot_upload_for_another_booth(hub: DevHub, tmp_path: Path) -> None:
    writer = records_writer(hub, tmp_path, booth="booth-0002")
    writer.write("chat", b"hello", {})
    sent = uploader(hub, tmp_path)  # with booth-0001's certificate
    assert await sent.once() == 0
    assert len(sent.spool.rejected()) == 1
    assert not (hub.state / "records" / "booth-0002").exists()


async def test_the_hub_checks_the_hash_and_wants_a_booth_certificate(hub: DevHub, tmp_path: Path) -> None:
    public = load_public_key(records_key_paths(hub.state)[1].read_bytes())
    record_id = "ee" * 16
    body = seal(b"x", public, record_id=record_id, kind="chat", booth_id=BOOTH, created_ms=1)
    paths = hub.paths
    context = client_context(paths.fleet_ca, paths.booth_cert(BOOTH), paths.booth_key(BOOTH))
    url = f"https://localhost:{hub.booth_port}/records/{record_id}"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client,
        client.put(url, data=body, headers={SHA256_HEADER: "0" * 64}) as response,
    ):
        assert response.status == 400 and (await response.json())["error"] == "bad_hash"
    digest = hashlib.sha256(body).hexdigest()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(paths.fleet_ca))) as client:
        with pytest.raises(aiohttp.ClientError):
            await client.put(url, data=body, headers={SHA256_HEADER: digest})
    assert record_id not in inbox(hub)


# -- kill -9 while writing ---------------------------------------------------------------------------------
def _writer_child(state: Path, public_pem: bytes, acks: int) -> None:
    # In a forked child: write records forever; a record's id and payload hash go to the pipe only once
    # write() returned, i.e. once the record is durable. That line is the "acknowledgement".
    writer = RecordsWriter(Spool(state / "records"), load_public_key(public_pem), BOOTH)
    rng = random.Random(os.getpid())
    while True:
        payload = rng.randbytes(rng.choice((10, 5_000, 70_000, 300_000)))
        record_id = writer.write("still", payload, {"n": "x"})
        os.write(acks, f"{record_id} {hashlib.sha256(payload).hexdigest()}\n".encode())


@pytest.mark.timeout(240)
def test_kill_9_during_writes_loses_and_corrupts_nothing(hub: DevHub, tmp_path: Path) -> None:
    public_pem = records_key_paths(hub.state)[1].read_bytes()
    key = operator_key(hub)
    acknowledged: dict[str, str] = {}
    upload = subprocess.Popen(
        uploader_command(hub, tmp_path, "--poll", "0.05", "--backoff-max", "0.5"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kills, uploader_kills = 0, 0
    deadline = time.monotonic() + 75
    rng = random.Random(5)
    try:
        while kills < 300 and time.monotonic() < deadline:
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child never returns
                try:
                    os.close(read_end)
                    _writer_child(tmp_path, public_pem, write_end)
                finally:
                    os._exit(1)
            os.close(write_end)
            time.sleep(rng.uniform(0.0, 0.08))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            kills += 1
            with os.fdopen(read_end, "rb") as pipe:
                for line in pipe.read().decode().splitlines():
                    record_id, _, digest = line.partition(" ")
                    if len(digest) == 64:
                        acknowledged[record_id] = digest
            spool = Spool(tmp_path / "records")  # a restart: leftovers of the killed write go
            assert not [path for path in spool.root.iterdir() if path.name.endswith(".tmp")]
            if kills % 60 == 0:
                # The uploader dies mid-work too, and a new one takes over.
                os.kill(upload.pid, signal.SIGKILL)
                upload.wait(10)
                uploader_kills += 1
                upload = subprocess.Popen(
                    uploader_command(hub, tmp_path, "--poll", "0.05", "--backoff-max", "0.5"),
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
    finally:
        stop_process(upload)
    print(json.dumps({"writer_kills": kills, "uploader_kills": uploader_kills, "acknowledged": len(acknowledged)}))
    assert kills >= 100 and uploader_kills >= 1
    # Every complete record left in the spool opens (the booth cannot; the operator's key can).
    for record in Spool(tmp_path / "records").pending():
        open_record(record.path.read_bytes(), key)
    finish = subprocess.run(uploader_command(hub, tmp_path, "--once"), cwd=ROOT, capture_output=True, timeout=120)
    assert finish.returncode == 0, finish.stderr.decode()[-2000:]
    assert Spool(tmp_path / "records").pending() == []
    stored = inbox(hub)
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged records lost"
    for record_id, digest in acknowledged.items():
        assert hashlib.sha256(open_record(stored[record_id].read_bytes(), key).payload).hexdigest() == digest
    assert len(acknowledged) >= 30


# -- a session while the hub is down; a stolen booth --------------------------------------------------------
SAS = Sas("042 917", ("abricot", "balcon", "cigale", "dune"))
STILL = b"\xff\xd8\xff\xe0" + os.urandom(200_000)
PDF = b"%PDF-1.7 synthetic prescription for TESTDURAND\n"


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def patient_app(state: Path, records: SealedRecords) -> AsyncIterator[tuple[Controller, FakeServices]]:
    services = FakeServices()
    services.records = records  # type: ignore[assignment]
    controller = Controller(services)
    runner = asyncio.create_task(controller.run())
    try:
        yield controller, services
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def emulated_session(controller: Controller, services: FakeServices) -> None:
    """A whole consultation: consent, card, queue, call, readings, a still, chat both ways, a file, the end."""
    controller.choose_language("fr")
    controller.accept_consent()
    await services.card.queue.put(CardPresented())
    await services.card.queue.put(CardIdentityRead(PATIENT))
    await settle()
    controller.choose_reason(VisitReason.INFECTION)
    await settle()
    assert controller.step is Step.WAITING
    services.session.emit(StateEvent(SessionState.CONNECTING))
    services.session.emit(VerifiedEvent(SAS, "Dr Demo", "dr.demo"))
    controller.send_chat("J'ai de la fièvre depuis TESTDURAND-hier")
    services.session.emit(ChatEvent("Bonjour Bérénice", from_doctor=True))
    services.session.emit(MeasurementEvent("oximeter", READINGS))
    services.session.emit(MeasurementEvent("temperature", TEMPERATURE))
    services.session.emit(FileEvent("otoscope-20261206.jpg", "image/jpeg", STILL, from_doctor=False))
    services.session.emit(FileEvent("ordonnance-TESTDURAND.pdf", "application/pdf", PDF))
    services.session.emit(StateEvent(SessionState.ENDED, "doctor-ended"))
    controller.finish()
    for _ in range(400):  # the wipe waits for the records to be sealed and fsynced (a worker thread)
        await asyncio.sleep(0.025)
        if controller.wipes:
            break
    assert controller.wipes == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def needles() -> list[bytes]:
    person = PATIENT.beneficiaries[0]
    texts = [person.surname, person.first_name, person.nir.reveal(), "TESTDURAND", "Bérénice", "fièvre"]
    texts += [json.dumps(READINGS), json.dumps(TEMPERATURE), '"spo2": 93', '"celsius": 38.7', "1948-03-14"]
    found = [text.encode() for text in texts] + [text.encode("utf-16-le") for text in texts[:3]]
    return [*found, STILL[4:64], PDF]


def plaintext_under(root: Path) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {needle[:20]!r}" for needle in needles() if needle in data]
    return hits


async def test_stolen_booth_holds_no_plaintext_patient_data(hub: DevHub, tmp_path: Path) -> None:
    state = tmp_path / "booth"
    temp = state / "tmp"  # the app's temporary directory (kiosk.ui.main.prepare_state)
    temp.mkdir(parents=True)
    (temp / "received.pdf").write_bytes(PDF)  # what a real session leaves in the app's temporary directory
    records = open_records(state, records_key_paths(hub.state)[1], BOOTH)
    try:
        async with patient_app(state, records) as (controller, services):
            services.forget = lambda: empty_directory(temp)
            await emulated_session(controller, services)
    finally:
        records.close()
    spooled = Spool(state / "records").pending()
    assert len(spooled) == 11  # consent, identification, 2 chat, 2 readings, still, file, FHIR bundle, report, summary
    assert plaintext_under(state) == []
    # The needles are real: the same search finds them once the operator opened the records.
    assert await uploader(hub, state).once() == 0
    result = export(hub.state, tmp_path / "export")
    assert result.exported >= 9 and not result.failed
    assert plaintext_under(tmp_path / "export")


@pytest.mark.timeout(180)
async def test_hub_down_for_a_whole_session_then_everything_arrives_once(tmp_path: Path) -> None:
    booth_port = free_port()
    hub = DevHub(tmp_path / "hub", booth_port=booth_port)
    hub.init()  # the booth was set up against this hub, which is down now
    state = tmp_path / "booth"
    output = tmp_path / "uploader.jsonl"
    with output.open("w") as stdout:
        upload = await asyncio.to_thread(
            subprocess.Popen,
            uploader_command(hub, state, "--poll", "0.1", "--backoff-max", "1"),
            cwd=ROOT,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
    try:
        records = open_records(state, records_key_paths(hub.state)[1], BOOTH)
        try:
            async with patient_app(state, records) as (controller, services):
                await emulated_session(controller, services)
        finally:
            records.close()
        written = {record.record_id for record in Spool(state / "records").pending()}
        assert len(written) == 11
        await asyncio.sleep(1.5)  # the uploader keeps failing and backing off
        assert upload.poll() is None
        assert {record.record_id for record in Spool(state / "records").pending()} == written
        async with hub:
            for _ in range(300):
                if not Spool(state / "records").pending():
                    break
                await asyncio.sleep(0.1)
            assert Spool(state / "records").pending() == []
            assert set(inbox(hub)) == written
    finally:
        stop_process(upload)
    events = [json.loads(line) for line in output.read_text().splitlines()]
    assert any(event["event"] == "retry" for event in events)
    uploaded = [event["record"] for event in events if event["event"] == "uploaded"]
    assert sorted(uploaded) == sorted(written)  # each exactly once
    result = export(hub.state, tmp_path / "export")
    assert result.exported == 11 and not result.failed
    index = json.loads((tmp_path / "export" / "index.json").read_text())["records"]
    assert sorted(entry["kind"] for entry in index) == sorted(
        [
            "consent",
            "identification",
            "chat",
            "chat",
            "reading",
            "reading",
            "still",
            "file",
            "fhir",
            "report",
            "summary",
        ]
    )
    assert len({entry["meta"]["session"] for entry in index}) == 1


def test_uploader_tells_systemd_it_is_ready_and_alive(hub: DevHub, tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(20)
        process = subprocess.Popen(
            uploader_command(hub, tmp_path, "--poll", "0.1"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
        )
        try:
            messages = [notify.recv(256).decode() for _ in range(3)]
        finally:
            stop_process(process)
    assert messages[0] == "READY=1" and "WATCHDOG=1" in messages[1:]
