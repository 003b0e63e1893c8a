"""The booth's peer against a plain aiortc "doctor" on loopback, fed by the device emulators.

Real components: the synthetic camera videos and heart-sound WAVs are read by
the very drivers the booth uses (UvcCamera, Stethoscope), encoded, protected
with DTLS-SRTP and carried over real UDP sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80, RTCDtlsTransport

from devices.camera import UvcCamera
from devices.simulators.camera import read_frame_stamp, write_synthetic_video
from devices.simulators.stethoscope import write_heart_sounds
from devices.stethoscope import Stethoscope
from kiosk.session.ice import IceConfig, build_configuration
from kiosk.session.peer import (
    PINNED_SRTP_PROFILE_NAME,
    BoothPeer,
    FingerprintError,
    PeerState,
    Reason,
    selected_srtp_profile,
)
from kiosk.session.tracks import CameraTrack, StethoscopeTrack, SwitchableVideoTrack, stop_tracks

pytestmark = pytest.mark.timeout(60)

OTOSCOPE_SIZE = (320, 240)
DERMATOSCOPE_SIZE = (256, 192)
ROOM_SIZE = (320, 180)
CONNECT_TIMEOUT = 15.0


@dataclass
class Media:
    room: UvcCamera
    otoscope: UvcCamera
    dermatoscope: UvcCamera
    stethoscope: Stethoscope
    voice: Stethoscope


@pytest.fixture(scope="module")
def media_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("media")
    return {
        "room": write_synthetic_video(base / "room.avi", kind="room", size=ROOM_SIZE, fps=15, seconds=2),
        "otoscope": write_synthetic_video(base / "oto.avi", kind="otoscope", size=OTOSCOPE_SIZE, fps=15, seconds=2),
        "dermatoscope": write_synthetic_video(
            base / "derm.avi", kind="dermatoscope", size=DERMATOSCOPE_SIZE, fps=15, seconds=2
        ),
        "stethoscope": write_heart_sounds(base / "heart.wav", seconds=3, sample_rate=8000),
        # The voice microphone is any audio source; a second heart-sound file stands in.
        "voice": write_heart_sounds(base / "voice.wav", seconds=3, sample_rate=16000, seed=1),
    }


@pytest.fixture
async def media(media_files: dict[str, str]) -> AsyncIterator[Media]:
    devices = Media(
        room=UvcCamera(media_files["room"], name="room", stream_size=ROOM_SIZE),
        otoscope=UvcCamera(media_files["otoscope"], name="otoscope", stream_size=OTOSCOPE_SIZE),
        dermatoscope=UvcCamera(media_files["dermatoscope"], name="dermatoscope", stream_size=DERMATOSCOPE_SIZE),
        stethoscope=Stethoscope(media_files["stethoscope"]),
        voice=Stethoscope(media_files["voice"], name="microphone"),
    )
    drivers: list[UvcCamera | Stethoscope] = [
        devices.room,
        devices.otoscope,
        devices.dermatoscope,
        devices.stethoscope,
        devices.voice,
    ]
    try:
        for driver in drivers:
            await driver.start()
        yield devices
    finally:
        for driver in drivers:
            await driver.stop()


@dataclass
class Booth:
    peer: BoothPeer
    examination: SwitchableVideoTrack
    tracks: list[MediaStreamTrack]


@pytest.fixture
async def booth(media: Media) -> AsyncIterator[Booth]:
    examination = SwitchableVideoTrack({"otoscope": media.otoscope, "dermatoscope": media.dermatoscope}, "otoscope")
    tracks: list[MediaStreamTrack] = [
        CameraTrack(media.room),
        examination,
        StethoscopeTrack(media.voice),
        StethoscopeTrack(media.stethoscope),
    ]
    peer = BoothPeer(
        configuration=build_configuration(IceConfig(), now=0),
        booth_camera=tracks[0],
        examination=examination,
        microphone=tracks[2],
        stethoscope=tracks[3],
        session_id="test",
    )
    try:
        yield Booth(peer, examination, tracks)
    finally:
        await peer.close()
        await stop_tracks(*tracks)


class Doctor:
    """A plain aiortc peer answering like the doctor's browser would."""

    def __init__(self, *, weak_srtp_only: bool = False) -> None:
        self.weak_srtp_only = weak_srtp_only
        # max-bundle, as a browser answering a BUNDLE offer: aiortc's default
        # "balanced" policy leaves a second audio m-line on a stray transport.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.channel: RTCDataChannel | None = None
        self.channel_open = asyncio.Event()

        @self.pc.on("datachannel")
        def _on_datachannel(channel: RTCDataChannel) -> None:
            self.channel = channel
            self.channel_open.set()
            channel.on("message", self.messages.put_nowait)

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        if self.weak_srtp_only:
            # A doctor whose stack only has the old AES-CM/HMAC-SHA1-80 profile.
            for transport in self.transports():
                transport._srtp_profiles = [SRTP_AES128_CM_SHA1_80]
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def connected(self, timeout: float) -> None:
        changed = asyncio.Event()
        self.pc.on("connectionstatechange", changed.set)
        try:
            async with asyncio.timeout(timeout):
                while self.pc.connectionState != "connected":
                    await changed.wait()
                    changed.clear()
        finally:
            self.pc.remove_listener("connectionstatechange", changed.set)

    def transports(self) -> list[RTCDtlsTransport]:
        found = {t.receiver.transport for t in self.pc.getTransceivers()}
        if self.pc.sctp is not None:
            found.add(self.pc.sctp.transport)
        # Transports merged away by BUNDLE are stopped; only live ones carry media.
        return [t for t in found if t.state != "closed"]

    def track(self, mid: str) -> MediaStreamTrack:
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid == mid:
                return transceiver.receiver.track
        raise AssertionError(f"no m-line {mid}")

    async def close(self) -> None:
        await self.pc.close()


@contextlib.asynccontextmanager
async def doctor_peer(**kwargs: bool) -> AsyncIterator[Doctor]:
    doctor = Doctor(**kwargs)
    try:
        yield doctor
    finally:
        await doctor.close()


async def connect(booth: Booth, doctor: Doctor) -> None:
    offer = await booth.peer.create_offer()
    await booth.peer.apply_answer(await doctor.answer(offer))
    await booth.peer.wait_for_state(PeerState.CONNECTED, PeerState.FAILED, timeout=CONNECT_TIMEOUT)
    if booth.peer.state is PeerState.CONNECTED:
        await doctor.connected(CONNECT_TIMEOUT)


def current_state(peer: BoothPeer) -> PeerState:
    # A function call, so the type checker does not keep an earlier narrowing of peer.state.
    return peer.state


async def video_frames(track: MediaStreamTrack, count: int) -> list[av.VideoFrame]:
    frames: list[av.VideoFrame] = []
    async with asyncio.timeout(CONNECT_TIMEOUT):
        while len(frames) < count:
            frame = await track.recv()
            assert isinstance(frame, av.VideoFrame)
            frames.append(frame)
    return frames


async def frame_of_size(track: MediaStreamTrack, size: tuple[int, int], limit: int = 60) -> av.VideoFrame:
    async with asyncio.timeout(CONNECT_TIMEOUT):
        for _ in range(limit):
            frame = await track.recv()
            assert isinstance(frame, av.VideoFrame)
            if (frame.width, frame.height) == size:
                return frame
    raise AssertionError(f"no {size} frame")


async def test_call_pins_srtp_and_carries_media_and_data(booth: Booth) -> None:
    async with doctor_peer() as doctor:
        await connect(booth, doctor)
        peer = booth.peer
        assert peer.state is PeerState.CONNECTED, peer.error
        # The negotiated profile, read from aiortc's DTLS transports on both ends.
        assert peer.srtp_profile == PINNED_SRTP_PROFILE_NAME == "SRTP_AEAD_AES_256_GCM"
        assert {selected_srtp_profile(t) for t in doctor.transports()} == {"SRTP_AEAD_AES_256_GCM"}
        # Fingerprints: ours is the certificate's, theirs the answer's and the certificate the doctor used.
        assert peer.local_fingerprint.startswith("sha-256 ")
        assert len(peer.local_fingerprint.split(" ")[1].split(":")) == 32
        doctor_fp = doctor.pc.getTransceivers()[0].receiver.transport.getLocalParameters().fingerprints
        assert peer.remote_fingerprint == f"sha-256 {next(f.value for f in doctor_fp if f.algorithm == 'sha-256')}"
        assert peer.local_fingerprint.split(" ")[1] in doctor.pc.remoteDescription.sdp

        # The examination video: the otoscope at its size, its frame stamps readable.
        frames = await video_frames(doctor.track("1"), 8)
        assert {(f.width, f.height) for f in frames} == {OTOSCOPE_SIZE}
        stamps = [read_frame_stamp(f.to_ndarray(format="bgr24")) for f in frames]
        assert any(stamp is not None for stamp in stamps), stamps
        room = await video_frames(doctor.track("0"), 2)
        assert (room[-1].width, room[-1].height) == ROOM_SIZE

        # The stethoscope is its own audio track, distinct from the voice, and not silent.
        steth_track, voice_track = doctor.track("3"), doctor.track("2")
        assert steth_track.kind == voice_track.kind == "audio"
        assert steth_track is not voice_track
        async with asyncio.timeout(CONNECT_TIMEOUT):
            chunks = [await steth_track.recv() for _ in range(60)]
            voice = await voice_track.recv()
        assert isinstance(voice, av.AudioFrame)
        samples = np.concatenate([c.to_ndarray().ravel() for c in chunks if isinstance(c, av.AudioFrame)])
        assert np.abs(samples).max() > 1000  # heart sounds, not silence

        # Switching the examination source needs no renegotiation: same track, new size.
        booth.examination.select("dermatoscope")
        await frame_of_size(doctor.track("1"), DERMATOSCOPE_SIZE)
        assert booth.examination.selected == "dermatoscope"

        # The consult data channel, both ways.
        await booth.peer.channel.wait_open(CONNECT_TIMEOUT)
        assert doctor.channel is not None
        assert doctor.channel.label == "consult"
        assert doctor.channel.ordered
        received: asyncio.Queue[str | bytes] = asyncio.Queue()
        peer.channel.on_message(received.put_nowait)
        peer.channel.send('{"v":1,"type":"hello"}')
        doctor.channel.send("from doctor")
        async with asyncio.timeout(5):
            assert await doctor.messages.get() == '{"v":1,"type":"hello"}'
            assert await received.get() == "from doctor"


async def test_doctor_offering_only_a_weaker_profile_is_refused(booth: Booth) -> None:
    states: list[PeerState] = []
    booth.peer.add_state_listener(lambda event: states.append(event.new))
    async with doctor_peer(weak_srtp_only=True) as doctor:
        await connect(booth, doctor)
        assert booth.peer.state is PeerState.FAILED
        assert PeerState.CONNECTED not in states
        assert booth.peer.error is not None
        # aiortc's DTLS ends "no SRTP profile negotiated"; the booth names it.
        assert booth.peer.error.reason is Reason.SRTP_PROFILE
        # Never a downgrade: no transport of either side holds the weak profile.
        assert {selected_srtp_profile(t) for t in doctor.transports()} <= {None, ""}
        assert booth.peer.connection is None  # closed
        assert not booth.peer.channel.is_open


async def test_recovery_keeps_session_channel_and_identity(booth: Booth) -> None:
    peer = booth.peer
    received: asyncio.Queue[str | bytes] = asyncio.Queue()
    peer.channel.on_message(received.put_nowait)
    async with doctor_peer() as first:
        await connect(booth, first)
        assert peer.state is PeerState.CONNECTED
        await peer.channel.wait_open(CONNECT_TIMEOUT)
        booth.examination.select("dermatoscope")
        fingerprints = (peer.local_fingerprint, peer.remote_fingerprint)
        # The doctor keeps its DTLS certificate across the recovery, as a browser does with RTCCertificate.
        doctor_certificates = getattr(first.pc, "_RTCPeerConnection__certificates")  # noqa: B009
        # The network drops: aiortc cannot restart ICE, the booth renegotiates.
        offer = await peer.ice_restart()
        assert current_state(peer) is PeerState.RECONNECTING
        # Sent during the outage: queued by the channel, delivered after recovery.
        peer.channel.send("during outage")
    async with doctor_peer() as second:
        setattr(second.pc, "_RTCPeerConnection__certificates", doctor_certificates)  # noqa: B010
        await peer.apply_answer(await second.answer(offer))
        await peer.wait_for_state(PeerState.CONNECTED, PeerState.FAILED, timeout=CONNECT_TIMEOUT)
        assert peer.state is PeerState.CONNECTED, peer.error
        await second.connected(CONNECT_TIMEOUT)
        assert (peer.local_fingerprint, peer.remote_fingerprint) == fingerprints
        assert peer.srtp_profile == "SRTP_AEAD_AES_256_GCM"
        await asyncio.wait_for(second.channel_open.wait(), CONNECT_TIMEOUT)
        assert second.channel is not None
        async with asyncio.timeout(5):
            assert await second.messages.get() == "during outage"
        second.channel.send("after recovery")
        async with asyncio.timeout(5):
            assert await received.get() == "after recovery"
        # The examination source chosen before the drop is still the one sent.
        await frame_of_size(second.track("1"), DERMATOSCOPE_SIZE)


async def test_recovery_refuses_a_new_doctor_certificate(booth: Booth) -> None:
    peer = booth.peer
    async with doctor_peer() as first:
        await connect(booth, first)
        assert peer.state is PeerState.CONNECTED
        offer = await peer.ice_restart()
    async with doctor_peer() as impostor:  # a fresh certificate: another key than the one bound
        with pytest.raises(FingerprintError):
            await peer.apply_answer(await impostor.answer(offer))
        assert current_state(peer) is PeerState.FAILED
        assert peer.error is not None
        assert peer.error.reason is Reason.FINGERPRINT


def test_media_files_are_readable(media_files: dict[str, str]) -> None:
    assert all(Path(path).stat().st_size > 0 for path in media_files.values())
