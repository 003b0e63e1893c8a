"""The audit chain: entry format, verifier, tampering of every kind, the log on disk, journald copies."""

from __future__ import annotations

import datetime
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.audit import AuditError, AuditLog, BreakReason, FieldError, Head, verify, verify_directory
from kiosk.audit.chain import GENESIS, LineError, make_entry, parse_anchors, parse_line
from kiosk.audit.events import CATALOG
from kiosk.audit.log import HEAD_FILE, LOG_FILE

T0 = datetime.datetime(2026, 12, 6, 11, 0, tzinfo=datetime.UTC)


class Journal:
    """Captures what would go to journald."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    def __call__(self, message: str, **fields: str) -> None:
        self.sent.append((message, fields))


def make_log(directory: Path, count: int, journal: Journal | None = None) -> AuditLog:
    log = AuditLog(directory, source="booth", journal=journal or Journal())
    for index in range(count):
        log.record("peripheral_command", command="bp.start", phase="done", ref=index)
    return log


def lines_of(directory: Path) -> list[bytes]:
    return (directory / LOG_FILE).read_bytes().splitlines(keepends=True)


def write_lines(directory: Path, lines: list[bytes]) -> None:
    (directory / LOG_FILE).write_bytes(b"".join(lines))


def chain_bytes(count: int) -> bytes:
    head: Head | None = None
    out = b""
    for index in range(count):
        entry, line = make_entry(head, "consent_given", {"patient": f"tok{index}"}, T0)
        head = entry.head
        out += line
    return out


# -- format -----------------------------------------------------------------------------------------
def test_entries_chain_from_genesis_and_verify() -> None:
    data = chain_bytes(5)
    first = parse_line(data.splitlines()[0])
    assert first.seq == 1 and first.prev == GENESIS
    verdict = verify(data)
    assert verdict.ok and verdict.entries == 5 and verdict.head is not None and verdict.head.seq == 5


def test_bad_fields_are_refused_before_writing(tmp_path: Path) -> None:
    with make_log(tmp_path, 0) as log:
        for bad in ({"x": [1]}, {"x": float("nan")}, {"Bad": 1}, {"x": "a\nb"}, {"x": "a" * 300}):
            with pytest.raises(FieldError):
                log.record("consent_given", **bad)
        with pytest.raises(FieldError):
            log.record("not_in_catalog")
        with pytest.raises(FieldError):
            log.record("patient_identified", first_name="x")
        assert verify_directory(tmp_path).entries == 1  # only the genesis entry


def test_a_line_in_another_byte_form_is_refused() -> None:
    line = chain_bytes(1).rstrip(b"\n")
    spaced = json.dumps(json.loads(line), sort_keys=True).encode()
    with pytest.raises(LineError) as caught:
        parse_line(spaced)
    assert caught.value.reason is BreakReason.BAD_LINE


# -- tampering, from bytes ---------------------------------------------------------------------
def test_edited_field_is_modified(tmp_path: Path) -> None:
    make_log(tmp_path, 5).close()
    lines = lines_of(tmp_path)
    lines[3] = lines[3].replace(b'"phase":"done"', b'"phase":"fail"')
    write_lines(tmp_path, lines)
    problem = verify_directory(tmp_path).problem
    assert problem is not None and problem.reason is BreakReason.MODIFIED and problem.line == 4


def test_edited_and_rehashed_entry_breaks_the_next_link(tmp_path: Path) -> None:
    make_log(tmp_path, 5).close()
    lines = lines_of(tmp_path)
    old = parse_line(lines[2].rstrip(b"\n"))
    previous = parse_line(lines[1].rstrip(b"\n")).head
    _, forged = make_entry(previous, "peripheral_command", {"command": "x", "phase": "done", "ref": 9}, T0)
    assert parse_line(forged.rstrip(b"\n")).seq == old.seq
    lines[2] = forged
    write_lines(tmp_path, lines)
    problem = verify_directory(tmp_path).problem
    assert problem is not None and problem.reason is BreakReason.BROKEN_LINK and problem.line == 4


def test_deleted_entry_is_removed(tmp_path: Path) -> None:
    make_log(tmp_path, 5).close()
    lines = lines_of(tmp_path)
    del lines[2]
    write_lines(tmp_path, lines)
    problem = verify_directory(tmp_path).problem
    assert problem is not None and problem.reason is BreakReason.REMOVED and problem.seq == 4


def test_swapped_entries_are_reordered(tmp_path: Path) -> None:
    make_log(tmp_path, 5).close()
    lines = lines_of(tmp_path)
    lines[2], lines[3] = lines[3], lines[2]
    write_lines(tmp_path, lines)
    problem = verify_directory(tmp_path).problem
    assert problem is not None and problem.reason is BreakReason.REORDERED and problem.line == 3


def test_duplicated_entry_is_reordered(tmp_path: Path) -> None:
    make_log(tmp_path, 3).close()
    lines = lines_of(tmp_path)
    write_lines(tmp_path, [*lines, lines[1]])
    problem = verify_directory(tmp_path).problem
    assert problem is not None and problem.reason is BreakReason.REORDERED


@pytest.mark.parametrize("cut", [1, 10, 40])
def test_cut_mid_line_is_truncated(tmp_path: Path, cut: int) -> None:
    make_log(tmp_path, 4).close()
    data = (tmp_path / LOG_FILE).read_bytes()
    (tmp_path / LOG_FILE).write_bytes(data[:-cut])
    problem = verify_directory(tmp_path).problem
    assert problem is not None and problem.reason is BreakReason.TRUNCATED


def test_whole_entries_cut_are_caught_by_the_sidecar_only(tmp_path: Path) -> None:
    make_log(tmp_path, 6).close()
    lines = lines_of(tmp_path)
    write_lines(tmp_path, lines[:4])
    assert verify((tmp_path / LOG_FILE).read_bytes()).ok  # the file alone cannot tell
    problem = verify_directory(tmp_path).problem
    assert problem is not None and problem.reason is BreakReason.TRUNCATED and problem.seq == 7


def test_replaced_file_and_sidecar_are_caught_by_anchors(tmp_path: Path) -> None:
    original = tmp_path / "a"
    make_log(original, 6).close()
    anchors = [parse_anchors(json.loads((original / HEAD_FILE).read_text()))[0]]
    anchors.append(parse_line(lines_of(original)[2].rstrip(b"\n")).head)
    forged = tmp_path / "b"
    make_log(forged, 8).close()  # a fresh, self-consistent chain, with its own sidecar
    assert verify_directory(forged).ok
    problem = verify_directory(forged, anchors).problem
    assert problem is not None and problem.reason is BreakReason.REPLACED and problem.seq == 3
    shorter = tmp_path / "c"
    make_log(shorter, 0).close()
    problem = verify_directory(shorter, anchors).problem
    assert problem is not None and problem.reason is BreakReason.TRUNCATED


def test_missing_sidecar_is_reported(tmp_path: Path) -> None:
    make_log(tmp_path, 2).close()
    (tmp_path / HEAD_FILE).unlink()
    problem = verify_directory(tmp_path).problem
    assert problem is not None and problem.reason is BreakReason.HEAD_MISSING


# -- hypothesis: the parser and the verifier never raise, and never accept a changed chain ----------------
@given(st.binary(max_size=400))
def test_parse_line_refuses_junk_with_its_own_error(junk: bytes) -> None:
    reason: BreakReason | None = None
    try:
        entry = parse_line(junk)
    except LineError as exc:
        reason = exc.reason
    else:  # only a genuine entry parses, and its hash covers exactly these bytes
        assert entry.hash in junk.decode()
    assert reason in (None, BreakReason.BAD_LINE, BreakReason.MODIFIED)


@given(st.binary(max_size=2000))
def test_verify_never_raises(junk: bytes) -> None:
    verdict = verify(junk)
    assert verdict.ok == (junk == b"") or verdict.problem is not None


@given(st.data())
def test_any_single_byte_change_is_caught(data: st.DataObject) -> None:
    original = chain_bytes(4)
    position = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]))
    changed = original[:position] + bytes([value]) + original[position + 1 :]
    last = parse_line(original.splitlines()[-1]).head
    assert not verify(changed, [last]).ok


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
        st.none()
        | st.booleans()
        | st.integers(-(2**62), 2**62)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40).filter(lambda s: not any(ord(c) < 32 or ord(c) == 127 for c in s)),
        max_size=8,
    )
)
def test_fields_round_trip(fields: dict[str, object]) -> None:
    entry, line = make_entry(None, "flow_event", fields, T0)
    assert parse_line(line.rstrip(b"\n")) == entry


# -- the log on disk --------------------------------------------------------------------------------
def test_log_resumes_the_chain_and_keeps_modes(tmp_path: Path) -> None:
    make_log(tmp_path, 3).close()
    with make_log(tmp_path, 2) as log:
        assert log.head is not None and log.head.seq == 6
    verdict = verify_directory(tmp_path)
    assert verdict.ok and verdict.entries == 6
    assert (tmp_path / LOG_FILE).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / HEAD_FILE).stat().st_mode & 0o777 == 0o600


def test_truncation_is_recorded_at_the_next_start(tmp_path: Path) -> None:
    make_log(tmp_path, 5).close()
    write_lines(tmp_path, lines_of(tmp_path)[:3])
    journal = Journal()
    with AuditLog(tmp_path, source="booth", journal=journal):
        pass
    last = parse_line(lines_of(tmp_path)[-1].rstrip(b"\n"))
    assert last.event == "audit_head_mismatch" and last.fields["expected_seq"] == 6 and last.fields["found_seq"] == 3
    assert journal.sent[-1][1]["PRIORITY"] == "2"


def test_a_torn_tail_is_refused_at_start(tmp_path: Path) -> None:
    make_log(tmp_path, 2).close()
    data = (tmp_path / LOG_FILE).read_bytes()
    (tmp_path / LOG_FILE).write_bytes(data[:-5])
    with pytest.raises(AuditError):
        AuditLog(tmp_path, source="booth", journal=None)


def test_two_processes_append_to_one_chain(tmp_path: Path) -> None:
    """Another process appends between two of ours: the lock and the resume keep one chain."""
    with make_log(tmp_path, 1) as log:
        script = (
            "import sys; from pathlib import Path; from kiosk.audit import AuditLog\n"
            "with AuditLog(Path(sys.argv[1]), source='booth', journal=None) as log:\n"
            "    for i in range(20): log.record('flow_event', ref=i)\n"
        )
        children = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(tmp_path)], env={**os.environ, "PYTHONPATH": os.getcwd()}
            )
            for _ in range(2)
        ]
        for index in range(20):
            log.record("flow_event", ref=index)
        assert [child.wait(timeout=60) for child in children] == [0, 0]
        log.record("flow_event", ref=99)
    verdict = verify_directory(tmp_path)
    assert verdict.ok and verdict.entries == 1 + 1 + 60 + 1


def test_journald_gets_each_entry_with_its_message_id(tmp_path: Path) -> None:
    journal = Journal()
    with AuditLog(tmp_path, source="hub", journal=journal) as log:
        log.record("login_failed", account="0123abcd", step="totp")
    message, fields = journal.sent[-1]
    assert message == "audit hub #2 login_failed"
    assert fields["MESSAGE_ID"] == CATALOG["login_failed"].message_id
    assert fields["PRIORITY"] == "4"
    assert fields["AUDIT_EVENT"] == "login_failed" and fields["AUDIT_SEQ"] == "2" and fields["AUDIT_SOURCE"] == "hub"
    assert fields["AUDIT_F_ACCOUNT"] == "0123abcd" and fields["AUDIT_F_STEP"] == "totp"
    assert len(fields["AUDIT_HASH"]) == 64
    assert journal.sent[0][1]["AUDIT_EVENT"] == "audit_log_started"


def test_a_failing_journal_never_loses_an_entry(tmp_path: Path) -> None:
    def broken(message: str, **fields: str) -> None:
        raise OSError("no journald")

    with AuditLog(tmp_path, source="booth", journal=broken) as log:
        log.record("consent_given", patient="t")
        assert log.journal_failures == 2
    assert verify_directory(tmp_path).entries == 2


def test_the_real_systemd_sender_accepts_our_fields(tmp_path: Path) -> None:
    # systemd-python is installed (Makefile: libsystemd-dev); without a journald socket send() is a no-op.
    with AuditLog(tmp_path, source="booth") as log:
        log.record("file_received", sha256="0" * 64, size=12)
        assert log.journal_failures == 0


def test_message_ids_are_unique_uuid_hex() -> None:
    ids = [event.message_id for event in CATALOG.values()]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 and i[12] == "4" for i in ids)


@pytest.mark.timeout(300)
def test_kill_9_while_appending_never_breaks_the_chain(tmp_path: Path) -> None:
    """A booth killed mid-append: the chain stays whole and the next start resumes it."""
    script = (
        "import sys; from pathlib import Path; from kiosk.audit import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]), source='booth', journal=None)\n"
        "print('ready', flush=True)\n"
        "while True: log.record('peripheral_command', command='bp.start', phase='done')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    rng = random.Random(5)
    seen = 0
    for _ in range(15):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.2))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        verdict = verify_directory(tmp_path)
        assert verdict.ok, verdict.problem
        assert verdict.entries >= seen
        seen = verdict.entries
    with AuditLog(tmp_path, source="booth", journal=None) as log:
        assert log.head is not None and log.head.seq == seen
        assert parse_line(lines_of(tmp_path)[-1].rstrip(b"\n")).event != "audit_head_mismatch"
