"""Audit entries reach journald through systemd-python, with their MESSAGE_ID and AUDIT_* fields.

With a running journald the entry is read back with ``journalctl``. Where none
runs (containers), the test listens on journald's own socket path and decodes
what systemd-python sent in journald's native protocol: the same bytes journald
would have received.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from kiosk.audit import AuditLog
from kiosk.audit.events import CATALOG

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


def decode_native(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: ``KEY=value\\n``, or ``KEY\\n`` + little-endian u64 length + value + ``\\n``."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = after
        else:
            (size,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + size].decode()
            rest = after[8 + size + 1 :]
    return fields


@contextlib.contextmanager
def listening_socket() -> Iterator[socket.socket]:
    created = not JOURNAL_SOCKET.parent.exists()
    JOURNAL_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(JOURNAL_SOCKET))
        sock.settimeout(10)
        yield sock
    finally:
        sock.close()
        JOURNAL_SOCKET.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                JOURNAL_SOCKET.parent.rmdir()


def test_an_entry_reaches_journald_with_its_message_id(tmp_path: Path) -> None:
    marker = secrets.token_hex(8)
    expected_id = CATALOG["flow_event"].message_id
    if JOURNAL_SOCKET.exists():  # a real journald
        with AuditLog(tmp_path, source="booth") as log:
            log.record("flow_event", flow=marker)
            assert log.journal_failures == 0
        deadline = time.monotonic() + 20
        found: list[dict[str, str]] = []
        while not found and time.monotonic() < deadline:
            out = subprocess.run(
                ["journalctl", "-o", "json", "--no-pager", f"AUDIT_F_FLOW={marker}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            found = [json.loads(line) for line in out.splitlines() if line.strip()]
            time.sleep(0.2)
        assert found, "journald did not get the entry"
        fields = found[0]
    else:
        with listening_socket() as sock, AuditLog(tmp_path, source="booth") as log:
            log.record("flow_event", flow=marker)
            assert log.journal_failures == 0
            fields = {}
            while fields.get("AUDIT_F_FLOW") != marker:  # skip anything else logging meanwhile
                fields = decode_native(sock.recv(1 << 16))
    assert fields["MESSAGE_ID"] == expected_id
    assert fields["PRIORITY"] == str(CATALOG["flow_event"].priority)
    assert fields["AUDIT_EVENT"] == "flow_event" and fields["AUDIT_SEQ"] == "2" and fields["AUDIT_SOURCE"] == "booth"
    assert fields["SYSLOG_IDENTIFIER"] == "kiosk-audit-booth"
    assert len(fields["AUDIT_HASH"]) == 64
    assert fields["MESSAGE"] == "audit booth #2 flow_event"
