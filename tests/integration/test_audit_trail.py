"""The audit trail across a real hub and a real booth link (mutual TLS): chains, heads as anchors, the CLIs.

The booth's chain head travels as an ``audit_head`` message on the production
signalling link (:class:`kiosk.session.consultation.BoothSession`'s
:class:`~kiosk.session.hub_link.HubLink`); the hub keeps it in its SQLite
store; ``kiosk-hub audit heads`` prints the anchors and ``kiosk audit verify
--anchors`` uses them to catch what the booth's files alone cannot show.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from hub.app import RunningHub, StatePaths, init_dev_state, start
from hub.audit import MIN_HEAD_INTERVAL
from hub.config import HubConfig
from kiosk.audit import AuditLog, verify_directory
from kiosk.audit.booth import BoothAudit
from kiosk.audit.chain import parse_line
from kiosk.audit.log import LOG_FILE
from kiosk.session.binding import FleetTrust, IdentityKey
from kiosk.session.consultation import BoothCredentials, BoothMedia, BoothSession
from kiosk.session.emulated import EmulationSettings
from kiosk.session.hub_link import HubEndpoint
from kiosk.session.peripherals import Peripherals
from kiosk.ui.main import emulated_stack
from tests.ui_fakes import FakeCard

pytestmark = pytest.mark.timeout(120)
BOOTH = "booth-0001"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit") / "hub"
    init_dev_state(root)
    return root


@pytest.fixture
async def hub(template: Path, tmp_path: Path) -> AsyncIterator[tuple[RunningHub, Path]]:
    root = tmp_path / "hub"
    shutil.copytree(template, root)
    running = await start(HubConfig(state=root, port=0, booth_port=0))
    try:
        yield running, root
    finally:
        await running.stop()


def booth_session(running: RunningHub, root: Path) -> BoothSession:
    paths = StatePaths(root)
    key = load_pem_private_key(paths.booth_key(BOOTH).read_bytes(), password=None)
    assert isinstance(key, IdentityKey)
    return BoothSession(
        hub=HubEndpoint(
            f"wss://localhost:{running.booth_port}/ws", paths.fleet_ca, paths.booth_cert(BOOTH), paths.booth_key(BOOTH)
        ),
        credentials=BoothCredentials(
            BOOTH, paths.booth_cert(BOOTH).read_text(), key, FleetTrust(paths.fleet_ca.read_bytes())
        ),
        media=BoothMedia(VideoStreamTrack(), VideoStreamTrack(), AudioStreamTrack(), AudioStreamTrack()),
        peripherals=Peripherals(),
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    module = "hub.cli" if args[0] == "kiosk-hub" else "kiosk.cli"
    return subprocess.run(
        [sys.executable, "-m", module, *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        check=False,
    )


def events(directory: Path) -> list[str]:
    return [parse_line(line).event for line in (directory / LOG_FILE).read_bytes().splitlines()]


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait for ``condition`` (``what`` names it in the failure)."""
    try:
        async with asyncio.timeout(20):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for: {what}")


async def test_booth_heads_anchor_its_chain_at_the_hub(hub: tuple[RunningHub, Path], tmp_path: Path) -> None:
    running, hub_root = hub
    booth_state = tmp_path / "booth"
    session = booth_session(running, hub_root)
    log = AuditLog(booth_state / "audit", source="booth", journal=None)
    audit = BoothAudit(log, send_head=lambda seq, digest: session.link.send("audit_head", seq=seq, hash=digest))
    session.add_listener(audit.session_event)
    await session.start()
    try:
        await session.link.wait_connected(20)
        # hub_connected is recorded, then the head goes to the hub at once.
        await until(lambda: audit.heads_sent >= 1, "first head")
        await until(lambda: running.heads is not None and running.heads.anchors(BOOTH)["anchors"], "anchor kept")
        audit.flow_event("consent_given")
        for phase in ("started", "done"):
            audit.record("peripheral_command", command="bp.start", phase=phase, detail="")
        await asyncio.sleep(MIN_HEAD_INTERVAL + 0.1)  # the hub keeps at most one head a second per booth
        assert await audit.report_head()
        assert log.head is not None
        final = log.head
        assert running.heads is not None
        await until(lambda: running.heads.anchors(BOOTH)["anchors"][-1]["seq"] == final.seq, "last head")

        heads = cli("kiosk-hub", "audit", "heads", "--state", str(hub_root), "--booth", BOOTH)
        assert heads.returncode == 0, heads.stderr
        anchors_file = tmp_path / "anchors.json"
        anchors_file.write_text(heads.stdout)
        assert json.loads(heads.stdout)["anchors"][-1] == {
            "seq": final.seq,
            "hash": final.hash,
            "received": json.loads(heads.stdout)["anchors"][-1]["received"],
            "conflict": False,
        }
        intact = cli("kiosk", "audit", "verify", "--state", str(booth_state), "--anchors", str(anchors_file))
        assert intact.returncode == 0, intact.stderr
        assert "intact" in intact.stdout and "anchor" in intact.stdout

        # The booth goes back on its word: a lower head. The hub records it in its own chain.
        await session.link.send("audit_head", seq=1, hash="f" * 64)
        await until(lambda: "audit_head_rewound" in events(hub_root / "audit"), "rewound recorded")
        assert running.heads.anchors(BOOTH)["anchors"][-1]["conflict"] is True
    finally:
        await session.close()
        log.close()

    # Replace the booth's log and sidecar with a fresh self-consistent chain: only the anchors see it.
    forged = tmp_path / "forged"
    with AuditLog(forged / "audit", source="booth", journal=None) as other:
        for _ in range(final.seq + 2):
            other.record("flow_event", flow="x")
    assert cli("kiosk", "audit", "verify", "--state", str(forged)).returncode == 0
    caught = cli("kiosk", "audit", "verify", "--state", str(forged), "--anchors", str(anchors_file))
    assert caught.returncode == 1
    assert "replaced" in caught.stderr and len(caught.stderr.strip().splitlines()) == 1

    # The hub's own chain (read while the hub runs): intact, with its start and the booth's connection in it.
    await until(lambda: "booth_disconnected" in events(hub_root / "audit"), "disconnection recorded")
    hub_events = events(hub_root / "audit")
    for expected in ("audit_log_started", "config_changed", "service_started", "booth_connected", "booth_disconnected"):
        assert expected in hub_events
    verdict = cli("kiosk-hub", "audit", "verify", "--state", str(hub_root))
    assert verdict.returncode == 0, verdict.stderr
    assert verify_directory(hub_root / "audit").ok


async def test_the_patient_app_stack_records_into_its_chain(hub: tuple[RunningHub, Path], tmp_path: Path) -> None:
    """kiosk-app's assembly: flow events, the wipe and the session's link go to the chain; its head to the hub."""
    running, hub_root = hub
    paths = StatePaths(hub_root)
    key = load_pem_private_key(paths.booth_key(BOOTH).read_bytes(), password=None)
    assert isinstance(key, IdentityKey)
    endpoint = HubEndpoint(
        f"wss://localhost:{running.booth_port}/ws", paths.fleet_ca, paths.booth_cert(BOOTH), paths.booth_key(BOOTH)
    )
    credentials = BoothCredentials(
        BOOTH, paths.booth_cert(BOOTH).read_text(), key, FleetTrust(paths.fleet_ca.read_bytes())
    )
    state = tmp_path / "booth"
    with AuditLog(state / "audit", source="booth", journal=None) as log:
        async with emulated_stack(
            tmp_path / "work",
            hub=endpoint,
            credentials=credentials,
            card=FakeCard(),
            settings=EmulationSettings(stream_size=(320, 180), fps=5),
            audit_log=log,
        ) as stack:
            assert stack.audit is not None
            await stack.session.link.wait_connected(20)
            stack.controller.services.audit("consent_given")
            stack.controller.services.audit("manual_identity")
            stack.controller.services.forget()
            await until(lambda: "hub_connected" in events(state / "audit"), "hub_connected")
            assert running.heads is not None
            await until(lambda: running.heads.anchors(BOOTH)["anchors"], "the head at the hub")
    recorded = events(state / "audit")
    assert recorded[-1] == "service_stopped"
    for expected in ("consent_given", "patient_identified", "patient_session_ended", "hub_disconnected"):
        assert expected in recorded
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps(running.heads.anchors(BOOTH)))
    assert cli("kiosk", "audit", "verify", "--state", str(state), "--anchors", str(anchors)).returncode == 0
