"""The booth's spool and the hub's inbox, on real directories."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hub import records as inbox_module
from hub.records import RecordRefused, RecordsInbox, Refusal, ensure_records_key, export
from kiosk.records import RecordsWriter, Spool
from kiosk.records.seal import load_private_key, load_public_key, open_record, seal

KEY = X25519PrivateKey.generate()


def writer(root: Path, booth: str = "booth-0001") -> RecordsWriter:
    return RecordsWriter(Spool(root / "records"), KEY.public_key(), booth)


def test_written_records_open_and_list_oldest_first(tmp_path: Path) -> None:
    records = writer(tmp_path)
    ids = [records.write("reading", f"value {i}".encode(), {"n": str(i)}) for i in range(5)]
    pending = records.spool.pending()
    assert [record.record_id for record in pending] == ids
    for index, record in enumerate(pending):
        opened = open_record(record.path.read_bytes(), KEY)
        assert opened.payload == f"value {index}".encode() and opened.meta == {"n": str(index)}
        assert record.path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "records").stat().st_mode & 0o777 == 0o700


def test_leftover_temporary_files_are_removed_at_start(tmp_path: Path) -> None:
    records = writer(tmp_path)
    kept = records.write("chat", b"hello", {})
    (tmp_path / "records" / f".{'ab' * 16}.tmp").write_bytes(b"half a record")
    spool = Spool(tmp_path / "records")
    assert [path.name for path in (tmp_path / "records").iterdir()] == [spool.pending()[0].path.name]
    assert spool.pending()[0].record_id == kept


def test_audit_callback_gets_ids_and_sizes_only(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    records = RecordsWriter(
        Spool(tmp_path / "r"), KEY.public_key(), "booth-0001", audit=lambda e, f: events.append((e, f))
    )
    record_id = records.write("identification", b"TESTMARTIN", {"who": "TESTMARTIN"})
    assert events == [("record_sealed", {"record": record_id, "kind": "identification", "size": events[0][1]["size"]})]
    assert "TESTMARTIN" not in repr(events)


def test_reject_moves_a_record_aside_sealed(tmp_path: Path) -> None:
    records = writer(tmp_path)
    records.write("chat", b"x", {})
    record = records.spool.pending()[0]
    target = records.spool.reject(record)
    assert records.spool.pending() == [] and records.spool.rejected() == [target]


# -- the hub's inbox ---------------------------------------------------------------------------------
def sealed(record_id: str = "cd" * 16, booth: str = "booth-0001", payload: bytes = b"payload") -> bytes:
    return seal(payload, KEY.public_key(), record_id=record_id, kind="chat", booth_id=booth, created_ms=1)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_inbox_stores_once_and_acknowledges_a_retry(tmp_path: Path) -> None:
    audited: list[str] = []
    inbox = RecordsInbox(tmp_path / "records", audit=lambda event, fields: audited.append(event))
    data = sealed()
    first = inbox.store("booth-0001", "cd" * 16, data, digest(data))
    again = inbox.store("booth-0001", "cd" * 16, data, digest(data))
    assert first.created and not again.created and first.path.read_bytes() == data
    assert audited == ["record_received"]
    assert [path.name for path in first.path.parent.iterdir()] == [first.path.name]


def test_inbox_refuses_a_different_record_with_the_same_id(tmp_path: Path) -> None:
    inbox = RecordsInbox(tmp_path / "records")
    data = sealed()
    inbox.store("booth-0001", "cd" * 16, data, digest(data))
    other = sealed(payload=b"other")
    with pytest.raises(RecordRefused) as caught:
        inbox.store("booth-0001", "cd" * 16, other, digest(other))
    assert caught.value.reason is Refusal.CONFLICT and caught.value.status == 409


@pytest.mark.parametrize(
    ("booth", "record_id", "data", "claimed", "reason"),
    [
        ("booth-0001", "cd" * 16, sealed(), "0" * 64, Refusal.BAD_HASH),
        ("booth-0001", "cd" * 16, b"KREC not a record", None, Refusal.BAD_HEADER),
        ("booth-0002", "cd" * 16, sealed(), None, Refusal.WRONG_BOOTH),
        ("booth-0001", "ef" * 16, sealed(), None, Refusal.WRONG_ID),
        ("booth-0001", "../../etc", sealed(), None, Refusal.WRONG_ID),
    ],
)
def test_inbox_refusals_are_typed(
    tmp_path: Path, booth: str, record_id: str, data: bytes, claimed: str | None, reason: Refusal
) -> None:
    inbox = RecordsInbox(tmp_path / "records")
    with pytest.raises(RecordRefused) as caught:
        inbox.store(booth, record_id, data, claimed or digest(data))
    assert caught.value.reason is reason
    assert not list((tmp_path / "records").rglob("*.rec"))


def test_inbox_size_limit(tmp_path: Path) -> None:
    inbox = RecordsInbox(tmp_path / "records", max_bytes=1000)
    data = sealed(payload=os.urandom(2000))
    with pytest.raises(RecordRefused) as caught:
        inbox.store("booth-0001", "cd" * 16, data, digest(data))
    assert caught.value.status == 413


def test_export_opens_records_with_the_operator_key(tmp_path: Path) -> None:
    state = tmp_path / "hub"
    ensure_records_key(state)
    private_path, public_path = inbox_module.records_key_paths(state)
    assert private_path.stat().st_mode & 0o777 == 0o600
    public = load_public_key(public_path.read_bytes())
    inbox = RecordsInbox(state / "records")
    record_id = "12" * 16
    data = seal(
        b"%PDF-1.7 fake",
        public,
        record_id=record_id,
        kind="file",
        booth_id="booth-0001",
        created_ms=int(time.time() * 1000),
        meta={"mime": "application/pdf", "name": "ordonnance.pdf"},
    )
    inbox.store("booth-0001", record_id, data, digest(data))
    (state / "records" / "booth-0001" / f"{'34' * 16}.rec").write_bytes(data[:-1])  # a damaged one
    result = export(state, tmp_path / "out")
    assert result.exported == 1 and len(result.failed) == 1
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    entry = index["records"][0]
    assert entry["id"] == record_id and entry["kind"] == "file" and entry["meta"]["name"] == "ordonnance.pdf"
    assert (tmp_path / "out" / entry["file"]).read_bytes() == b"%PDF-1.7 fake"
    assert entry["file"].endswith(".pdf")
    # A second key in the same place is kept, not replaced (records sealed to it must stay openable).
    before = private_path.read_bytes()
    ensure_records_key(state)
    assert private_path.read_bytes() == before
    assert load_private_key(before)
