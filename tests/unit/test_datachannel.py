"""The consult data-channel protocol (kiosk/session/datachannel.py)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.session.datachannel import (
    MAX_CHUNK_BYTES,
    MAX_FILE_BYTES,
    MAX_MESSAGE_BYTES,
    Ack,
    Chat,
    Command,
    DataChannelError,
    DataChannelProtocol,
    Event,
    FileAck,
    FileChunk,
    FileOffer,
    FileProgress,
    FileReceived,
    FileReceiver,
    FileSender,
    Measurement,
    Message,
    OximeterReading,
    Progress,
    Reason,
    Result,
    Role,
    Status,
    Still,
    Stop,
    encode,
    parse_message,
)

SHA_EMPTY = hashlib.sha256(b"").hexdigest()
SHA_HELLO = hashlib.sha256(b"hello").hexdigest()

# Hand-written wire forms (compact, as encode() writes them) and what they mean.
VALID: list[tuple[str, object]] = [
    ('{"v":1,"type":"chat","id":0,"text":"Bonjour,\\nça va ?"}', Chat(0, "Bonjour,\nça va ?")),
    (
        '{"v":1,"type":"file-offer","id":1,"transfer":"t-1","name":"ordonnance.pdf","mime":"application/pdf",'
        f'"size":5,"sha256":"{SHA_HELLO}"}}',
        FileOffer(1, "t-1", "ordonnance.pdf", "application/pdf", 5, SHA_HELLO),
    ),
    (
        '{"v":1,"type":"file-chunk","id":2,"transfer":"t-1","index":0,"data":"aGVsbG8="}',
        FileChunk(2, "t-1", 0, b"hello"),
    ),
    ('{"v":1,"type":"file-done","id":3,"transfer":"t-1"}', None),
    ('{"v":1,"type":"file-ack","id":4,"transfer":"t-1","ok":true}', FileAck(4, "t-1", True)),
    (
        '{"v":1,"type":"file-ack","id":5,"transfer":"t-1","ok":false,"reason":"too big"}',
        FileAck(5, "t-1", False, "too big"),
    ),
    ('{"v":1,"type":"command","id":6,"command":"bp.start"}', Command(6, "bp.start")),
    (
        '{"v":1,"type":"command","id":7,"command":"camera.select","camera":"otoscope"}',
        Command(7, "camera.select", "otoscope"),
    ),
    ('{"v":1,"type":"ack","id":8,"ref":6,"ok":true}', Ack(8, 6, True)),
    ('{"v":1,"type":"ack","id":9,"ref":6,"ok":false,"reason":"cuff not fitted"}', Ack(9, 6, False, "cuff not fitted")),
    ('{"v":1,"type":"progress","id":10,"ref":6,"cuff_pressure":142.5}', Progress(10, 6, 142.5)),
    ('{"v":1,"type":"progress","id":11,"ref":6,"cuff_pressure":0}', Progress(11, 6, 0)),
    (
        '{"v":1,"type":"result","id":12,"ref":6,"readings":{"systolic":{"value":121,"unit":"mmHg"},'
        '"diastolic":{"value":79,"unit":"mmHg"},"map":{"value":null,"unit":"mmHg"}}}',
        Result(
            12,
            6,
            readings=(
                Measurement("systolic", 121, "mmHg"),
                Measurement("diastolic", 79, "mmHg"),
                Measurement("map", None, "mmHg"),
            ),
        ),
    ),
    (
        '{"v":1,"type":"result","id":13,"ref":7,"still":{"transfer":"img-1","camera":"otoscope"}}',
        Result(13, 7, still=Still("img-1", "otoscope")),
    ),
    ('{"v":1,"type":"result","id":14,"ref":6,"error":"aborted"}', Result(14, 6, error="aborted")),
    ('{"v":1,"type":"status","id":15,"device":"oximeter","state":"connected"}', Status(15, "oximeter", "connected")),
    (
        '{"v":1,"type":"reading","id":16,"spo2":97,"pulse":72,"pleth":[10,40,90]}',
        OximeterReading(16, 97, 72, (10, 40, 90)),
    ),
    ('{"v":1,"type":"reading","id":17,"spo2":null,"pulse":null,"pleth":[]}', OximeterReading(17, None, None, ())),
    ('{"v":1,"type":"stop","id":9007199254740991,"by":"booth"}', Stop(2**53 - 1)),
]


@pytest.mark.parametrize(("wire", "expected"), VALID)
def test_hand_written_messages_parse_and_encode_back_exactly(wire: str, expected: object) -> None:
    message = parse_message(wire)
    if expected is not None:
        assert message == expected
    assert encode(message) == wire
    assert parse_message(wire.encode()) == message


def _doc(**fields: object) -> str:
    return json.dumps({"v": 1, "id": 1, **fields})


INVALID: list[tuple[str | bytes, Reason]] = [
    (b"\xff\xfe", Reason.NOT_JSON),
    ("{", Reason.NOT_JSON),
    ('{"v":1,"type":"stop","id":1,"by":"booth","by":"booth"}', Reason.NOT_JSON),
    ('{"v":1,"type":"progress","id":1,"ref":1,"cuff_pressure":NaN}', Reason.NOT_JSON),
    ('{"v":1,"type":"progress","id":1,"ref":1,"cuff_pressure":Infinity}', Reason.NOT_JSON),
    ('{"v":1,"type":"progress","id":1,"ref":1,"cuff_pressure":1e400}', Reason.FIELD),
    ("[" * 100_000 + "]" * 100_000, Reason.NOT_JSON),
    ("[1]", Reason.NOT_OBJECT),
    ('"chat"', Reason.NOT_OBJECT),
    ("x" * (MAX_MESSAGE_BYTES + 1), Reason.TOO_LARGE),
    ('{"type":"chat","id":1,"text":"a"}', Reason.VERSION),
    ('{"v":2,"type":"chat","id":1,"text":"a"}', Reason.VERSION),
    ('{"v":true,"type":"chat","id":1,"text":"a"}', Reason.VERSION),
    (_doc(type="hello"), Reason.UNKNOWN_TYPE),
    (_doc(type=["chat"]), Reason.UNKNOWN_TYPE),
    ('{"v":1,"type":"chat","text":"a"}', Reason.FIELD),
    ('{"v":1,"type":"chat","id":true,"text":"a"}', Reason.FIELD),
    ('{"v":1,"type":"chat","id":-1,"text":"a"}', Reason.FIELD),
    ('{"v":1,"type":"chat","id":1.0,"text":"a"}', Reason.FIELD),
    ('{"v":1,"type":"chat","id":9007199254740992,"text":"a"}', Reason.FIELD),
    (_doc(type="chat", text=""), Reason.FIELD),
    (_doc(type="chat", text="a" * 2001), Reason.FIELD),
    (_doc(type="chat", text="bell\x07"), Reason.FIELD),
    ('{"v":1,"type":"chat","id":1,"text":"\\ud800"}', Reason.FIELD),
    (_doc(type="chat", text="a", extra=1), Reason.FIELD),
    (_doc(type="chat"), Reason.FIELD),
    (
        _doc(type="file-offer", transfer="t", name="../etc/passwd", mime="text/plain", size=1, sha256=SHA_EMPTY),
        Reason.FIELD,
    ),
    (_doc(type="file-offer", transfer="t", name="a\\b", mime="text/plain", size=1, sha256=SHA_EMPTY), Reason.FIELD),
    (_doc(type="file-offer", transfer="t", name="..", mime="text/plain", size=1, sha256=SHA_EMPTY), Reason.FIELD),
    (_doc(type="file-offer", transfer="t", name="a\nb", mime="text/plain", size=1, sha256=SHA_EMPTY), Reason.FIELD),
    (_doc(type="file-offer", transfer="t", name="x" * 129, mime="text/plain", size=1, sha256=SHA_EMPTY), Reason.FIELD),
    (_doc(type="file-offer", transfer="t", name="a", mime="text", size=1, sha256=SHA_EMPTY), Reason.FIELD),
    (
        _doc(type="file-offer", transfer="t", name="a", mime="text/plain", size=MAX_FILE_BYTES + 1, sha256=SHA_EMPTY),
        Reason.FIELD,
    ),
    (_doc(type="file-offer", transfer="t", name="a", mime="text/plain", size=True, sha256=SHA_EMPTY), Reason.FIELD),
    (
        _doc(type="file-offer", transfer="t", name="a", mime="text/plain", size=1, sha256=SHA_EMPTY.upper()),
        Reason.FIELD,
    ),
    (_doc(type="file-offer", transfer="t/1", name="a", mime="text/plain", size=1, sha256=SHA_EMPTY), Reason.FIELD),
    (_doc(type="file-chunk", transfer="t", index=0, data="aGVsbG8"), Reason.FIELD),
    (_doc(type="file-chunk", transfer="t", index=0, data="QR=="), Reason.FIELD),
    (_doc(type="file-chunk", transfer="t", index=0, data=""), Reason.FIELD),
    (_doc(type="file-chunk", transfer="t", index=0, data="A" * (4 * (MAX_CHUNK_BYTES // 3 + 2))), Reason.FIELD),
    (_doc(type="file-chunk", transfer="t", index=-1, data="QQ=="), Reason.FIELD),
    (_doc(type="file-ack", transfer="t", ok=1), Reason.FIELD),
    (_doc(type="file-ack", transfer="t", ok=False, reason=None), Reason.FIELD),
    (_doc(type="command", command="bp.inflate"), Reason.FIELD),
    (_doc(type="command", command="camera.select"), Reason.FIELD),
    (_doc(type="command", command="camera.select", camera="garage"), Reason.FIELD),
    (_doc(type="command", command="bp.start", camera="booth"), Reason.FIELD),
    (_doc(type="ack", ref=1, ok="yes"), Reason.FIELD),
    (_doc(type="progress", ref=1, cuff_pressure=True), Reason.FIELD),
    (_doc(type="progress", ref=1, cuff_pressure=401), Reason.FIELD),
    (_doc(type="progress", ref=1, cuff_pressure="120"), Reason.FIELD),
    (_doc(type="result", ref=1), Reason.FIELD),
    (_doc(type="result", ref=1, error="x", still={"transfer": "t", "camera": "booth"}), Reason.FIELD),
    (_doc(type="result", ref=1, readings={}), Reason.FIELD),
    (_doc(type="result", ref=1, readings={"Sys tolic": {"value": 1, "unit": "mmHg"}}), Reason.FIELD),
    (_doc(type="result", ref=1, readings={"sys": {"value": 1}}), Reason.FIELD),
    (_doc(type="result", ref=1, readings={"sys": {"value": False, "unit": "mmHg"}}), Reason.FIELD),
    (_doc(type="result", ref=1, readings={"sys": [1, "mmHg"]}), Reason.FIELD),
    (_doc(type="result", ref=1, still={"transfer": "t", "camera": "webcam"}), Reason.FIELD),
    (_doc(type="status", device="oximeter", state="Connected!"), Reason.FIELD),
    (_doc(type="reading", spo2=101, pulse=60, pleth=[]), Reason.FIELD),
    (_doc(type="reading", spo2=98, pulse=60, pleth=[256]), Reason.FIELD),
    (_doc(type="reading", spo2=98, pulse=60, pleth=[1] * 257), Reason.FIELD),
    (_doc(type="reading", spo2=98.5, pulse=60, pleth=[]), Reason.FIELD),
    (_doc(type="reading", spo2=98, pleth=[]), Reason.FIELD),
    (_doc(type="stop", by="doctor"), Reason.FIELD),
]


@pytest.mark.parametrize(("wire", "reason"), INVALID)
def test_invalid_messages_are_typed_errors(wire: str | bytes, reason: Reason) -> None:
    with pytest.raises(DataChannelError) as caught:
        parse_message(wire)
    assert caught.value.reason is reason


def test_an_error_names_the_field_never_the_value() -> None:
    with pytest.raises(DataChannelError) as caught:
        parse_message(
            _doc(type="file-offer", transfer="t", name="dupont/ordo.pdf", mime="a/b", size=1, sha256=SHA_EMPTY)
        )
    assert "dupont" not in str(caught.value)
    assert caught.value.message_id == 1
    assert caught.value.transfer == "t"
    with pytest.raises(DataChannelError) as chunk:
        parse_message(_doc(type="file-chunk", transfer="t2", index=0, data="not base64!"))
    assert (chunk.value.reason, chunk.value.transfer) == (Reason.FIELD, "t2")


# -- a booth and a doctor talking --------------------------------------------------------
T = TypeVar("T")


def one(events: list[Event], kind: type[T]) -> T:
    """The single event ``events`` holds, checked to be a ``kind``."""
    assert len(events) == 1
    assert isinstance(events[0], kind)
    return events[0]


class Pair:
    def __init__(self) -> None:
        self.booth = DataChannelProtocol("booth")
        self.doctor = DataChannelProtocol("doctor")

    def to_booth(self, *messages: str) -> list[Event]:
        return [event for message in messages for event in self.booth.receive_message(message)]

    def to_doctor(self, *messages: str) -> list[Event]:
        return [event for message in messages for event in self.doctor.receive_message(message)]


def test_a_blood_pressure_cycle_from_command_to_result() -> None:
    pair = Pair()
    command = one(pair.to_booth(pair.doctor.send_command("bp.start")), Command)
    assert isinstance(command, Command)
    assert command.command == "bp.start"
    assert pair.booth.open_commands == pair.doctor.open_commands == {command.id: "bp.start"}
    readings = (Measurement("systolic", 121, "mmHg"), Measurement("diastolic", 80, "mmHg"))
    events = pair.to_doctor(
        pair.booth.send_ack(command.id, True),
        pair.booth.send_progress(command.id, 95.5),
        pair.booth.send_progress(command.id, 160),
        pair.booth.send_result(command.id, readings=readings),
    )
    assert [type(e) for e in events] == [Ack, Progress, Progress, Result]
    assert [e.cuff_pressure for e in events if isinstance(e, Progress)] == [95.5, 160]
    assert isinstance(events[-1], Result)
    assert events[-1].readings == readings
    assert pair.booth.open_commands == pair.doctor.open_commands == {}


def test_commands_end_at_their_ack_when_they_have_no_result_or_are_refused() -> None:
    pair = Pair()
    select = one(pair.to_booth(pair.doctor.send_command("camera.select", camera="dermatoscope")), Command)
    read = one(pair.to_booth(pair.doctor.send_command("thermometer.read")), Command)
    assert isinstance(select, Command)
    assert select.camera == "dermatoscope"
    pair.to_doctor(pair.booth.send_ack(select.id, True), pair.booth.send_ack(read.id, False, "no thermometer"))
    assert pair.doctor.open_commands == pair.booth.open_commands == {}


@pytest.mark.parametrize(
    ("command", "answers"),
    [
        ("bp.start", ["result-readings"]),  # a result before the ack
        ("bp.start", ["ack", "ack"]),  # acknowledged twice
        ("thermometer.read", ["ack", "progress"]),  # only a BP cycle reports progress
        ("bp.start", ["ack", "result-still"]),  # the wrong kind of result
        ("oximeter.start", ["ack", "result-error"]),  # finished at its ack
        ("bp.start", ["ack", "result-error", "result-error"]),  # two results
    ],
)
def test_answers_that_do_not_fit_their_command_are_refused_at_both_ends(command: str, answers: list[str]) -> None:
    pair = Pair()
    sent = one(pair.to_booth(pair.doctor.send_command(command)), Command)
    ref = sent.id
    mirror = DataChannelProtocol("booth")  # builds the wire text without the booth's own checks
    mirror.receive_message(encode(Command(ref, command)))
    wire: dict[str, Message] = {
        "ack": Ack(100, ref, True),
        "progress": Progress(100, ref, 50),
        "result-readings": Result(100, ref, readings=(Measurement("t", 37, "°C"),)),
        "result-still": Result(100, ref, still=Still("s", "booth")),
        "result-error": Result(100, ref, error="aborted"),
    }
    *fine, wrong = answers
    for answer in fine:
        pair.to_doctor(encode(wire[answer]))
    before = dict(pair.doctor.open_commands)
    with pytest.raises(DataChannelError) as caught:
        pair.to_doctor(encode(wire[wrong]))
    assert caught.value.reason is Reason.REFERENCE
    assert pair.doctor.open_commands == before  # the refusal changed nothing


def test_the_booth_cannot_build_an_answer_that_does_not_fit() -> None:
    pair = Pair()
    sent = one(pair.to_booth(pair.doctor.send_command("thermometer.read")), Command)
    with pytest.raises(DataChannelError) as caught:
        pair.booth.send_result(sent.id, error="no")
    assert caught.value.reason is Reason.REFERENCE
    with pytest.raises(DataChannelError):
        pair.booth.send_ack(sent.id + 1, True)
    pair.to_doctor(pair.booth.send_ack(sent.id, True))


@pytest.mark.parametrize(
    ("sender", "build"),
    [
        ("booth", lambda p: p.send_command("bp.start")),
        ("doctor", lambda p: p.send_stop()),
        ("doctor", lambda p: p.send_status("oximeter", "connected")),
        ("doctor", lambda p: p.send_reading(98, 60)),
        ("doctor", lambda p: p.send_ack(0, True)),
    ],
)
def test_roles_are_enforced_when_sending(sender: Role, build: Callable[[DataChannelProtocol], str]) -> None:
    with pytest.raises(DataChannelError) as caught:
        build(DataChannelProtocol(sender))
    assert caught.value.reason is Reason.ROLE


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        ("doctor", Command(0, "bp.start")),
        ("booth", Stop(0)),
        ("booth", Status(0, "nibp", "measuring")),
        ("booth", OximeterReading(0, 97, 70, ())),
        ("booth", Ack(0, 0, True)),
        ("booth", Progress(0, 0, 1)),
        ("booth", Result(0, 0, error="x")),
    ],
)
def test_roles_are_enforced_when_receiving(receiver: Role, message: Message) -> None:
    protocol = DataChannelProtocol(receiver)
    with pytest.raises(DataChannelError) as caught:
        protocol.receive_message(encode(message))
    assert caught.value.reason is Reason.ROLE
    assert caught.value.message_id == 0


def test_the_booth_stop_ends_running_commands_but_not_those_in_flight() -> None:
    pair = Pair()
    bp = one(pair.to_booth(pair.doctor.send_command("bp.start")), Command)
    pair.to_doctor(pair.booth.send_ack(bp.id, True))
    crossing = pair.doctor.send_command("thermometer.read")  # on the wire while the patient presses STOP
    stop = one(pair.to_doctor(pair.booth.send_stop()), Stop)
    assert stop == Stop(stop.id)
    assert bp.id not in pair.doctor.open_commands
    assert bp.id not in pair.booth.open_commands
    thermo = one(pair.to_booth(crossing), Command)
    # The crossing command still gets its (refusing) ack; the cancelled one gets nothing more.
    pair.to_doctor(pair.booth.send_ack(thermo.id, False, "stopped at the booth"))
    with pytest.raises(DataChannelError):
        pair.booth.send_result(bp.id, error="stopped")
    with pytest.raises(DataChannelError):
        pair.to_doctor(encode(Result(999, bp.id, error="stopped")))
    assert pair.doctor.open_commands == pair.booth.open_commands == {}


def test_a_duplicate_command_id_is_refused_and_too_many_commands_are_busy() -> None:
    booth = DataChannelProtocol("booth")
    booth.receive_message(encode(Command(5, "bp.start")))
    with pytest.raises(DataChannelError) as caught:
        booth.receive_message(encode(Command(5, "bp.start")))
    assert caught.value.reason is Reason.REFERENCE
    for ref in range(6, 6 + 31):
        booth.receive_message(encode(Command(ref, "oximeter.start")))
    with pytest.raises(DataChannelError) as full:
        booth.receive_message(encode(Command(99, "oximeter.start")))
    assert full.value.reason is Reason.BUSY
    doctor = DataChannelProtocol("doctor")
    for _ in range(32):
        doctor.send_command("oximeter.start")
    with pytest.raises(DataChannelError) as busy:
        doctor.send_command("oximeter.start")
    assert busy.value.reason is Reason.BUSY


def test_chat_status_and_stream_pass_through() -> None:
    pair = Pair()
    assert pair.to_doctor(
        pair.booth.send_chat("J'ai mal à l'oreille"),
        pair.booth.send_status("oximeter", "connected"),
        pair.booth.send_reading(97, 72, (1, 2, 3)),
    ) == [Chat(0, "J'ai mal à l'oreille"), Status(1, "oximeter", "connected"), OximeterReading(2, 97, 72, (1, 2, 3))]
    assert pair.to_booth(pair.doctor.send_chat("Bonjour")) == [Chat(0, "Bonjour")]


def test_builders_refuse_what_the_peer_would_refuse() -> None:
    protocol = DataChannelProtocol("booth")
    builds: list[Callable[[], str]] = [
        lambda: protocol.send_chat(""),
        lambda: protocol.send_chat("\ud800"),
        lambda: protocol.send_reading(101, 60),
        lambda: protocol.send_progress(0, float("nan")),
        lambda: protocol.send_status("Oximeter", "on"),
        lambda: protocol.send_result(0, readings=(Measurement("a", 1, "u"), Measurement("a", 2, "u"))),
    ]
    for build in builds:
        with pytest.raises(DataChannelError):
            build()
    assert protocol.send_chat("ok") == '{"v":1,"type":"chat","id":0,"text":"ok"}'  # no id was used up


def test_an_error_leaves_the_protocol_working() -> None:
    pair = Pair()
    messages = list(pair.booth.send_file(FileSender(b"hello" * 1000, name="a.txt", mime="text/plain", transfer="t")))
    pair.to_doctor(messages[0])
    for bad in ("{", '{"v":1}', encode(Command(1, "bp.start")), encode(FileChunk(9, "other", 0, b"x"))):
        with pytest.raises(DataChannelError):
            pair.to_doctor(bad)
    events = pair.to_doctor(*messages[1:])
    assert isinstance(events[-1], FileReceived)
    assert events[-1].data == b"hello" * 1000


# -- files -------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.integers(1, 700))
def test_files_of_any_size_arrive_verified(data: bytes, chunk_size: int) -> None:
    pair = Pair()
    sender = FileSender(data, name="photo.jpg", mime="image/jpeg", transfer="f1", chunk_size=chunk_size)
    events = pair.to_booth(*pair.doctor.send_file(sender))
    assert isinstance(events[0], FileOffer)
    progress = [e for e in events if isinstance(e, FileProgress)]
    assert len(progress) == -(-len(data) // chunk_size)
    assert [p.received for p in progress] == [min(len(data), (i + 1) * chunk_size) for i in range(len(progress))]
    received = events[-1]
    assert isinstance(received, FileReceived)
    assert (received.data, received.name, received.mime) == (data, "photo.jpg", "image/jpeg")
    assert received.sha256 == hashlib.sha256(data).hexdigest()
    assert pair.booth.incoming_transfers == ()
    ack = one(pair.to_doctor(pair.booth.send_file_ack("f1", True)), FileAck)
    assert ack == FileAck(ack.id, "f1", True)


def test_a_large_file_in_full_size_chunks() -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4, 17 chunks
    pair = Pair()
    messages = list(pair.booth.send_file(FileSender(data, name="still.png", mime="image/png", transfer="s")))
    assert len(messages) == 2 + 17
    assert all(len(m.encode()) <= MAX_MESSAGE_BYTES for m in messages)
    assert pair.to_doctor(*messages)[-1] == FileReceived(
        "s", "still.png", "image/png", data, hashlib.sha256(data).hexdigest()
    )


DONE = '{"v":1,"type":"file-done","id":9,"transfer":"t"}'


def _offer_and_chunks(data: bytes, chunks: Iterable[bytes], size: int | None = None) -> list[str]:
    offer = FileOffer(0, "t", "a.bin", "application/octet-stream", len(data) if size is None else size,
                      hashlib.sha256(data).hexdigest())  # fmt: skip
    return [encode(offer), *(encode(FileChunk(1 + i, "t", i, c)) for i, c in enumerate(chunks))]


@pytest.mark.parametrize(
    ("messages", "fails_at"),
    [
        # a corrupted chunk: caught by the digest at file-done
        ([*_offer_and_chunks(b"hello world", [b"hello", b" worlD"]), DONE], -1),
        # out of order
        ([*_offer_and_chunks(b"hello world", [b"hello"]), encode(FileChunk(5, "t", 2, b" world"))], -1),
        # duplicate
        ([*_offer_and_chunks(b"hello world", [b"hello"]), encode(FileChunk(5, "t", 0, b"hello"))], -1),
        # more than announced
        ([*_offer_and_chunks(b"hello world", [b"hello world", b"!"])], -1),
        ([*_offer_and_chunks(b"hello world", [b"hello world!"], size=11)], -1),
        # less than announced
        ([*_offer_and_chunks(b"hello world", [b"hello"]), DONE], -1),
    ],
)
def test_broken_transfers_are_refused_and_discarded(messages: list[str], fails_at: int) -> None:
    booth = DataChannelProtocol("booth")
    for message in messages[:fails_at]:
        booth.receive_message(message)
    with pytest.raises(DataChannelError) as caught:
        booth.receive_message(messages[fails_at])
    assert caught.value.reason is Reason.TRANSFER
    assert caught.value.transfer == "t"
    assert booth.incoming_transfers == ()
    with pytest.raises(DataChannelError) as after:
        booth.receive_message(encode(FileChunk(50, "t", 0, b"x")))
    assert after.value.reason is Reason.REFERENCE
    # The same id can be offered again and goes through.
    events = [e for m in _offer_and_chunks(b"ok", [b"ok"]) for e in booth.receive_message(m)]
    events += booth.receive_message(DONE)
    assert isinstance(events[-1], FileReceived)


def test_the_receiver_wipes_a_failed_file() -> None:
    offer = FileOffer(0, "t", "a", "a/b", 4, hashlib.sha256(b"abcd").hexdigest())
    receiver = FileReceiver(offer)
    receiver.add(FileChunk(1, "t", 0, b"abcX"))
    buffer = receiver._buffer
    with pytest.raises(DataChannelError):
        receiver.finish()
    assert receiver.closed
    assert receiver.received == 0
    assert buffer == bytearray()


def test_offers_are_limited_and_unique() -> None:
    booth = DataChannelProtocol("booth")
    booth.receive_message(encode(FileOffer(0, "a", "a", "a/b", 1, SHA_EMPTY)))
    with pytest.raises(DataChannelError) as duplicate:
        booth.receive_message(encode(FileOffer(1, "a", "a", "a/b", 1, SHA_EMPTY)))
    assert duplicate.value.reason is Reason.REFERENCE
    booth.receive_message(encode(FileOffer(2, "b", "b", "a/b", 1, SHA_EMPTY)))
    with pytest.raises(DataChannelError) as busy:
        booth.receive_message(encode(FileOffer(3, "c", "c", "a/b", 1, SHA_EMPTY)))
    assert busy.value.reason is Reason.BUSY
    assert busy.value.transfer == "c"
    assert booth.incoming_transfers == ("a", "b")


def test_a_receiver_cancels_a_transfer_and_the_sender_stops() -> None:
    pair = Pair()
    outgoing = pair.doctor.send_file(FileSender(bytes(1000), name="a", mime="a/b", transfer="x", chunk_size=100))
    pair.to_booth(next(outgoing), next(outgoing))
    with pytest.raises(DataChannelError):
        pair.booth.send_file_ack("x", True)  # not complete yet
    ack = one(pair.to_doctor(pair.booth.send_file_ack("x", False, "refused")), FileAck)
    assert ack == FileAck(ack.id, "x", False, "refused")
    assert pair.booth.incoming_transfers == ()
    assert list(outgoing) == []
    with pytest.raises(DataChannelError) as again:
        pair.to_doctor(pair.booth.send_file_ack("x", False))
    assert again.value.reason is Reason.REFERENCE


def test_a_sender_refuses_bad_files_up_front() -> None:
    doctor = DataChannelProtocol("doctor")
    with pytest.raises(DataChannelError):
        doctor.send_file(FileSender(b"x", name="../../x", mime="a/b", transfer="t"))
    with pytest.raises(DataChannelError):
        FileSender(bytes(MAX_FILE_BYTES + 1), name="big", mime="a/b", transfer="t")
    with pytest.raises(DataChannelError):
        FileSender(b"x", name="x", mime="a/b", transfer="t", chunk_size=MAX_CHUNK_BYTES + 1)
    list(doctor.send_file(FileSender(b"x", name="x", mime="a/b", transfer="t")))
    with pytest.raises(DataChannelError):
        doctor.send_file(FileSender(b"x", name="x", mime="a/b", transfer="t"))  # still awaiting its ack


# -- property tests ----------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
VALID_WIRE = [wire for wire, _ in VALID]


def _protocols() -> list[DataChannelProtocol]:
    return [DataChannelProtocol("booth"), DataChannelProtocol("doctor")]


def _only_typed_errors(protocols: list[DataChannelProtocol], raw: str | bytes) -> None:
    for protocol in protocols:
        with contextlib.suppress(DataChannelError):
            protocol.receive_message(raw)


@given(st.binary(max_size=400))
def test_random_bytes_raise_only_data_channel_errors(data: bytes) -> None:
    _only_typed_errors(_protocols(), data)


@given(st.dictionaries(st.sampled_from(["v", "type", "id", "text", "ref", "ok", "transfer", "data"]), json_values))
def test_random_documents_raise_only_data_channel_errors(document: dict[str, object]) -> None:
    _only_typed_errors(_protocols(), json.dumps(document))


@given(st.sampled_from(VALID_WIRE), st.sampled_from(["replace", "delete", "add"]), st.data())
def test_mutated_messages_raise_only_data_channel_errors(wire: str, how: str, data: st.DataObject) -> None:
    document = json.loads(wire)
    key = data.draw(st.sampled_from(sorted(document)))
    if how == "replace":
        document[key] = data.draw(json_values)
    elif how == "delete":
        del document[key]
    else:
        document[data.draw(st.text(max_size=8))] = data.draw(json_values)
    protocols = _protocols()
    _only_typed_errors(protocols, json.dumps(document))
    # Whatever happened, a valid message still goes through.
    assert protocols[0].receive_message('{"v":1,"type":"chat","id":1,"text":"a"}') == [Chat(1, "a")]


@given(st.sampled_from(VALID_WIRE), st.integers(0, 10_000), st.integers(0, 255))
def test_flipped_bytes_raise_only_data_channel_errors(wire: str, position: int, value: int) -> None:
    raw = bytearray(wire.encode())
    raw[position % len(raw)] = value
    _only_typed_errors(_protocols(), bytes(raw))


@given(st.lists(st.sampled_from(VALID_WIRE) | st.text(max_size=30), max_size=12))
def test_any_sequence_of_messages_raises_only_data_channel_errors(sequence: list[str]) -> None:
    protocols = _protocols()
    for raw in sequence:
        _only_typed_errors(protocols, raw)
