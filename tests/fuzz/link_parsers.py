"""Coverage-guided fuzzing (atheris) of the consultation link's parsers.

    python -m tests.fuzz.link_parsers TARGET [libFuzzer options, e.g. -max_total_time=5] [CORPUS_DIR]

TARGET: datachannel, file-transfer, commands, sdp-fingerprint, binding.
Each harness lets only the parser's own error type through (DataChannelError,
BindingError); anything else is a crash the fuzzer reports with its input.
A corpus directory that exists and is empty is first seeded with valid inputs
of the target (real messages, a real certificate), so mutation starts from the
structure the parsers expect rather than from nothing.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from kiosk.session import binding, datachannel
    from kiosk.session.datachannel import DataChannelError, DataChannelProtocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SEED_MESSAGES = [
    '{"v":1,"type":"chat","id":0,"text":"Bonjour"}',
    '{"v":1,"type":"file-offer","id":1,"transfer":"t","name":"a.pdf","mime":"application/pdf","size":5,'
    f'"sha256":"{hashlib.sha256(b"hello").hexdigest()}"}}',
    '{"v":1,"type":"file-chunk","id":2,"transfer":"t","index":0,"data":"aGVsbG8="}',
    '{"v":1,"type":"file-done","id":3,"transfer":"t"}',
    '{"v":1,"type":"file-ack","id":4,"transfer":"t","ok":false,"reason":"no"}',
    '{"v":1,"type":"command","id":5,"command":"camera.select","camera":"otoscope"}',
    '{"v":1,"type":"ack","id":6,"ref":5,"ok":true}',
    '{"v":1,"type":"progress","id":7,"ref":5,"cuff_pressure":120.5}',
    '{"v":1,"type":"result","id":8,"ref":5,"readings":{"systolic":{"value":121,"unit":"mmHg"}}}',
    '{"v":1,"type":"result","id":9,"ref":5,"still":{"transfer":"s","camera":"booth"}}',
    '{"v":1,"type":"status","id":10,"device":"nibp","state":"measuring"}',
    '{"v":1,"type":"reading","id":11,"spo2":97,"pulse":null,"pleth":[1,2,3]}',
    '{"v":1,"type":"stop","id":12,"by":"booth"}',
]
SDP_SEED = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\na=fingerprint:sha-256 "
    + ":".join(["AB"] * 32)
    + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 "
    + ":".join(["ab"] * 32)
    + "\r\n"
)
NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)


# -- datachannel: raw messages to both ends, in sequence ---------------------------------
def datachannel_target(data: bytes) -> None:
    # Fuzzer bytes split on newlines: a sequence of messages to both ends. What
    # parses must encode back to an equal message.
    ends = [DataChannelProtocol("booth"), DataChannelProtocol("doctor")]
    for raw in data.split(b"\n")[:32]:
        try:
            message = datachannel.parse_message(raw)
        except DataChannelError:
            pass
        else:
            assert datachannel.parse_message(datachannel.encode(message)) == message
        for end in ends:
            with contextlib.suppress(DataChannelError):
                end.receive_message(raw)
            _check_invariants(end)


def _check_invariants(end: DataChannelProtocol) -> None:
    assert len(end.open_commands) <= datachannel.MAX_PENDING_COMMANDS
    assert len(end.incoming_transfers) <= datachannel.MAX_INCOMING_TRANSFERS


# -- file-transfer: the fuzzer plays a sender that bends every rule ------------------------
def file_transfer_target(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    booth = DataChannelProtocol("booth")
    offers: dict[str, datachannel.FileOffer] = {}
    for id_ in range(64):
        if not provider.remaining_bytes():
            break
        transfer = provider.PickValueInList(["a", "b", "c"])
        step = provider.ConsumeIntInRange(0, 3)
        message: datachannel.Message
        if step == 0:
            content = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 300))
            honest = provider.ConsumeBool()
            digest = hashlib.sha256(content if honest else content + b"!").hexdigest()
            size = len(content) if honest else provider.ConsumeIntInRange(0, 400)
            message = datachannel.FileOffer(id_, transfer, "f", "a/b", size, digest)
        elif step == 1:
            chunk = provider.ConsumeBytes(provider.ConsumeIntInRange(1, 80)) or b"x"
            message = datachannel.FileChunk(id_, transfer, provider.ConsumeIntInRange(0, 5), chunk)
        elif step == 2:
            message = datachannel.FileDone(id_, transfer)
        else:
            with contextlib.suppress(DataChannelError):
                booth.send_file_ack(transfer, False)
            continue
        try:
            events = booth.receive_message(datachannel.encode(message))
        except DataChannelError as exc:
            if exc.transfer not in (None, transfer):
                raise AssertionError("an error names another transfer") from exc
            continue
        for event in events:
            if isinstance(event, datachannel.FileOffer):
                offers[event.transfer] = event
            elif isinstance(event, datachannel.FileReceived):
                offer = offers[event.transfer]
                # Only a file that is exactly what was announced gets out.
                assert len(event.data) == offer.size
                assert hashlib.sha256(event.data).hexdigest() == offer.sha256 == event.sha256
        _check_invariants(booth)


# -- commands: a doctor and a booth driven by the fuzzer ------------------------------------
def commands_target(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    booth, doctor = DataChannelProtocol("booth"), DataChannelProtocol("doctor")
    names = list(datachannel.COMMANDS)
    forged = False
    for _ in range(64):
        if not provider.remaining_bytes():
            break
        action = provider.ConsumeIntInRange(0, 5)
        ref = provider.ConsumeIntInRange(0, 40)
        try:
            if action == 0:
                name = provider.PickValueInList(names)
                text = doctor.send_command(name, camera="booth" if name == "camera.select" else None)
                booth.receive_message(text)
            elif action == 1:
                doctor.receive_message(booth.send_ack(ref, provider.ConsumeBool()))
            elif action == 2:
                doctor.receive_message(booth.send_progress(ref, provider.ConsumeIntInRange(0, 300)))
            elif action == 3:
                kind = provider.ConsumeIntInRange(0, 2)
                if kind == 0:
                    text = booth.send_result(ref, readings=(datachannel.Measurement("t", 37.0, "°C"),))
                elif kind == 1:
                    text = booth.send_result(ref, still=datachannel.Still("s", "booth"))
                else:
                    text = booth.send_result(ref, error="aborted")
                doctor.receive_message(text)
            elif action == 4:
                doctor.receive_message(booth.send_stop())
            else:
                # A forged answer straight onto the doctor's end, bypassing the booth's checks.
                forged = True
                doctor.receive_message(datachannel.encode(datachannel.Ack(1000 + ref, ref, provider.ConsumeBool())))
        except DataChannelError:
            pass
        _check_invariants(doctor)
        _check_invariants(booth)
    if not forged:
        # Everything the booth built was delivered: both ends agree on what still runs.
        assert doctor.open_commands == booth.open_commands


# -- binding: SDP fingerprints and signed bindings ------------------------------------------
def sdp_fingerprint_target(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        found = binding.fingerprint_of_sdp(text)
    except binding.BindingError:
        return
    assert binding.normalise_fingerprint(found) == found


class _Fleet:
    """One fleet CA and booth certificate, made once per process."""

    def __init__(self) -> None:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fuzz fleet CA")])
        self.root = self._cert(root_name, root_key.public_key(), root_name, root_key, ca=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        booth_name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "booth-0001"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "booth"),
            ]
        )
        self.booth = self._cert(booth_name, self.key.public_key(), root_name, root_key, ca=False)
        self.trust = binding.FleetTrust(self.root.public_bytes(serialization.Encoding.PEM))
        self.fingerprint = "sha-256 " + ":".join(["AB"] * 32)
        self.signature = binding.sign_fingerprint(self.fingerprint, self.key, role="booth", session="s")

    @staticmethod
    def _cert(
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        issuer: x509.Name,
        issuer_key: ec.EllipticCurvePrivateKey,
        *,
        ca: bool,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(1)
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )


_FLEET: _Fleet | None = None


def _fleet() -> _Fleet:
    global _FLEET
    if _FLEET is None:
        _FLEET = _Fleet()
    return _FLEET


def binding_target(data: bytes) -> None:
    # The fuzzer's bytes: one byte of choices (the real fingerprint, signature,
    # which role), then the DER of the peer's certificate, mutated from a real one.
    fleet = _fleet()
    flags, der = (data[0], data[1:]) if data else (0, b"")
    certificate = "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n"
    fingerprint = fleet.fingerprint if flags & 1 else der[-100:].decode("latin-1")
    signature = fleet.signature if flags & 2 else base64.urlsafe_b64encode(der[-72:]).decode()
    role: binding.Role = "doctor" if flags & 4 else "booth"
    try:
        peer = binding.verify_binding(
            fingerprint, signature, certificate, role=role, session="s", trust=fleet.trust, now=NOW
        )
    except binding.BindingError:
        return
    # Only the real booth key can have signed the real fingerprint.
    assert peer.role == "booth" and peer.fingerprint == fleet.fingerprint


# -- seeds and main ----------------------------------------------------------------------
def seeds(name: str) -> list[bytes]:
    """Valid inputs for ``name``: where mutation starts."""
    if name == "datachannel":
        return [m.encode() for m in SEED_MESSAGES] + ["\n".join(SEED_MESSAGES).encode()]
    if name == "sdp-fingerprint":
        return [SDP_SEED.encode()]
    if name == "binding":
        return [b"\x03" + _fleet().booth.public_bytes(serialization.Encoding.DER)]
    return []


TARGETS: dict[str, Callable[[bytes], None]] = {
    "datachannel": datachannel_target,
    "file-transfer": file_transfer_target,
    "commands": commands_target,
    "sdp-fingerprint": sdp_fingerprint_target,
    "binding": binding_target,
}


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in TARGETS:
        sys.exit(f"target must be one of: {', '.join(TARGETS)}")
    for argument in sys.argv[2:]:
        corpus = Path(argument)
        if not argument.startswith("-") and corpus.is_dir() and not any(corpus.iterdir()):
            for index, seed in enumerate(seeds(name)):
                (corpus / f"seed-{index}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
