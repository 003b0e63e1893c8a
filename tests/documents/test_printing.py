"""Printing through a real CUPS: a private cupsd (own config, loopback port), a raw queue whose device is a
``socket://`` printer the test listens as, so the bytes CUPS delivers are compared with what the booth verified."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub import pki
from hub.app import StatePaths, init_dev_state
from hub.prescriptions import Prescriptions, check_request
from kiosk.documents.errors import PrescriptionRejected, PrintError
from kiosk.documents.intake import PrescriptionIntake, cups_printer
from kiosk.documents.printing import PrinterConfig, print_pdf


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cups:
    server: str
    log: Path


@pytest.fixture(autouse=True)
def _quiet_pyhanko(caplog: pytest.LogCaptureFixture) -> None:
    for name in ("pyhanko", "pyhanko_certvalidator"):
        caplog.set_level(logging.CRITICAL, logger=name)


@pytest.fixture
def cups() -> Iterator[Cups]:
    # cupsd drops to "lp" for backends, which read the job from the spool: pytest's tmp_path sits under a
    # 0700 directory, so the private instance lives in its own world-traversable directory under /tmp.
    root = Path(tempfile.mkdtemp(prefix="kiosk-cups-"))
    root.chmod(0o755)
    for name in ("conf", "spool/tmp", "cache", "state", "log"):
        (root / name).mkdir(parents=True)
    (root / "spool/tmp").chmod(0o1777)
    port = _free_port()
    (root / "conf/cups-files.conf").write_text(
        f"ServerRoot {root}/conf\nRequestRoot {root}/spool\nTempDir {root}/spool/tmp\nCacheDir {root}/cache\n"
        f"StateDir {root}/state\nAccessLog {root}/log/access_log\nErrorLog {root}/log/error_log\n"
        f"PageLog {root}/log/page_log\nSystemGroup root\nUser lp\nGroup lp\n"
    )
    (root / "conf/cupsd.conf").write_text(
        f"Listen 127.0.0.1:{port}\nLogLevel info\nWebInterface No\nBrowsing No\nDefaultAuthType None\n"
        "<Location />\n  Order allow,deny\n  Allow 127.0.0.1\n</Location>\n"
        "<Location /admin>\n  Order allow,deny\n  Allow 127.0.0.1\n</Location>\n"
        "<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n"
    )
    process = subprocess.Popen(
        ["cupsd", "-f", "-c", str(root / "conf/cupsd.conf"), "-s", str(root / "conf/cups-files.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["lpstat", "-h", server, "-r"], capture_output=True).returncode != 0:
            assert process.poll() is None, (root / "log/error_log").read_text()
            assert time.monotonic() < deadline, "cupsd did not start"
            time.sleep(0.2)
        yield Cups(server, root / "log/error_log")
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


class SocketPrinter:
    """An AppSocket (JetDirect, port 9100 style) printer on loopback: it keeps every job's bytes."""

    def __init__(self) -> None:
        self.jobs: asyncio.Queue[bytes] = asyncio.Queue()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SocketPrinter:
        self._server = await asyncio.start_server(self._job, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _job(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.jobs.put(await reader.read())
        writer.close()

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@contextlib.asynccontextmanager
async def queue(cups: Cups, name: str = "booth") -> AsyncIterator[SocketPrinter]:
    async with SocketPrinter() as printer:
        command = ["lpadmin", "-h", cups.server, "-p", name, "-E", "-v", f"socket://127.0.0.1:{printer.port}"]
        deadline = time.monotonic() + 10
        while True:
            result = await asyncio.to_thread(subprocess.run, [*command, "-m", "raw"], capture_output=True, text=True)
            # Under a loaded CI machine, cupsd answered the readiness probe and then refused lpadmin's first
            # connection ("Unable to connect to server: Bad file descriptor"): only that is tried again.
            if "Unable to connect to server" not in result.stderr or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert result.returncode == 0, result.stderr
        yield printer


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    state = tmp_path_factory.mktemp("rx") / "hub"
    init_dev_state(state)
    paths = StatePaths(state)
    prescriptions = Prescriptions(state, pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key))
    issued = prescriptions.issue(
        "dr.demo", "Dr Demo", check_request("Lou, 7 ans", "Paracétamol 250 mg"), now=time.time()
    )
    return paths.fleet_ca.read_bytes(), issued.pdf


@pytest.mark.timeout(180)
async def test_verified_prescription_reaches_the_printer(cups: Cups, signed: tuple[bytes, bytes]) -> None:
    root, pdf = signed
    async with queue(cups) as printer:
        intake = PrescriptionIntake(root, cups_printer(PrinterConfig("booth", server=cups.server)))
        verified, job = await intake.receive(pdf)
        assert job is not None and job.startswith("booth-")
        delivered = await asyncio.wait_for(printer.jobs.get(), 60)
    assert delivered == pdf == verified.pdf


@pytest.mark.timeout(180)
async def test_modified_prescription_is_not_printed(cups: Cups, signed: tuple[bytes, bytes]) -> None:
    root, pdf = signed
    mutated = bytearray(pdf)
    mutated[len(mutated) // 2] ^= 0x01
    async with queue(cups) as printer:
        intake = PrescriptionIntake(root, cups_printer(PrinterConfig("booth", server=cups.server)))
        with pytest.raises(PrescriptionRejected):
            await intake.receive(bytes(mutated))
        # CUPS received no job at all (not merely none delivered yet).
        command = ["lpstat", "-h", cups.server, "-W", "all", "-o"]
        jobs = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
        assert jobs.stdout.strip() == ""
        assert printer.jobs.empty()


@pytest.mark.timeout(120)
async def test_unknown_queue_is_a_print_error(cups: Cups) -> None:
    with pytest.raises(PrintError) as caught:
        await print_pdf(b"%PDF-1.4\n", PrinterConfig("no-such-queue", server=cups.server), title="t")
    assert caught.value.queue == "no-such-queue"


async def test_unreachable_server_is_a_print_error() -> None:
    with pytest.raises(PrintError):
        await print_pdf(b"%PDF-1.4\n", PrinterConfig("booth", server=f"127.0.0.1:{_free_port()}"), title="t")
