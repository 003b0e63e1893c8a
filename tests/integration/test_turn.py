"""The booth's peer through a real coturn on loopback, relay-only, over UDP and over TLS.

Needs Debian's ``coturn`` (``turnserver``); skipped when it is absent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiortc import RTCPeerConnection

from kiosk.session.ice import IceConfig, build_configuration
from kiosk.session.peer import BoothPeer, PeerState
from kiosk.session.tracks import CameraTrack, StethoscopeTrack, SwitchableVideoTrack, stop_tracks
from tests.integration.test_peer import CONNECT_TIMEOUT, OTOSCOPE_SIZE, Booth, Doctor, Media, media, media_files
from tests.support_turn import TurnServer, running_turnserver, turnserver_path

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        turnserver_path() is None, reason="coturn's turnserver is not installed (apt-get install coturn)"
    ),
]
__all__ = ["media", "media_files"]  # fixtures shared with test_peer


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    with running_turnserver(tmp_path_factory.mktemp("turn")) as server:
        yield server


def relay_config(turn: TurnServer, url: str, user: str) -> IceConfig:
    return IceConfig(turn_urls=(url,), turn_secret=turn.secret, turn_user=user, relay_only=True)


def nominated_types(pc: RTCPeerConnection) -> set[str]:
    # aioice keeps the nominated pair per component; aiortc exposes no public getter.
    assert pc.sctp is not None
    connection = pc.sctp.transport.transport._connection
    return {pair.local_candidate.type for pair in connection._nominated.values()} | {
        pair.remote_candidate.type for pair in connection._nominated.values()
    }


def local_types(pc: RTCPeerConnection) -> set[str]:
    assert pc.sctp is not None
    return {c.type for c in pc.sctp.transport.transport.iceGatherer.getLocalCandidates()}


@pytest.fixture
async def relay_booth(media: Media, turn: TurnServer, request: pytest.FixtureRequest) -> AsyncIterator[Booth]:
    examination = SwitchableVideoTrack({"otoscope": media.otoscope}, "otoscope")
    tracks = [CameraTrack(media.room), examination, StethoscopeTrack(media.voice), StethoscopeTrack(media.stethoscope)]
    url = request.param.format(port=turn.port, tls_port=turn.tls_port)
    peer = BoothPeer(
        configuration=build_configuration(relay_config(turn, url, "booth-0001"), now=time.time()),
        booth_camera=tracks[0],
        examination=examination,
        microphone=tracks[2],
        stethoscope=tracks[3],
    )
    try:
        yield Booth(peer, examination, list(tracks))
    finally:
        await peer.close()
        await stop_tracks(*tracks)


URLS = [
    pytest.param("turn:127.0.0.1:{port}", id="turn-udp"),
    pytest.param("turn:127.0.0.1:{port}?transport=tcp", id="turn-tcp"),
    pytest.param("turns:127.0.0.1:{tls_port}?transport=tcp", id="turns-tls"),
]


@pytest.mark.parametrize("relay_booth", URLS, indirect=True)
async def test_relay_only_call_through_coturn(
    relay_booth: Booth, turn: TurnServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # aioice opens TURN over TLS with Python's default context: trust our test CA the standard way.
    monkeypatch.setenv("SSL_CERT_FILE", str(turn.ca_file))
    url = request.node.callspec.params["relay_booth"].format(port=turn.port, tls_port=turn.tls_port)
    doctor = Doctor()
    doctor.pc = RTCPeerConnection(build_configuration(relay_config(turn, url, "doctor"), now=time.time()))
    received: asyncio.Queue[str | bytes] = asyncio.Queue()

    @doctor.pc.on("datachannel")
    def _on_datachannel(channel: object) -> None:
        doctor.channel = channel  # type: ignore[assignment]
        doctor.channel_open.set()
        channel.on("message", doctor.messages.put_nowait)  # type: ignore[attr-defined]

    peer = relay_booth.peer
    try:
        offer = await peer.create_offer()
        # Relay-only: the offer reveals no host address of the booth, only the relay's.
        candidate_lines = [line for line in offer.splitlines() if line.startswith("a=candidate:")]
        assert candidate_lines
        assert all(" typ relay" in line for line in candidate_lines), candidate_lines
        await peer.apply_answer(await doctor.answer(offer))
        await peer.wait_for_state(PeerState.CONNECTED, PeerState.FAILED, timeout=CONNECT_TIMEOUT)
        assert peer.state is PeerState.CONNECTED, peer.error
        await doctor.connected(CONNECT_TIMEOUT)
        assert peer.srtp_profile == "SRTP_AEAD_AES_256_GCM"
        assert peer.connection is not None
        assert local_types(peer.connection) == {"relay"}
        assert nominated_types(peer.connection) == {"relay"}
        assert nominated_types(doctor.pc) == {"relay"}

        # Media and data flow through the relay.
        async with asyncio.timeout(CONNECT_TIMEOUT):
            frame = await doctor.track("1").recv()
        assert (frame.width, frame.height) == OTOSCOPE_SIZE  # type: ignore[union-attr]
        peer.channel.on_message(received.put_nowait)
        await peer.channel.wait_open(CONNECT_TIMEOUT)
        peer.channel.send("via relay")
        await asyncio.wait_for(doctor.channel_open.wait(), CONNECT_TIMEOUT)
        assert doctor.channel is not None
        doctor.channel.send("back via relay")
        async with asyncio.timeout(5):
            assert await doctor.messages.get() == "via relay"
            assert await received.get() == "back via relay"
    finally:
        await doctor.close()


async def test_relay_only_with_a_wrong_secret_gathers_nothing(turn: TurnServer) -> None:
    # coturn checks the HMAC credential: derived from another secret, no allocation, no candidate.
    config = IceConfig(turn_urls=(f"turn:127.0.0.1:{turn.port}",), turn_secret="wrong", relay_only=True)
    pc = RTCPeerConnection(build_configuration(config, now=time.time()))
    try:
        pc.createDataChannel("consult")
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await pc.setLocalDescription(await pc.createOffer())
        assert "a=candidate:" not in pc.localDescription.sdp
    finally:
        await pc.close()
