"""The card reader against a real, private pcscd with vpcd and our virtual cards."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kiosk.identity.errors import CardError, Reason
from kiosk.identity.pcsc import CardInserted, CardRemoved, PcscMonitor, ReaderAdded, ReaderRemoved, read_card
from kiosk.identity.virtual import cards
from kiosk.identity.virtual import pcscd as pcscd_support
from kiosk.identity.virtual.vpcd import VirtualCardRunner

pytestmark = [
    pytest.mark.pcscd,
    pytest.mark.skipif(pcscd_support.available() is not None, reason=str(pcscd_support.available())),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pcscd_support.PrivatePcscd]:
    with pcscd_support.private_pcscd(tmp_path_factory.mktemp("pcscd")) as d:
        yield d


@pytest.fixture
async def monitor(daemon: pcscd_support.PrivatePcscd) -> AsyncIterator[PcscMonitor]:
    async with PcscMonitor(poll_timeout=0.2) as m:
        assert m.available
        yield m


class Slots:
    """Inserts virtual cards and removes them all at teardown."""

    def __init__(self, daemon: pcscd_support.PrivatePcscd, monitor: PcscMonitor) -> None:
        self.daemon = daemon
        self.monitor = monitor
        self.runners: list[VirtualCardRunner] = []

    async def insert(self, kind: str, slot: int = 0) -> VirtualCardRunner:
        runner = VirtualCardRunner(cards.make_card(kind), port=self.daemon.port + slot)
        await runner.insert()
        self.runners.append(runner)
        return runner

    async def remove_all(self) -> None:
        for r in self.runners:
            await r.remove()
        await wait_until(lambda: all(v is None for v in self.monitor.readers.values()), 3.0)


async def wait_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def slots(daemon: pcscd_support.PrivatePcscd, monitor: PcscMonitor) -> AsyncIterator[Slots]:
    s = Slots(daemon, monitor)
    yield s
    await s.remove_all()


def test_private_daemon_leaves_host_run_alone(daemon: pcscd_support.PrivatePcscd) -> None:
    assert daemon.socket_path.exists()
    assert os.environ[pcscd_support.SOCKET_ENV] == str(daemon.socket_path)
    if daemon.isolated_run:
        assert not Path("/run/pcscd/pcscd.pid").exists() or Path("/run/pcscd/pcscd.pid").read_text().strip() != str(
            daemon.process.pid if daemon.process else ""
        )


async def test_monitor_lists_both_vpcd_slots(monitor: PcscMonitor, daemon: pcscd_support.PrivatePcscd) -> None:
    assert set(daemon.reader_names) <= set(monitor.readers)


async def test_single_card(monitor: PcscMonitor, slots: Slots) -> None:
    runner = await slots.insert("vitale")
    result = await read_card(monitor, timeout=5)
    (b,) = result.identity.beneficiaries
    assert (b.surname, b.first_name, b.birth_date) == (cards.SINGLE.surname, "ZORAN", cards.SINGLE.birth_date)
    assert b.nir.reveal() == cards.SINGLE.nir and b.nir.key_valid
    assert result.identity.inaccessible_files == ("2006 RIGHTS",)
    assert runner.inserted_at is not None and runner.inserted_at <= result.inserted_at <= result.identity_at


async def test_family_card_in_the_second_reader(monitor: PcscMonitor, slots: Slots) -> None:
    await slots.insert("family", slot=1)
    result = await read_card(monitor, timeout=5)
    assert result.reader == "Virtual PCD 00 01"
    assert [b.first_name for b in result.identity.beneficiaries] == ["ORIANE", "NILO", "YSALINE"]


async def test_protected_files_reported(monitor: PcscMonitor, slots: Slots) -> None:
    await slots.insert("protected")
    result = await read_card(monitor, timeout=5)
    assert len(result.identity.beneficiaries) == 1
    assert set(result.identity.inaccessible_files) == {"2F10 CERTIF", "2005 DEPEND", "2006 RIGHTS"}


@pytest.mark.parametrize(("kind", "reason"), [("bank", Reason.NOT_VITALE), ("garbage", Reason.UNREADABLE)])
async def test_cards_that_are_not_readable(monitor: PcscMonitor, slots: Slots, kind: str, reason: Reason) -> None:
    await slots.insert(kind)
    with pytest.raises(CardError) as info:
        await read_card(monitor, timeout=5)
    assert info.value.reason is reason


async def test_insert_and_remove_events(monitor: PcscMonitor, slots: Slots) -> None:
    q = monitor.subscribe()
    runner = await slots.insert("vitale", slot=1)
    ev = await asyncio.wait_for(q.get(), 3)
    assert isinstance(ev, CardInserted) and ev.reader == "Virtual PCD 00 01"
    assert ev.atr == cards.ATR_VITALE and not ev.mute
    await runner.remove()
    ev = await asyncio.wait_for(q.get(), 3)
    assert isinstance(ev, CardRemoved) and ev.reader == "Virtual PCD 00 01"
    assert monitor.readers["Virtual PCD 00 01"] is None


async def test_pulled_mid_read_then_next_card_reads(monitor: PcscMonitor, slots: Slots) -> None:
    runner = await slots.insert("pulled")
    with pytest.raises(CardError) as info:
        await read_card(monitor, timeout=5)
    assert info.value.reason is Reason.REMOVED
    assert runner.pulled.is_set()
    await slots.remove_all()
    await slots.insert("vitale")
    result = await read_card(monitor, timeout=5)
    assert len(result.identity.beneficiaries) == 1


async def test_mute_card_fails_within_timeout(monitor: PcscMonitor, slots: Slots) -> None:
    await slots.insert("mute")
    start = time.monotonic()
    with pytest.raises(CardError) as info:
        await read_card(monitor, timeout=2)
    assert info.value.reason in (Reason.MUTE, Reason.TIMEOUT)
    assert time.monotonic() - start < 2 + 1.5


async def test_card_silent_from_the_start_is_no_card(monitor: PcscMonitor, slots: Slots) -> None:
    # vpcd reports no card when the ATR request is never answered.
    await slots.insert("mute-atr")
    with pytest.raises(CardError) as info:
        await read_card(monitor, timeout=1)
    assert info.value.reason is Reason.NO_CARD


async def test_no_patient_data_in_logs(monitor: PcscMonitor, slots: Slots, caplog: pytest.LogCaptureFixture) -> None:
    await slots.insert("family")
    await read_card(monitor, timeout=5)
    assert "card read: 3 beneficiaries" in caplog.text
    for p in (cards.PARENT, cards.CHILD_1, cards.CHILD_2):
        for secret in (p.surname, p.first_name, p.nir, p.nir[:13]):
            assert secret not in caplog.text


# -- CLI ---------------------------------------------------------------------


def _cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "kiosk.identity.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _emulate(daemon: pcscd_support.PrivatePcscd, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk.identity.cli", "emulate", *args, "--vpcd", f"127.0.0.1:{daemon.port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("connected"):
        proc.kill()
        _out, err = proc.communicate(timeout=5)
        pytest.fail(f"emulator did not connect: {line!r} {err!r}")
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    _out, err = proc.communicate(timeout=5)  # also closes the pipes
    assert proc.returncode == 0, err
    _wait_no_card()


def _wait_no_card(timeout: float = 3.0) -> None:
    # pcscd notices a vpcd removal at its next presence poll (~400 ms): wait
    # for it so the next test does not meet the previous card on its way out.
    from smartcard import scard

    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hr == scard.SCARD_S_SUCCESS
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hr, names = scard.SCardListReaders(ctx, [])
            hr, states = scard.SCardGetStatusChange(ctx, 0, [(n, scard.SCARD_STATE_UNAWARE) for n in names])
            if not any(state & scard.SCARD_STATE_PRESENT for _n, state, _atr in states):
                return
            time.sleep(0.05)
        pytest.fail("the card was not removed in time")
    finally:
        scard.SCardReleaseContext(ctx)


def test_cli_reads_json_with_identity_file(daemon: pcscd_support.PrivatePcscd, tmp_path: Path) -> None:
    demo = {"surname": "DEMOLINE", "first_name": "AXELLE", "birth_date": "1991-04-30", "nir": "2910499999005"}
    path = tmp_path / "card.json"
    path.write_text(json.dumps(demo))
    proc = _emulate(daemon, "vitale", "--identity", str(path))
    try:
        out = _cli("read", "--json", "--timeout", "5")
    finally:
        _stop(proc)
    assert out.returncode == 0, out.stderr
    (b,) = json.loads(out.stdout)["beneficiaries"]
    assert b["surname"] == "DEMOLINE" and b["first_name"] == "AXELLE" and b["birth_date"] == "1991-04-30"
    assert b["nir"].startswith("2910499999005") and len(b["nir"]) == 15


def test_cli_text_masks_the_nir(daemon: pcscd_support.PrivatePcscd) -> None:
    proc = _emulate(daemon, "family")
    try:
        out = _cli("read", "--timeout", "5")
    finally:
        _stop(proc)
    assert out.returncode == 0, out.stderr
    assert "ORIANE" in out.stdout and cards.PARENT.nir not in out.stdout and "2 79 05 **" in out.stdout


def test_cli_bank_card_one_line_error(daemon: pcscd_support.PrivatePcscd) -> None:
    proc = _emulate(daemon, "bank")
    try:
        out = _cli("read", "--json", "--timeout", "5")
    finally:
        _stop(proc)
    assert out.returncode == 7
    assert out.stderr.strip().splitlines() == ["error: not_vitale: This card is not a Carte Vitale."]
    assert out.stdout == ""


def test_cli_no_card(daemon: pcscd_support.PrivatePcscd) -> None:
    out = _cli("read", "--timeout", "0.5")
    assert out.returncode == 4 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_cli_without_pcscd(tmp_path: Path) -> None:
    env_sock = str(tmp_path / "nothing-here.comm")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PCSCLITE_CSOCK_NAME=env_sock)
    out = subprocess.run(
        [sys.executable, "-m", "kiosk.identity.cli", "read", "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
    )
    assert out.returncode == 10
    assert out.stderr.strip() == "error: pcsc: The smart-card service is not available."


# -- service restart (last: it restarts the module's daemon) ------------------


async def test_readers_disappear_and_come_back_with_pcscd(daemon: pcscd_support.PrivatePcscd) -> None:
    async with PcscMonitor(poll_timeout=0.2, retry_interval=0.1) as monitor:
        q = monitor.subscribe()
        await asyncio.to_thread(daemon.stop)
        removed: set[str] = set()
        while removed != set(daemon.reader_names):
            ev = await asyncio.wait_for(q.get(), 5)
            if isinstance(ev, ReaderRemoved):
                removed.add(ev.reader)
        await wait_until(lambda: not monitor.available, 3)
        with pytest.raises(CardError) as info:
            await monitor.wait_for_card(timeout=0.1)
        assert info.value.reason is Reason.PCSC
        await asyncio.to_thread(daemon.start)
        added: set[str] = set()
        while added != set(daemon.reader_names):
            ev = await asyncio.wait_for(q.get(), 5)
            if isinstance(ev, ReaderAdded):
                added.add(ev.reader)
        runner = VirtualCardRunner(cards.make_card("vitale"), port=daemon.port)
        await runner.insert()
        try:
            result = await read_card(monitor, timeout=5)
        finally:
            await runner.remove()
        assert len(result.identity.beneficiaries) == 1
