"""Coverage-guided fuzzing (atheris) of every parser of outside bytes.

    python -m tests.fuzz.parsers TARGET [libFuzzer options, e.g. -runs=20000]

TARGET: contec-cms50-legacy, contec-cms50, suntech-nibp, suntech-host,
lu90614, tlv, vitale, signalling, sealed-record. Each harness feeds the fuzzer's bytes to the parser in
fuzzer-chosen chunks and lets only the parser's own error type through;
anything else is a crash the fuzzer reports with its input.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from devices.errors import RemoteProtocolError
    from devices.protocols import NEED_DATA, contec, contec_legacy, lu90614, suntech
    from hub import messages
    from kiosk.identity import tlv
    from kiosk.identity.errors import CardError
    from kiosk.identity.vitale import VitaleReadout
    from kiosk.records import seal

STREAM_PARSERS: dict[str, Callable[[], object]] = {
    "contec-cms50-legacy": contec_legacy.LegacyOximeterParser,
    "contec-cms50": contec.OximeterParser,
    "suntech-nibp": suntech.NibpParser,
    "suntech-host": suntech.HostCommandParser,
    "lu90614": lu90614.ThermometerParser,
}


def _chunks(data: bytes) -> list[bytes]:
    provider = atheris.FuzzedDataProvider(data)
    pieces = []
    while provider.remaining_bytes():
        size = provider.ConsumeIntInRange(1, 64)
        pieces.append(provider.ConsumeBytes(size))
    return pieces


def stream_target(name: str) -> Callable[[bytes], None]:
    factory = STREAM_PARSERS[name]

    def one_input(data: bytes) -> None:
        parser = factory()
        for piece in _chunks(data):
            parser.receive_data(piece)  # type: ignore[attr-defined]
            for _ in range(10_000):
                try:
                    if parser.next_event() is NEED_DATA:  # type: ignore[attr-defined]
                        break
                except RemoteProtocolError as exc:
                    # The parser must make progress past what it rejects.
                    if not exc.skipped:
                        raise AssertionError("an error that skips nothing would loop forever") from exc
            else:
                raise AssertionError("next_event() never asked for more data")

    return one_input


def tlv_target(data: bytes) -> None:
    try:
        parsed = tlv.parse(data)
    except CardError:
        return
    assert tlv.walk(parsed) is not None


def vitale_target(data: bytes) -> None:
    # The fuzzer plays the card: each response is a fuzzer-chosen byte string.
    readout = VitaleReadout(reader="fuzz")
    responses = _chunks(data)
    try:
        for response in responses:
            if readout.next_command() is None:
                break
            readout.receive_response(response)
        if readout.next_command() is None:
            readout.result()
    except CardError:
        return


def signalling_target(data: bytes) -> None:
    # Every direction's schema sees the same bytes; only MessageError may escape,
    # and whatever passes must re-encode to an equal message.
    for direction in messages.Direction:
        try:
            message = messages.parse(data, direction)
        except messages.MessageError:
            continue
        assert messages.parse(messages.encode(message, direction), direction) == message


_RECORDS_KEY = seal.X25519PrivateKey.from_private_bytes(bytes(range(32)))


def sealed_record_target(data: bytes) -> None:
    # The hub parses headers of what booths upload; the operator's export opens whole records.
    with contextlib.suppress(seal.FormatError):
        seal.parse_header(data)
    try:
        seal.open_record(data, _RECORDS_KEY)
    except seal.FormatError:
        return
    raise AssertionError("fuzzed bytes opened as a sealed record")


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    targets: dict[str, Callable[[bytes], None]] = {n: stream_target(n) for n in STREAM_PARSERS}
    targets["tlv"] = tlv_target
    targets["vitale"] = vitale_target
    targets["signalling"] = signalling_target
    targets["sealed-record"] = sealed_record_target
    if name not in targets:
        sys.exit(f"target must be one of: {', '.join(targets)}")
    atheris.Setup([sys.argv[0], *sys.argv[2:]], targets[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
