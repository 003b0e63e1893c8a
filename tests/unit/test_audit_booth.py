"""What the booth records (and never records), the CLIs on tampered chains, the hub's hook and head tracking."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import re
from pathlib import Path

import pytest

from bench import audit as bench_audit
from hub import cli as hub_cli
from hub.accounts import AuditHook
from hub.audit import AuditWriter, BoothHeads, chain_hook, open_hub_audit
from hub.messages import Direction, MessageError, make
from hub.store import Store
from kiosk import cli as kiosk_cli
from kiosk.audit import AuditLog, verify_directory
from kiosk.audit.booth import BoothAudit
from kiosk.audit.chain import Entry, make_entry, parse_line
from kiosk.audit.events import CATALOG
from kiosk.audit.log import HEAD_FILE, LOG_FILE
from kiosk.session.binding import Sas
from kiosk.session.consultation import (
    ChatEvent,
    CommandEvent,
    FileEvent,
    LinkEvent,
    MeasurementEvent,
    SessionState,
    StateEvent,
    VerifiedEvent,
)

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC_NAME = "Zoéline Quartermaine"
PDF = b"%PDF-1.7 synthetic prescription for " + SYNTHETIC_NAME.encode()


def entries(directory: Path) -> list[Entry]:
    return [parse_line(line) for line in (directory / LOG_FILE).read_bytes().splitlines()]


class Heads:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def __call__(self, seq: int, digest: str) -> bool:
        self.sent.append((seq, digest))
        return True


async def test_a_patient_session_is_recorded_without_the_patient(tmp_path: Path) -> None:
    heads = Heads()
    wiped: list[bool] = []
    with AuditLog(tmp_path, source="booth", journal=None) as log:
        audit = BoothAudit(log, send_head=heads, consultation=lambda: "ab" * 16)
        forget = audit.wrap_forget(lambda: wiped.append(True))
        audit.flow_event("consent_given")
        audit.flow_event("card_read")
        audit.session_event(LinkEvent(True))
        audit.session_event(StateEvent(SessionState.WAITING))
        audit.session_event(StateEvent(SessionState.CONNECTING))
        audit.session_event(VerifiedEvent(Sas("1234", ("a", "b")), "Dr Demo", "dr.demo"))
        audit.session_event(StateEvent(SessionState.IN_CALL))
        audit.session_event(VerifiedEvent(Sas("1234", ("a", "b")), "Dr Demo", "dr.demo"))  # repeated: once only
        audit.session_event(CommandEvent("bp.start", "started"))
        audit.session_event(CommandEvent("bp.start", "done", device_seconds=31.0))
        audit.session_event(MeasurementEvent("blood_pressure", {"systolic": 187.0, "diastolic": 93.0}))
        audit.session_event(ChatEvent(f"Je suis {SYNTHETIC_NAME}", from_doctor=False))
        audit.session_event(FileEvent(f"ordonnance-{SYNTHETIC_NAME}.pdf", "application/pdf", PDF))
        audit.session_event(FileEvent("otoscope.jpg", "image/jpeg", b"", False, "c" * 64, 4096))
        audit.session_event(StateEvent(SessionState.ENDED, "doctor-ended"))
        audit.flow_event("failure_network_lost")
        audit.flow_event("something_new")
        forget()
        audit.flow_event("staff_login")
        await audit.stop()
    assert wiped == [True]
    recorded = entries(tmp_path)
    names = [entry.event for entry in recorded]
    assert names == [
        "audit_log_started",
        "patient_session_started",
        "consent_given",
        "patient_identified",
        "hub_connected",
        "patient_waiting",
        "consultation_accepted",
        "doctor_verified",
        "consultation_connected",
        "peripheral_command",
        "peripheral_command",
        "file_received",
        "file_sent",
        "consultation_ended",
        "patient_failure",
        "flow_event",
        "patient_session_ended",
        "staff_login",
        "service_stopped",
    ]
    token = recorded[1].fields["patient"]
    assert isinstance(token, str) and len(token) == 32
    assert all(entry.fields.get("patient") == token for entry in recorded[1:17])
    assert "patient" not in recorded[17].fields  # staff after the wipe: no patient any more
    received = recorded[11].fields
    assert received["sha256"] == hashlib.sha256(PDF).hexdigest() and received["size"] == len(PDF)
    assert recorded[12].fields["sha256"] == "c" * 64 and recorded[12].fields["size"] == 4096
    assert recorded[10].fields["phase"] == "done" and recorded[10].fields["consultation"] == "ab" * 16
    assert recorded[13].fields["reason"] == "doctor-ended"
    raw = (tmp_path / LOG_FILE).read_text()
    for secret in ("Zo", "Quartermaine", "187.0", "93.0", "Je suis", "systolic"):
        assert secret not in raw
    assert verify_directory(tmp_path).ok


async def test_the_head_goes_to_the_hub_on_connection_and_at_the_end(tmp_path: Path) -> None:
    heads = Heads()
    with AuditLog(tmp_path, source="booth", journal=None) as log:
        audit = BoothAudit(log, send_head=heads, interval=0.05)
        audit.session_event(LinkEvent(True))
        audit.session_event(StateEvent(SessionState.ENDED, "booth-ended"))
        audit.start()
        while len(heads.sent) < 4:
            await asyncio.sleep(0.02)
        await audit.stop()
        assert heads.sent[-1][0] == 3 and log.head is not None
        assert heads.sent[-1] == (3, entries(tmp_path)[2].hash)


def test_config_changes_are_recorded_by_digest(tmp_path: Path) -> None:
    with AuditLog(tmp_path, source="booth", journal=None) as log:
        audit = BoothAudit(log)
        first = audit.record_start({"language": "fr", "cleaning_required": False})
        audit.record_start({"language": "fr", "cleaning_required": False})
        second = audit.record_start({"language": "fr", "cleaning_required": True})
    changes = [entry.fields for entry in entries(tmp_path) if entry.event == "config_changed"]
    assert changes == [{"previous": "none", "digest": first}, {"previous": first, "digest": second}]


# -- the CLIs, on every kind of tampering ----------------------------------------------------------------
def booth_state(tmp_path: Path, count: int = 6) -> Path:
    with AuditLog(tmp_path / "audit", source="booth", journal=None) as log:
        for index in range(count):
            log.record("peripheral_command", command="thermometer.read", phase="done", ref=index)
    return tmp_path


def tamper(state: Path, how: str) -> None:
    path = state / "audit" / LOG_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    if how == "edit":
        lines[2] = lines[2].replace(b'"ref":1', b'"ref":7')
    elif how == "delete":
        del lines[3]
    elif how == "reorder":
        lines[3], lines[4] = lines[4], lines[3]
    elif how == "truncate_mid_line":
        lines[-1] = lines[-1][:20]
    elif how == "truncate_entries":
        lines = lines[:4]
    elif how == "replace":
        fresh = state / "fresh"
        booth_state(fresh, 9)
        lines = (fresh / "audit" / LOG_FILE).read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines))


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("edit", "modified at line 3"),
        ("delete", "removed at line 4"),
        ("reorder", "reordered at line 4"),
        ("truncate_mid_line", "truncated at line 7"),
        ("truncate_entries", "truncated at end of file"),
        ("replace", "replaced at line 7"),
    ],
)
def test_kiosk_audit_verify_says_where_it_breaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, reason: str
) -> None:
    state = booth_state(tmp_path)
    assert kiosk_cli.main(["audit", "verify", "--state", str(state)]) == 0
    assert "intact: 7 entries" in capsys.readouterr().out
    tamper(state, how)
    assert kiosk_cli.main(["audit", "verify", "--state", str(state)]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and reason in message, message


def test_a_whole_replacement_with_its_sidecar_needs_the_hub_anchors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = booth_state(tmp_path / "booth")
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"booth": "b", "anchors": [json.loads((state / "audit" / HEAD_FILE).read_text())]}))
    forged = booth_state(tmp_path / "forged", 9)
    (state / "audit" / LOG_FILE).write_bytes((forged / "audit" / LOG_FILE).read_bytes())
    (state / "audit" / HEAD_FILE).write_bytes((forged / "audit" / HEAD_FILE).read_bytes())
    assert kiosk_cli.main(["audit", "verify", "--state", str(state)]) == 0
    capsys.readouterr()
    assert kiosk_cli.main(["audit", "verify", "--state", str(state), "--anchors", str(anchors)]) == 1
    assert "replaced" in capsys.readouterr().err
    assert kiosk_cli.main(["audit", "verify", "--state", str(tmp_path / "nothing")]) == 2


def test_kiosk_hub_audit_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open_hub_audit(tmp_path, journal=None) as log:
        hook = chain_hook(log)
        hook("login_failed", {"account": "0123456789abcdef", "step": "password"})
        hook("login_ok", {"account": "dr.demo", "factor": "webauthn"})
        hook("enrol_ok", {"booth": "booth-0009", "serial": "abc"})
        hook("a_new_kind", {"x": "y"})
    assert [entry.event for entry in entries(tmp_path / "audit")][1:] == [
        "login_failed",
        "login_ok",
        "enrol_ok",
        "unlisted_event",
    ]
    assert hub_cli.main(["audit", "verify", "--state", str(tmp_path)]) == 0
    tamper(tmp_path, "delete")
    assert hub_cli.main(["audit", "verify", "--state", str(tmp_path)]) == 1
    assert "removed" in capsys.readouterr().err


def test_every_event_the_hub_emits_is_catalogued() -> None:
    emitted: set[str] = set()
    for path in (ROOT / "hub").glob("*.py"):
        emitted |= set(re.findall(r'audit\(\s*"([a-z_]+)"', path.read_text()))
    assert len(emitted) > 20
    assert emitted <= set(CATALOG), emitted - set(CATALOG)


def test_booth_heads_that_go_back_are_audited(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.db")
    events: list[tuple[str, dict[str, str]]] = []
    hook: AuditHook = lambda kind, fields: events.append((kind, dict(fields)))  # noqa: E731
    clock = iter(range(1000, 2000, 5))
    heads = BoothHeads(store, hook, clock=lambda: float(next(clock)))
    try:
        first, _ = make_entry(None, "consent_given", {}, datetime.datetime.now(datetime.UTC))
        assert heads.receive("booth-1", 5, "a" * 64)
        assert heads.receive("booth-1", 5, "a" * 64)  # the same head again: nothing new
        assert heads.receive("booth-1", 9, "b" * 64)
        assert not heads.receive("booth-1", 9, "c" * 64)  # same seq, another hash
        assert not heads.receive("booth-1", 3, "d" * 64)  # lower seq
        assert heads.receive("booth-2", 1, first.hash)  # per booth
        kept = heads.anchors("booth-1")["anchors"]
        assert [(a["seq"], a["conflict"]) for a in kept] == [(5, False), (9, False), (9, True), (3, True)]
        assert [kind for kind, _ in events] == ["audit_head_rewound", "audit_head_rewound"]
        assert events[1][1]["previous_seq"] == "9" and events[1][1]["seq"] == "3"
        flooding = BoothHeads(store, hook, clock=lambda: 5000.0)
        for seq in range(10, 200):
            assert flooding.receive("booth-3", seq, "e" * 64)
        assert len(flooding.anchors("booth-3")["anchors"]) == 1
    finally:
        store.close()


def test_audit_head_messages_are_schema_checked() -> None:
    message = make("audit_head", Direction.BOOTH_TO_HUB, seq=12, hash="a" * 64)
    assert message["seq"] == 12
    for body in (
        {"seq": 0, "hash": "a" * 64},
        {"seq": True, "hash": "a" * 64},
        {"seq": 1, "hash": "A" * 64},
        {"seq": 1, "hash": "a" * 63},
        {"seq": 1, "hash": "a" * 64 + "\n"},
        {"seq": 1},
        {"seq": 1, "hash": "a" * 64, "extra": 1},
    ):
        with pytest.raises(MessageError):
            make("audit_head", Direction.BOOTH_TO_HUB, **body)
    with pytest.raises(MessageError):  # only booths send heads
        make("audit_head", Direction.DOCTOR_TO_HUB, seq=1, hash="a" * 64)


def test_the_bench_reports_appends_per_second(tmp_path: Path) -> None:
    figures = bench_audit.run(appends=20, directory=tmp_path)
    assert figures["appends"] == 20 and figures["appends_per_second"] > 0
    assert figures["append_latency"]["samples"] == 20
    assert not any(tmp_path.iterdir())  # the temporary log is gone


def test_the_hub_writer_keeps_the_order_and_never_blocks_the_caller(tmp_path: Path) -> None:
    writer = AuditWriter(open_hub_audit(tmp_path, journal=None))
    for index in range(300):
        writer.hook("booth_connected", {"booth": f"booth-{index:04d}"})
    writer.hook("a_new_kind", {})
    writer.hook("login_failed", {"first_name": "x"})  # refused at the door, never queued
    writer.close()
    writer.log.close()
    recorded = entries(tmp_path / "audit")
    assert [entry.fields.get("booth") for entry in recorded[1:301]] == [f"booth-{index:04d}" for index in range(300)]
    assert [entry.event for entry in recorded[301:]] == ["unlisted_event"]
    assert verify_directory(tmp_path / "audit").ok
