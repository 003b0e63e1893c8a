"""The console's data-channel module (hub/static/js/datachannel.js) against kiosk/session/datachannel.py.

Malformed or out-of-role booth messages are refused by the browser for the same reason Python gives,
without changing its state; a whole exchange with Python's DataChannelProtocol("booth") works message
for message, and everything the browser sends is accepted by Python's parser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any, TypeVar

import pytest

from kiosk.session import datachannel as dc
from tests.browser.conftest import Console

pytestmark = pytest.mark.asyncio(loop_scope="session")


E = TypeVar("E")


def single(events: list[dc.Event], kind: type[E]) -> E:
    """The one event of a message, of the expected kind."""
    assert len(events) == 1 and isinstance(events[0], kind), events
    return events[0]


HARNESS = """() => {
  window.__dcTest = (async () => {
    const dc = await import('/static/js/datachannel.js');
    const { sha256Hex } = await import('/static/js/util.js');
    const proto = new dc.DataChannelProtocol('doctor');
    const bytes = (h) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
    const summary = async (event) => {
      if (event.type === 'file-received') {
        const { data, ...rest } = event;
        return { ...rest, size: data.length, actualSha256: await sha256Hex(data) };
      }
      if (event.type === 'file-chunk') return { ...event, data: data.length };
      return event;
    };
    return {
      dc,
      proto,
      async feed(items) {
        const out = [];
        for (const item of items) {
          const raw = typeof item === 'string' ? item : bytes(item.hex);
          try {
            const events = await proto.receiveMessage(raw);
            out.push({ ok: true, events: await Promise.all(events.map(summary)) });
          } catch (error) {
            if (!(error instanceof dc.DataChannelError)) throw error;
            out.push({ ok: false, reason: error.reason, messageId: error.messageId, transfer: error.transfer });
          }
        }
        return out;
      },
      command: (name, camera = null) => proto.sendCommand(name, camera),
      chat: (text) => proto.sendChat(text),
      fileAck: (transfer, ok, reason = null) => proto.sendFileAck(transfer, ok, reason),
      async sendFile(hex, name, mime) {
        const sender = await dc.FileSender.create(bytes(hex), { name, mime });
        return [proto.offerFile(sender), ...proto.fileMessages(sender)];
      },
      open: () => ({ commands: [...proto.openCommands], incoming: proto.incomingTransfers, nextId: proto.nextId }),
    };
  })();
}"""


async def harness(console: Console) -> None:
    await console.open()
    await console.evaluate(HARNESS)
    await console.evaluate("async () => { await window.__dcTest; }")


async def js(console: Console, call: str, *args: Any) -> Any:
    return await console.evaluate(f"async (args) => (await window.__dcTest).{call}(...args)", list(args))


def python_reason(protocol: dc.DataChannelProtocol, raw: str | bytes) -> str | None:
    try:
        protocol.receive_message(raw)
    except dc.DataChannelError as exc:
        return exc.reason.value
    return None


def message(type_: str, id_: int = 100, **fields: Any) -> str:
    return json.dumps({"v": 1, "type": type_, "id": id_, **fields})


SHA = "ab" * 32
BAD_MESSAGES: dict[str, str | bytes] = {
    "too large": message("chat", text="a" * (dc.MAX_MESSAGE_BYTES + 1)),
    "not JSON": "not json",
    "truncated JSON": '{"v":1,"type":"chat"',
    "NaN": '{"v":1,"type":"progress","id":100,"ref":0,"cuff_pressure":NaN}',
    "Infinity": '{"v":1,"type":"progress","id":100,"ref":0,"cuff_pressure":Infinity}',
    "duplicate key": '{"v":1,"type":"chat","id":100,"text":"a","text":"b"}',
    "trailing data": message("chat", text="a") + " {}",
    "not UTF-8 (binary)": b'{"v":1,"type":"chat","id":100,"text":"\xff"}',
    "raw control character in a string": '{"v":1,"type":"chat","id":100,"text":"a\x01"}',
    "deep nesting": '{"v":1,"type":"chat","id":100,"text":' + "[" * 5000 + "]" * 5000 + "}",
    "an array": "[1, 2]",
    "a string": '"chat"',
    "null": "null",
    "version 2": '{"v":2,"type":"chat","id":100,"text":"a"}',
    "version 1.0": '{"v":1.0,"type":"chat","id":100,"text":"a"}',
    "version true": '{"v":true,"type":"chat","id":100,"text":"a"}',
    "no version": '{"type":"chat","id":100,"text":"a"}',
    "unknown type": message("hello"),
    "type not text": '{"v":1,"type":5,"id":100}',
    "negative id": message("chat", -1, text="a"),
    "float id": '{"v":1,"type":"chat","id":100.0,"text":"a"}',
    "exponent id": '{"v":1,"type":"chat","id":1e2,"text":"a"}',
    "boolean id": '{"v":1,"type":"chat","id":true,"text":"a"}',
    "id past 2**53-1": message("chat", 2**53, text="a"),
    "text id": '{"v":1,"type":"chat","id":"3","text":"a"}',
    "unknown field": message("chat", text="a", extra=1),
    "empty chat": message("chat", text=""),
    "chat too long": message("chat", text="é" * (dc.MAX_CHAT_CHARS + 1)),
    "chat with a control character": message("chat", text="bell\u0007"),
    "chat with a C1 control": message("chat", text="x\u0085"),
    "chat with a lone surrogate": '{"v":1,"type":"chat","id":100,"text":"\\ud800"}',
    "chat text null": message("chat", text=None),
    "command from the booth": message("command", command="bp.start"),
    "ack of no command": message("ack", ref=99, ok=True),
    "ack ref as float": '{"v":1,"type":"ack","id":100,"ref":0.0,"ok":true}',
    "ack ok as number": message("ack", ref=0, ok=1),
    "ack reason null": message("ack", ref=0, ok=False, reason=None),
    "progress before the ack": message("progress", ref=0, cuff_pressure=80),
    "progress as text": message("progress", ref=0, cuff_pressure="80"),
    "cuff pressure over 400": message("progress", ref=0, cuff_pressure=401),
    "result of an unacked command": message("result", ref=0, readings={"systolic": {"value": 120, "unit": "mmHg"}}),
    "result with readings and error": message(
        "result", ref=0, readings={"systolic": {"value": 1, "unit": "mmHg"}}, error="x"
    ),
    "result with nothing": message("result", ref=0),
    "empty readings": message("result", ref=0, readings={}),
    "reading value as text": message("result", ref=0, readings={"celsius": {"value": "37", "unit": "C"}}),
    "reading kind upper case": message("result", ref=0, readings={"Systolic": {"value": 1, "unit": "mmHg"}}),
    "reading without unit": message("result", ref=0, readings={"celsius": {"value": 37}}),
    "still from an unknown camera": message("result", ref=0, still={"transfer": "t1", "camera": "webcam"}),
    "status device upper case": message("status", device="OXI", state="connected"),
    "status state with a space": message("status", device="oximeter", state="not ok"),
    "spo2 over 100": message("reading", spo2=101, pulse=70, pleth=[]),
    "spo2 as float": message("reading", spo2=97.5, pulse=70, pleth=[]),
    "pulse missing": message("reading", spo2=97, pleth=[]),
    "pleth sample 256": message("reading", spo2=97, pulse=70, pleth=[1, 256]),
    "pleth too long": message("reading", spo2=97, pulse=70, pleth=[1] * (dc.MAX_PLETH_SAMPLES + 1)),
    "pleth not a list": message("reading", spo2=97, pulse=70, pleth="1,2"),
    "stop by the doctor": message("stop", by="doctor"),
    "stop without by": message("stop"),
    "chunk of no transfer": message("file-chunk", transfer="t9", index=0, data="AAAA"),
    "done of no transfer": message("file-done", transfer="t9"),
    "file-ack of no outgoing file": message("file-ack", transfer="t9", ok=True),
    "offer with a path": message(
        "file-offer", transfer="t1", name="../etc/passwd", mime="text/plain", size=1, sha256=SHA
    ),
    "offer with a backslash": message("file-offer", transfer="t1", name="a\\b", mime="text/plain", size=1, sha256=SHA),
    "offer named ..": message("file-offer", transfer="t1", name="..", mime="text/plain", size=1, sha256=SHA),
    "offer mime upper case": message("file-offer", transfer="t1", name="a.jpg", mime="Image/JPEG", size=1, sha256=SHA),
    "offer too large": message(
        "file-offer",
        transfer="t1",
        name="a.bin",
        mime="application/octet-stream",
        size=dc.MAX_FILE_BYTES + 1,
        sha256=SHA,
    ),
    "offer digest upper case": message(
        "file-offer", transfer="t1", name="a", mime="text/plain", size=1, sha256="AB" * 32
    ),
    "offer transfer with a slash": message(
        "file-offer", transfer="a/b", name="a", mime="text/plain", size=1, sha256=SHA
    ),
    "chunk not canonical base64": message("file-chunk", transfer="t9", index=0, data="QR=="),
    "chunk base64 with whitespace": message("file-chunk", transfer="t9", index=0, data="QUJD RA=="),
    "chunk empty": message("file-chunk", transfer="t9", index=0, data=""),
    "chunk too large": message(
        "file-chunk", transfer="t9", index=0, data=base64.b64encode(b"x" * (dc.MAX_CHUNK_BYTES + 1)).decode()
    ),
}


async def test_bad_booth_messages_are_refused_like_python(console: Console) -> None:
    await harness(console)
    python = dc.DataChannelProtocol("doctor")
    # The same state on both ends: bp.start (id 0) and thermometer.read (id 1) sent, not acked yet.
    for name in ("bp.start", "thermometer.read"):
        text = python.send_command(name)
        assert json.loads(text) == json.loads((await js(console, "command", name))["text"])
    expected = {name: python_reason(python, raw) for name, raw in BAD_MESSAGES.items()}
    assert None not in expected.values(), expected
    items = [{"hex": raw.hex()} if isinstance(raw, bytes) else raw for raw in BAD_MESSAGES.values()]
    results = await js(console, "feed", items)
    browser = {
        name: (r["reason"] if not r["ok"] else "accepted") for name, r in zip(BAD_MESSAGES, results, strict=True)
    }
    assert browser == expected
    # Ids and transfers are reported where they could be read (to answer with an ack or a file-ack).
    by_name = dict(zip(BAD_MESSAGES, results, strict=True))
    assert by_name["command from the booth"]["messageId"] == 100
    assert by_name["chunk of no transfer"]["transfer"] == "t9"
    assert by_name["offer with a path"]["transfer"] == "t1"
    # No bad message changed anything: both commands still open, no transfer started, and valid ones work.
    assert await js(console, "open") == {
        "commands": [[0, "bp.start"], [1, "thermometer.read"]],
        "incoming": [],
        "nextId": 2,
    }
    ack = dc.encode(dc.Ack(300, 0, True))
    results = await js(console, "feed", [ack])
    assert results == [
        {
            "ok": True,
            "events": [{"type": "ack", "id": 300, "ref": 0, "ok": True, "reason": None, "command": "bp.start"}],
        }
    ]


async def test_exchange_with_pythons_booth_protocol(console: Console) -> None:
    await harness(console)
    booth = dc.DataChannelProtocol("booth")

    async def doctor_sends(call: str, *args: Any) -> list[dc.Event]:
        """Something the browser builds, received by Python's booth (it must accept it)."""
        result = await js(console, call, *args)
        texts = result if isinstance(result, list) else [result["text"] if isinstance(result, dict) else result]
        events: list[dc.Event] = []
        for text in texts:
            events += booth.receive_message(text)
        return events

    async def booth_sends(*texts: str) -> list[dict[str, Any]]:
        results = await js(console, "feed", list(texts))
        assert all(r["ok"] for r in results), results
        return [event for r in results for event in r["events"]]

    # A blood-pressure cycle: ack, progress, readings.
    bp = single(await doctor_sends("command", "bp.start"), dc.Command)
    assert bp == dc.Command(0, "bp.start")
    events = await booth_sends(
        booth.send_ack(bp.id, True),
        booth.send_progress(bp.id, 123.5),
        booth.send_progress(bp.id, 80),
        booth.send_result(
            bp.id,
            readings=(
                dc.Measurement("systolic", 121, "mmHg"),
                dc.Measurement("diastolic", 79.5, "mmHg"),
                dc.Measurement("mean", None, "mmHg"),
                dc.Measurement("pulse", 64, "/min"),
            ),
        ),
    )
    assert [e["type"] for e in events] == ["ack", "progress", "progress", "result"]
    assert [e["cuffPressure"] for e in events[1:3]] == [123.5, 80]
    assert events[3]["readings"] == [
        {"kind": "systolic", "value": 121, "unit": "mmHg"},
        {"kind": "diastolic", "value": 79.5, "unit": "mmHg"},
        {"kind": "mean", "value": None, "unit": "mmHg"},
        {"kind": "pulse", "value": 64, "unit": "/min"},
    ]

    # A thermometer refused by the booth ends at its ack.
    thermometer = single(await doctor_sends("command", "thermometer.read"), dc.Command)
    [refused] = await booth_sends(booth.send_ack(thermometer.id, False, "thermomètre absent"))
    assert (refused["ok"], refused["reason"]) == (False, "thermomètre absent")

    # Camera select, then a still: the result names the transfer, the JPEG follows as a file.
    select = single(await doctor_sends("command", "camera.select", "otoscope"), dc.Command)
    assert (select.command, select.camera) == ("camera.select", "otoscope")
    await booth_sends(booth.send_ack(select.id, True))
    still = single(await doctor_sends("command", "camera.still"), dc.Command)
    jpeg = b"\xff\xd8\xff\xe0" + os.urandom(150_000) + b"\xff\xd9"
    sender = dc.FileSender(jpeg, name="otoscope-1.jpg", mime="image/jpeg", transfer="still-1")
    events = await booth_sends(
        booth.send_ack(still.id, True),
        booth.send_result(still.id, still=dc.Still("still-1", "otoscope")),
        *booth.send_file(sender),
    )
    assert events[1]["still"] == {"transfer": "still-1", "camera": "otoscope"}
    kinds = [e["type"] for e in events[2:]]
    assert kinds == ["file-offer", "file-progress", "file-progress", "file-progress", "file-received"]
    received = events[-1]
    assert received["size"] == len(jpeg)
    assert received["actualSha256"] == received["sha256"] == hashlib.sha256(jpeg).hexdigest()
    ack = single(await doctor_sends("fileAck", "still-1", True), dc.FileAck)
    assert ack == dc.FileAck(ack.id, "still-1", True)

    # Oximeter stream and statuses.
    oximeter = single(await doctor_sends("command", "oximeter.start"), dc.Command)
    events = await booth_sends(
        booth.send_ack(oximeter.id, True),
        booth.send_status("oximeter", "streaming"),
        booth.send_reading(97, 72, tuple(range(0, 256, 4))),
        booth.send_reading(None, None, ()),
    )
    assert events[1] == {"type": "status", "id": events[1]["id"], "device": "oximeter", "state": "streaming"}
    assert (events[2]["spo2"], events[2]["pulse"], events[2]["pleth"][:3]) == (97, 72, [0, 4, 8])
    assert (events[3]["spo2"], events[3]["pulse"], events[3]["pleth"]) == (None, None, [])

    # STOP ends the running BP cycle on both ends; a late progress for it is refused.
    bp = single(await doctor_sends("command", "bp.start"), dc.Command)
    await booth_sends(booth.send_ack(bp.id, True), booth.send_progress(bp.id, 40))
    [stop] = await booth_sends(booth.send_stop())
    assert stop["ended"] == [{"ref": bp.id, "command": "bp.start"}]
    assert (await js(console, "open"))["commands"] == []
    late = await js(console, "feed", [dc.encode(dc.Progress(999, bp.id, 50))])
    assert late[0]["reason"] == "reference"

    # Chat both ways, with line breaks and characters outside the BMP.
    text = "Bonjour docteur,\nj'ai mal à la gorge 😷"
    [chat] = await booth_sends(booth.send_chat(text))
    assert chat["text"] == text
    back = single(await doctor_sends("chat", "Ouvrez la bouche — « aaah » 👍"), dc.Chat)
    assert back == dc.Chat(back.id, "Ouvrez la bouche — « aaah » 👍")

    # A document from the doctor, chunked and hashed in the browser, reassembled by Python.
    document = os.urandom(dc.MAX_CHUNK_BYTES * 2 + 1234)
    file_events = await doctor_sends("sendFile", document.hex(), "ordonnance.pdf", "application/pdf")
    received_file = file_events[-1]
    assert isinstance(received_file, dc.FileReceived)
    assert (received_file.name, received_file.mime, received_file.data) == (
        "ordonnance.pdf",
        "application/pdf",
        document,
    )
    [file_ack] = await booth_sends(booth.send_file_ack(received_file.transfer, True))
    assert (file_ack["type"], file_ack["ok"]) == ("file-ack", True)


async def test_broken_transfers_are_discarded(console: Console) -> None:
    await harness(console)
    booth = dc.DataChannelProtocol("booth")
    data = os.urandom(1000)
    offer, chunk, done = booth.send_file(
        dc.FileSender(data, name="a.bin", mime="application/octet-stream", transfer="t1")
    )
    # A digest that does not match: refused at file-done, and the transfer is gone.
    bad = json.loads(offer)
    bad["sha256"] = "00" * 32
    results = await js(console, "feed", [json.dumps(bad), chunk, done])
    assert [r["ok"] for r in results] == [True, True, False]
    assert (results[2]["reason"], results[2]["transfer"]) == ("transfer", "t1")
    assert (await js(console, "open"))["incoming"] == []
    # A chunk out of order, then a short file.
    booth2 = dc.DataChannelProtocol("booth")
    offer, first, second, done = booth2.send_file(
        dc.FileSender(os.urandom(dc.MAX_CHUNK_BYTES + 10), name="b.bin", mime="application/octet-stream", transfer="t2")
    )
    results = await js(console, "feed", [offer, second])
    assert results[1]["reason"] == "transfer"
    booth3 = dc.DataChannelProtocol("booth")
    offer, first, second, done = booth3.send_file(
        dc.FileSender(os.urandom(dc.MAX_CHUNK_BYTES + 10), name="c.bin", mime="application/octet-stream", transfer="t3")
    )
    results = await js(console, "feed", [offer, first, done])
    assert results[2]["reason"] == "transfer"
    # At most two incoming files at once.
    offers = [
        next(
            dc.DataChannelProtocol("booth").send_file(
                dc.FileSender(b"x", name="x", mime="text/plain", transfer=f"u{i}")
            )
        )
        for i in range(3)
    ]
    results = await js(console, "feed", offers)
    assert [r.get("reason") for r in results] == [None, None, "busy"]
    # The doctor cancels one (file-ack ok false on an open transfer) and the slot frees up.
    cancel = json.loads(await js(console, "fileAck", "u0", False, "annulé"))
    assert (cancel["type"], cancel["ok"], cancel["reason"]) == ("file-ack", False, "annulé")
    assert sorted((await js(console, "open"))["incoming"]) == ["u1"]
