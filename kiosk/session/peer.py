"""The booth's WebRTC peer: what it sends, how it is protected, how it recovers.

:class:`BoothPeer` wraps aiortc's :class:`~aiortc.RTCPeerConnection`. The booth
always offers; the doctor's browser answers. It sends four tracks, in this
m-line order (the doctor console relies on it):

====  =====  ===========================================================
mid   kind   content
====  =====  ===========================================================
0     video  booth camera (the room, the patient)
1     video  examination camera (otoscope or dermatoscope, switchable)
2     audio  voice microphone (Opus, aiortc's speech settings)
3     audio  stethoscope, its own track, Opus ``application=audio``
4     data   channel ``consult`` (ordered, reliable)
====  =====  ===========================================================

and receives the doctor's camera and voice on the first video and audio
m-lines (``sendrecv``), bundled on one transport (``max-bundle``).

**SRTP profile pinned to SRTP_AEAD_AES_256_GCM.** aiortc 1.16 chooses SRTP
profiles in ``aiortc/rtcdtlstransport.py``: each ``RTCDtlsTransport`` has an
instance attribute ``_srtp_profiles`` (initialised from the module list
``SRTP_PROFILES`` = AES-256-GCM, AES-128-GCM, AES128-CM-SHA1-80, those the
linked libsrtp supports); ``start()`` passes it to
``RTCCertificate._create_ssl_context``, which offers it in the DTLS
``use_srtp`` extension, and ``_setup_srtp`` maps OpenSSL's selection back
through the same list. The booth replaces that attribute, on its own
transports only, with the single AES-256-GCM profile before the handshake
starts (no module-level change: other peers in the process are unaffected).
A DTLS server must pick from the client's list and a client rejects a profile
it did not offer (RFC 5764, 4.1.1), so no other profile can be negotiated;
after the handshake the booth still checks OpenSSL's selected profile and
closes the connection with :class:`SrtpProfileError` on anything else. A
doctor offering only weaker profiles gets no connection, never a downgrade.
The attribute is private to aiortc: :func:`pin_srtp_profile` fails loudly if a
new aiortc renames it.

**ICE restart.** aiortc 1.16 cannot restart ICE: ``createOffer`` has no
``iceRestart`` option, each ``RTCIceGatherer`` keeps the ufrag/password it
was created with for its whole life, ``RTCIceTransport.start`` ignores new
remote parameters once started, and aioice's ``Connection`` has no restart.
So :meth:`BoothPeer.ice_restart` recovers by a full renegotiation that keeps
the *session*: the dead connection is closed, a new one is built with the
same DTLS certificate (so the booth's fingerprint, the signed identity binding
and the short authentication string stay valid), the same long-lived tracks
(examination source included) and a new ``consult`` channel behind the same
:class:`ConsultChannel` object, and a new offer goes out. The doctor's side
must then answer from a new ``RTCPeerConnection`` too (a browser keeps its
fingerprint by reusing its ``RTCCertificate``): the booth refuses an answer
whose fingerprint differs from the first one, so a reconnection cannot be used
to slip in another key. aiortc has no public way to give a connection a
certificate; :func:`_use_certificate` sets the private attribute and checks
it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import (
    RTCCertificate,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdtlstransport import SRTP_AEAD_AES_256_GCM, RTCDtlsTransport, SRTPProtectionProfile
from aiortc.sdp import SessionDescription, candidate_from_sdp

from kiosk.session.ice import PeerError, Reason
from kiosk.session.tracks import BorrowedTrack, FullbandOpusTrack

logger = logging.getLogger(__name__)

PINNED_SRTP_PROFILE: SRTPProtectionProfile = SRTP_AEAD_AES_256_GCM
"""The only SRTP protection profile the booth offers and accepts (ARCHITECTURE.md, End-to-end)."""
PINNED_SRTP_PROFILE_NAME = PINNED_SRTP_PROFILE.openssl_profile.decode("ascii")
FINGERPRINT_ALGORITHM = "sha-256"
CHANNEL_LABEL = "consult"
CHANNEL_BUFFER_MESSAGES = 256
"""Messages :meth:`ConsultChannel.send` holds while the channel is (re)opening; more is an error."""

__all__ = [
    "CHANNEL_LABEL",
    "PINNED_SRTP_PROFILE_NAME",
    "BoothPeer",
    "ConsultChannel",
    "FingerprintError",
    "NegotiationError",
    "PeerError",
    "PeerState",
    "PeerStateChanged",
    "Reason",
    "SrtpProfileError",
    "only_sha256_fingerprints",
    "pin_srtp_profile",
    "selected_srtp_profile",
]


class NegotiationError(PeerError):
    """A remote description or candidate could not be applied."""

    reason = Reason.NEGOTIATION


class SrtpProfileError(PeerError):
    """The DTLS handshake did not settle on SRTP_AEAD_AES_256_GCM."""

    reason = Reason.SRTP_PROFILE


class FingerprintError(PeerError):
    """The doctor's DTLS fingerprint is missing, ambiguous or not the one of this session."""

    reason = Reason.FINGERPRINT


class PeerState(enum.Enum):
    """Where the booth's link to the doctor stands."""

    NEW = "new"
    """Nothing offered yet."""
    CONNECTING = "connecting"
    """Offer sent; waiting for the answer, ICE and DTLS."""
    CONNECTED = "connected"
    """Media and data flow, protected by the pinned SRTP profile."""
    DISCONNECTED = "disconnected"
    """The path to the doctor broke; call :meth:`BoothPeer.ice_restart` to recover."""
    RECONNECTING = "reconnecting"
    """A recovery offer is out; the session goes on."""
    FAILED = "failed"
    """The link was refused or could not be made (see the error)."""
    CLOSED = "closed"
    """Closed on purpose."""


@dataclass(frozen=True)
class PeerStateChanged:
    """The booth's peer moved from one state to another."""

    old: PeerState
    """State before the change."""
    new: PeerState
    """State after the change."""
    error: PeerError | None
    """Why, when the change is a failure or a refusal."""


def pin_srtp_profile(transport: RTCDtlsTransport) -> None:
    """Make ``transport`` offer and accept only SRTP_AEAD_AES_256_GCM (call before its handshake)."""
    if not isinstance(getattr(transport, "_srtp_profiles", None), list):
        raise SrtpProfileError("this aiortc version chooses SRTP profiles differently: cannot pin the profile")
    if transport.state != "new":
        raise SrtpProfileError("the SRTP profile must be pinned before the DTLS handshake")
    transport._srtp_profiles = [PINNED_SRTP_PROFILE]


def selected_srtp_profile(transport: RTCDtlsTransport) -> str | None:
    """The SRTP profile OpenSSL negotiated on ``transport``, or ``None`` before a handshake."""
    ssl = getattr(transport, "_ssl", None)
    if ssl is None or not transport.encrypted:
        return None
    selected = ssl.get_selected_srtp_profile()
    return selected.decode("ascii", "replace") if selected else ""


def _use_certificate(pc: RTCPeerConnection, certificate: RTCCertificate) -> None:
    # aiortc 1.16 generates a certificate per RTCPeerConnection in __init__ and
    # uses it only when it creates a DTLS transport, later: replacing it right
    # after construction is safe. Name-mangled private attribute, hence the check.
    attribute = "_RTCPeerConnection__certificates"
    if not isinstance(getattr(pc, attribute, None), list):
        raise PeerError("this aiortc version stores certificates differently: cannot keep the DTLS identity")
    setattr(pc, attribute, [certificate])


def certificate_fingerprint(certificate: RTCCertificate) -> str:
    """``"sha-256 AB:CD:..."``, as signalled and signed."""
    for fingerprint in certificate.getFingerprints():
        if fingerprint.algorithm == FINGERPRINT_ALGORITHM:
            return f"{fingerprint.algorithm} {fingerprint.value.upper()}"
    raise PeerError("the DTLS certificate has no sha-256 fingerprint")


def only_sha256_fingerprints(sdp: str) -> str:
    """``sdp`` without its sha-384/sha-512 fingerprint lines (aiortc writes all three).

    The identity binding signs one sha-256 fingerprint; a description that
    also carried other algorithms' values would let a man in the middle add a
    fingerprint of its own certificate that a receiver might check instead.
    Browsers send sha-256 only, so the peer loses nothing.
    """
    lines = sdp.split("\r\n")
    kept = [
        line
        for line in lines
        if not line.startswith("a=fingerprint:") or line.lower().startswith(f"a=fingerprint:{FINGERPRINT_ALGORITHM} ")
    ]
    return "\r\n".join(kept)


def sdp_fingerprint(sdp: str) -> str:
    """The single sha-256 DTLS fingerprint of a session description, as ``"sha-256 AB:..."``.

    Raises :class:`FingerprintError` when there is none, or when media
    sections disagree (one transport is bundled: one certificate).
    """
    try:
        description = SessionDescription.parse(sdp)
    except (ValueError, KeyError, IndexError):
        raise NegotiationError("the doctor's session description is malformed") from None
    found: set[str] = set()
    for media in description.media:
        if media.dtls is None:
            raise FingerprintError("the doctor's session description has no DTLS parameters")
        values = [f.value.upper() for f in media.dtls.fingerprints if f.algorithm.lower() == FINGERPRINT_ALGORITHM]
        if not values:
            raise FingerprintError("the doctor's session description has no sha-256 fingerprint")
        found.update(values)
    if len(found) != 1:
        raise FingerprintError("the doctor's session description has no single sha-256 fingerprint")
    return f"{FINGERPRINT_ALGORITHM} {found.pop()}"


class ConsultChannel:
    """The ``consult`` data channel as the session sees it, across reconnections.

    :meth:`send` while the underlying channel is not open yet (first
    connection, or a recovery under way) queues the message, up to
    :data:`CHANNEL_BUFFER_MESSAGES`, and sends it once open; messages in flight
    on a path that died may be lost (the data-channel protocol acknowledges
    what matters).
    """

    label = CHANNEL_LABEL

    def __init__(self) -> None:
        self._channel: RTCDataChannel | None = None
        self._pending: deque[str | bytes] = deque()
        self._listeners: list[Callable[[str | bytes], None]] = []
        self._opened = asyncio.Event()
        self._closed = False

    @property
    def is_open(self) -> bool:
        """Whether messages go out now (rather than being queued)."""
        return self._channel is not None and self._channel.readyState == "open"

    @property
    def buffered_amount(self) -> int:
        """Bytes handed to the channel and not sent yet (0 while no channel is attached)."""
        return self._channel.bufferedAmount if self._channel is not None else 0

    def on_message(self, listener: Callable[[str | bytes], None]) -> None:
        """Call ``listener`` with every message from the doctor."""
        self._listeners.append(listener)

    def send(self, message: str | bytes) -> None:
        """Send ``message`` now, or as soon as the channel is open."""
        if self._closed:
            raise PeerError("the consultation channel is closed", reason=Reason.CLOSED)
        if self.is_open and not self._pending:
            assert self._channel is not None
            self._channel.send(message)
            return
        if len(self._pending) >= CHANNEL_BUFFER_MESSAGES:
            raise PeerError("the consultation channel is not open and its queue is full", reason=Reason.CONNECTION)
        self._pending.append(message)

    async def wait_open(self, timeout: float) -> None:
        """Wait until the channel is open (raises ``TimeoutError`` after ``timeout`` s)."""
        await asyncio.wait_for(self._opened.wait(), timeout)

    def _attach(self, channel: RTCDataChannel) -> None:
        self._detach()
        self._channel = channel

        @channel.on("open")
        def _on_open() -> None:
            if channel is self._channel:
                self._flush()

        @channel.on("message")
        def _on_message(message: str | bytes) -> None:
            if channel is self._channel:
                for listener in list(self._listeners):
                    listener(message)

        @channel.on("close")
        def _on_close() -> None:
            if channel is self._channel:
                self._opened.clear()

    def _flush(self) -> None:
        assert self._channel is not None
        while self._pending and self._channel.readyState == "open":
            self._channel.send(self._pending.popleft())
        self._opened.set()

    def _detach(self) -> None:
        self._channel = None
        self._opened.clear()

    def _close(self) -> None:
        self._closed = True
        self._pending.clear()
        self._detach()


class BoothPeer:
    """The booth's end of a consultation: four tracks and the ``consult`` channel.

    The tracks are long-lived and owned by the caller (started and stopped
    with the devices); each connection borrows them, so a recovery
    (:meth:`ice_restart`) keeps them running. ``configuration`` comes from
    :func:`kiosk.session.ice.build_configuration` (``max-bundle``; never
    ``None``, which would make aiortc contact Google's STUN server).

    Use: ``offer = await create_offer()`` -> signal it -> ``await
    apply_answer(sdp)`` (and :meth:`add_ice_candidate` for trickled ones) ->
    :attr:`state` becomes ``CONNECTED``. Listeners added with
    :meth:`add_state_listener` see every :class:`PeerStateChanged`.
    """

    def __init__(
        self,
        *,
        configuration: RTCConfiguration,
        booth_camera: MediaStreamTrack,
        examination: MediaStreamTrack,
        microphone: MediaStreamTrack,
        stethoscope: MediaStreamTrack,
        session_id: str = "",
    ) -> None:
        if configuration.iceServers is None:
            raise PeerError("give the ICE servers explicitly (an empty list for none)", reason=Reason.CONFIG)
        for track, kind in (
            (booth_camera, "video"),
            (examination, "video"),
            (microphone, "audio"),
            (stethoscope, "audio"),
        ):
            if track.kind != kind:
                raise ValueError(f"expected a {kind} track, got {track.kind}")
        self._configuration = configuration
        self._sources = (booth_camera, examination, microphone, stethoscope)
        self._certificate = RTCCertificate.generateCertificate()
        self.local_fingerprint = certificate_fingerprint(self._certificate)
        """This booth's DTLS fingerprint, ``"sha-256 AB:..."``: what the identity binding signs."""
        self.remote_fingerprint: str | None = None
        """The doctor's DTLS fingerprint from its first answer; later answers must repeat it."""
        self.channel = ConsultChannel()
        """The ``consult`` data channel, the same object across recoveries."""
        self.log = logging.LoggerAdapter(logger, {"session": session_id})
        self._session_id = session_id
        self._pc: RTCPeerConnection | None = None
        self._state = PeerState.NEW
        self._error: PeerError | None = None
        self._listeners: list[Callable[[PeerStateChanged], None]] = []
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.remote_tracks: list[MediaStreamTrack] = []
        """Tracks the doctor sends (camera, voice), from the current connection."""

    # -- observation -----------------------------------------------------
    @property
    def state(self) -> PeerState:
        """Current state."""
        return self._state

    @property
    def error(self) -> PeerError | None:
        """Why the peer last failed or disconnected."""
        return self._error

    @property
    def srtp_profile(self) -> str | None:
        """The negotiated SRTP profile (``None`` until the DTLS handshake is done)."""
        transports = self._dtls_transports()
        if not transports:
            return None
        profiles = {selected_srtp_profile(t) for t in transports}
        return profiles.pop() if len(profiles) == 1 else None

    @property
    def connection(self) -> RTCPeerConnection | None:
        """The current aiortc connection (tests and stats; the session should not need it)."""
        return self._pc

    def add_state_listener(self, listener: Callable[[PeerStateChanged], None]) -> None:
        """Call ``listener`` on every state change."""
        self._listeners.append(listener)

    async def wait_for_state(self, *states: PeerState, timeout: float) -> PeerState:
        """Wait until the state is one of ``states``; ``TimeoutError`` after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while self._state not in states:
                self._changed.clear()
                await self._changed.wait()
        return self._state

    # -- negotiation -----------------------------------------------------
    async def create_offer(self) -> str:
        """Build the connection and return the offer's SDP (candidates included)."""
        if self._state is not PeerState.NEW:
            raise PeerError("the offer was already made; use ice_restart() to renegotiate", reason=Reason.NEGOTIATION)
        sdp = await self._offer()
        self._set_state(PeerState.CONNECTING)
        return sdp

    async def apply_answer(self, sdp: str) -> None:
        """Apply the doctor's answer.

        Raises :class:`FingerprintError` (and closes) when the answer's
        fingerprint is not the one this session started with, and
        :class:`NegotiationError` when the SDP cannot be applied.
        """
        pc = self._require_pc()
        fingerprint = sdp_fingerprint(sdp)
        if self.remote_fingerprint is not None and fingerprint != self.remote_fingerprint:
            error = FingerprintError("the doctor's DTLS certificate changed during the session: link refused")
            await self._fail(error)
            raise error
        self.remote_fingerprint = fingerprint
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except (ValueError, InvalidStateError, InvalidAccessError, OperationError) as exc:
            raise NegotiationError(f"the doctor's answer cannot be applied ({exc.__class__.__name__})") from None
        # Bundling may have replaced transports: every one left must be pinned.
        for transport in self._dtls_transports():
            if transport.state == "new" and transport._srtp_profiles != [PINNED_SRTP_PROFILE]:
                pin_srtp_profile(transport)

    async def add_ice_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """Add a candidate trickled by the doctor (``candidate:...`` line, as in the ``ice`` payload)."""
        pc = self._require_pc()
        text = candidate.removeprefix("a=").removeprefix("candidate:")
        if not text:
            return  # end-of-candidates
        try:
            parsed = candidate_from_sdp(text)
        except (ValueError, IndexError):
            raise NegotiationError("the doctor sent a malformed ICE candidate") from None
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        try:
            await pc.addIceCandidate(parsed)
        except (ValueError, InvalidStateError) as exc:
            raise NegotiationError(f"the doctor's ICE candidate cannot be used ({exc.__class__.__name__})") from None

    async def ice_restart(self) -> str:
        """Recover the link: a new connection, same identity and tracks; returns the new offer's SDP.

        aiortc 1.16 has no ICE restart (see the module docstring), so this is
        a full renegotiation; the session, :attr:`channel`, the fingerprints
        and the examination source stay. Apply the doctor's answer with
        :meth:`apply_answer`.
        """
        if self._state in (PeerState.NEW, PeerState.CLOSED, PeerState.FAILED):
            raise PeerError(f"no call to recover (state {self._state.value})", reason=Reason.NEGOTIATION)
        self._set_state(PeerState.RECONNECTING)
        await self._close_pc()
        return await self._offer()

    async def close(self) -> None:
        """End the link (the borrowed tracks' owners keep their devices running)."""
        self.channel._close()
        await self._close_pc()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._state is not PeerState.FAILED:
            self._set_state(PeerState.CLOSED)

    # -- internals -------------------------------------------------------
    async def _offer(self) -> str:
        pc = RTCPeerConnection(self._configuration)
        _use_certificate(pc, self._certificate)
        self._pc = pc
        self.remote_tracks = []
        booth_camera, examination, microphone, stethoscope = self._sources
        pc.addTransceiver(BorrowedTrack(booth_camera), direction="sendrecv")
        pc.addTransceiver(BorrowedTrack(examination), direction="sendonly")
        pc.addTransceiver(BorrowedTrack(microphone), direction="sendrecv")
        steth = pc.addTransceiver(FullbandOpusTrack(BorrowedTrack(stethoscope)), direction="sendonly")
        # The stethoscope's packets are Opus already (tracks.FullbandOpusTrack):
        # only Opus may be negotiated on its m-line.
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
        steth.setCodecPreferences(opus)
        channel = pc.createDataChannel(CHANNEL_LABEL, ordered=True)
        self.channel._attach(channel)

        @pc.on("datachannel")
        def _on_datachannel(remote: RTCDataChannel) -> None:
            # The booth opens the only channel; the doctor gets no other door in.
            self.log.warning("closing a data channel the doctor opened")
            remote.close()

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            self.remote_tracks.append(track)

        @pc.on("connectionstatechange")
        def _on_connection_state() -> None:
            if pc is self._pc:
                self._spawn(self._on_connection_state(pc))

        for transport in self._dtls_transports():
            pin_srtp_profile(transport)
        await pc.setLocalDescription(await pc.createOffer())
        return only_sha256_fingerprints(pc.localDescription.sdp)

    async def _on_connection_state(self, pc: RTCPeerConnection) -> None:
        state = pc.connectionState
        self.log.debug("connection state %s", state)
        if state == "connected":
            profile = self.srtp_profile
            if profile != PINNED_SRTP_PROFILE_NAME:
                await self._fail(SrtpProfileError("the link did not negotiate the required encryption: refused"))
                return
            self._set_state(PeerState.CONNECTED)
        elif state in ("failed", "closed"):
            # aiortc 1.16 reports a dead path (ICE consent expired) as "closed", not "failed": its
            # DTLS transport closes with the ICE transport. A close we asked for never gets here
            # (_close_pc drops the connection first), so either one is the link breaking.
            error = self._failure_cause()
            if self._state in (PeerState.CONNECTED, PeerState.RECONNECTING) and error.reason is Reason.CONNECTION:
                # The path broke mid-call: the session decides to recover.
                self._error = error
                self._set_state(PeerState.DISCONNECTED, error)
            else:
                await self._fail(error)

    def _failure_cause(self) -> PeerError:
        for transport in self._dtls_transports():
            profile = selected_srtp_profile(transport)
            if profile is not None and profile != PINNED_SRTP_PROFILE_NAME:
                # The handshake completed without the pinned profile
                # (typically: the doctor offered none we accept).
                return SrtpProfileError("the doctor does not support the required encryption: link refused")
        return PeerError("the connection to the doctor failed", reason=Reason.CONNECTION)

    async def _fail(self, error: PeerError) -> None:
        self._error = error
        self.log.warning("link refused or failed (%s)", error.reason.value)
        await self._close_pc()
        self._set_state(PeerState.FAILED, error)

    async def _close_pc(self) -> None:
        pc, self._pc = self._pc, None
        if pc is not None:
            self.channel._detach()
            await pc.close()

    def _require_pc(self) -> RTCPeerConnection:
        if self._pc is None:
            raise PeerError("there is no connection to negotiate", reason=Reason.CLOSED)
        return self._pc

    def _dtls_transports(self) -> list[RTCDtlsTransport]:
        pc = self._pc
        if pc is None:
            return []
        transports: list[RTCDtlsTransport] = []
        for transceiver in pc.getTransceivers():
            if transceiver.sender.transport not in transports:
                transports.append(transceiver.sender.transport)
        if pc.sctp is not None and pc.sctp.transport not in transports:
            transports.append(pc.sctp.transport)
        return transports

    def _set_state(self, new: PeerState, error: PeerError | None = None) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self.log.info("peer: %s -> %s%s", old.value, new.value, f" ({error.reason.value})" if error else "")
        self._changed.set()
        event = PeerStateChanged(old, new, error)
        for listener in list(self._listeners):
            listener(event)

    def _spawn(self, coroutine: object) -> None:
        assert asyncio.iscoroutine(coroutine)
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> BoothPeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(PeerError):
            await self.close()
