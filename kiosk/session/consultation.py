"""The booth's consultation service: waiting room, verified call, remote peripherals.

:class:`BoothSession` is what the patient app calls (announce, withdraw, STOP,
chat, files, end) and listens to (:data:`SessionEvent`). It owns the
signalling link to the hub (:mod:`kiosk.session.hub_link`) and, during a
call, one :class:`~kiosk.session.peer.BoothPeer` and one
:class:`~kiosk.session.datachannel.DataChannelProtocol`.

Trust, in order (ARCHITECTURE.md, End-to-end):

1. The hub says a doctor accepted (``accepted``); nothing is trusted yet.
2. The booth signs its own DTLS fingerprint with its fleet key and sends it
   with its offer.
3. The doctor's ``identity`` must verify (:func:`~kiosk.session.binding.verify_binding`:
   signature, doctor role, chain to the fleet CA, same account as the one the
   hub announced), and the answer's fingerprint must be the one it signed.
   Anything else ends the call before media flows (:class:`CallRefused`):
   a hub that swaps fingerprints is caught here.
4. Both screens show the short authentication string for patient and doctor
   to compare aloud: a hub that also holds a doctor-role key is caught there.

Commands come only over the data channel of the verified connection, so only
from the doctor who accepted this session. The patient's STOP always wins: it
aborts a BP cycle at once, stops every stream, tells the doctor, and refuses
commands that crossed it on the wire for :data:`STOP_GUARD_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiortc.mediastreams import MediaStreamTrack

from hub.messages import Message
from kiosk.session import datachannel as dc
from kiosk.session.binding import (
    BindingError,
    FleetTrust,
    IdentityKey,
    Peer,
    Sas,
    fingerprint_of_sdp,
    short_authentication_string,
    sign_fingerprint,
    verify_binding,
)
from kiosk.session.hub_link import HubEndpoint, HubLink
from kiosk.session.ice import IceConfig, PeerError, build_configuration
from kiosk.session.peer import BoothPeer, PeerState, PeerStateChanged
from kiosk.session.peripherals import PeripheralError, Peripherals

logger = logging.getLogger(__name__)

STOP_GUARD_SECONDS: Final = 3.0
"""After STOP, commands are refused this long: they were sent before the doctor saw the stop."""
MAX_BUFFERED_BYTES: Final = 1024 * 1024
"""File chunks wait while the data channel holds this much unsent."""
RECOVERY_ATTEMPTS: Final = 3
OXIMETER_EVENT_SECONDS: Final = 0.5
"""The patient's screen gets the oximeter values at most this often (the doctor gets every slice)."""


class SessionState(enum.Enum):
    """Where the booth is in a consultation."""

    IDLE = "idle"
    WAITING = "waiting"
    """A patient is announced in the waiting room."""
    CONNECTING = "connecting"
    """A doctor accepted; identities are being checked and the link built."""
    IN_CALL = "in_call"
    RECONNECTING = "reconnecting"
    """The network dropped; the link is being rebuilt in the same session."""
    ENDED = "ended"
    REFUSED = "refused"
    """The doctor's identity did not verify: no media flowed."""


@dataclass(frozen=True)
class WaitingPatient:
    """All the hub learns about a patient: what a doctor needs to choose."""

    first_name: str
    age: int
    reason: str


@dataclass(frozen=True)
class BoothCredentials:
    """The booth's fleet identity: its certificate (PEM) and key, and the fleet CA."""

    booth_id: str
    certificate_pem: str
    key: IdentityKey
    trust: FleetTrust


@dataclass(frozen=True)
class BoothMedia:
    """The long-lived tracks every call borrows (owned and stopped by the caller)."""

    booth_camera: MediaStreamTrack
    examination: MediaStreamTrack
    microphone: MediaStreamTrack
    stethoscope: MediaStreamTrack


# -- events for the patient app ------------------------------------------------------------
@dataclass(frozen=True)
class StateEvent:
    state: SessionState
    reason: str = ""


@dataclass(frozen=True)
class VerifiedEvent:
    """The doctor's identity verified: the SAS to show, and who the fleet says the doctor is."""

    sas: Sas
    doctor_name: str
    doctor_account: str
    srtp_profile: str | None = None


@dataclass(frozen=True)
class ChatEvent:
    text: str
    from_doctor: bool


@dataclass(frozen=True)
class FileEvent:
    name: str
    mime: str
    data: bytes = field(repr=False)
    from_doctor: bool = True
    sha256: str = ""
    """For a file the booth sent: its SHA-256, for the audit trail."""
    size: int = 0
    """For a file the booth sent: its size in bytes."""


@dataclass(frozen=True)
class CommandEvent:
    """A peripheral command's life: ``started``, ``refused``, ``done``, ``failed``, ``stopped``."""

    command: str
    phase: str
    detail: str = ""
    device_seconds: float | None = None
    """For ``done``: how long the peripheral itself took (benches subtract it from round trips)."""


@dataclass(frozen=True)
class WaitingEvent:
    """The hub's news on this booth's place in the waiting room."""

    position: int
    """1 means next."""
    minutes: int | None
    """The hub's estimate of the wait, or None when it cannot make an honest one."""


@dataclass(frozen=True)
class MeasurementEvent:
    """A value a peripheral measured on the patient during the call (shown to them, sent to the doctor).

    ``name`` and its values: ``oximeter`` (``spo2``, ``pulse``), ``cuff`` (``pressure``, while a
    blood-pressure cycle runs), ``blood_pressure`` (``systolic``, ``diastolic``, ``pulse``),
    ``temperature`` (``celsius``).
    """

    name: str
    values: Mapping[str, float]
    """Exactly what went to the doctor; a value the device marked unavailable is left out."""


@dataclass(frozen=True)
class LinkEvent:
    """The signalling link to the hub came up or went down."""

    connected: bool


SessionEvent = (
    StateEvent | VerifiedEvent | ChatEvent | FileEvent | CommandEvent | WaitingEvent | MeasurementEvent | LinkEvent
)
Confirm = Callable[[str], Awaitable[bool]]
"""Asks the patient before a command that acts on them (``bp.start``); False refuses it."""


async def _always_confirm(command: str) -> bool:
    return True


class CallRefused(Exception):
    """The call cannot go on: the doctor's identity or the link's security did not check out."""


@dataclass(eq=False)
class _Call:
    session: str
    doctor_display_name: str
    doctor_chain: str
    peer: BoothPeer
    protocol: dc.DataChannelProtocol = field(default_factory=lambda: dc.DataChannelProtocol("booth"))
    doctor: Peer | None = None
    sas: Sas | None = None
    """Set once the first verified answer is applied: the call is answered exactly when it is known."""
    stopped_at: float = -1e9
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    """Running peripheral work by name (``oximeter``, ``bp``...)."""
    recoveries: int = 0
    oximeter_shown_at: float = -1e9


class BoothSession:
    """The consultation service of one booth."""

    def __init__(
        self,
        *,
        hub: HubEndpoint,
        credentials: BoothCredentials,
        media: BoothMedia,
        peripherals: Peripherals,
        ice: IceConfig | None = None,
        confirm: Confirm = _always_confirm,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.media = media
        self.peripherals = peripherals
        self.ice = ice or IceConfig()
        self.confirm = confirm
        self.clock = clock
        self.link = HubLink(
            hub,
            on_message=self._on_hub_message,
            on_connected=self._on_hub_connected,
            on_disconnected=self._on_hub_disconnected,
        )
        self.state = SessionState.IDLE
        self.patient: WaitingPatient | None = None
        self._call: _Call | None = None
        self._listeners: list[Callable[[SessionEvent], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        """Hub messages are handled one at a time, in order (an answer never overtakes its identity)."""

    # -- the patient app's side ----------------------------------------------------------------
    def add_listener(self, listener: Callable[[SessionEvent], None]) -> None:
        """Call ``listener`` with every :data:`SessionEvent`."""
        self._listeners.append(listener)

    @property
    def call(self) -> _Call | None:
        """The current call (tests and benches look at its peer)."""
        return self._call

    async def start(self) -> None:
        """Connect to the hub (and keep reconnecting)."""
        self.link.start()

    async def close(self) -> None:
        """End any call and disconnect."""
        await self._end_call("booth-closed", notify=True)
        await self.link.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def announce(self, patient: WaitingPatient) -> None:
        """Put the patient in the waiting room (again after a reconnection, by itself)."""
        if self._call is not None:
            raise RuntimeError("a consultation is running")
        self.patient = patient
        self._set_state(SessionState.WAITING)
        await self._send_announce()

    async def withdraw(self) -> None:
        """Take the patient out of the waiting room."""
        self.patient = None
        await self.link.send("withdraw")
        if self._call is None:
            self._set_state(SessionState.IDLE)

    async def stop(self) -> None:
        """The patient's STOP: every measurement and stream ends now, and the doctor is told."""
        call = self._call
        if call is None:
            return
        call.stopped_at = self.clock()
        # The cuff first: nothing may wait before deflating.
        stop_cuff = asyncio.create_task(self._abort_cuff())
        for name in list(call.tasks):
            if name != "statuses":  # not a measurement: the doctor keeps seeing which peripheral is there
                self._cancel_work(call, name)
        with contextlib.suppress(PeripheralError):
            if self.peripherals.stethoscope is not None:
                self.peripherals.set_stethoscope(False)
        self._send(call, call.protocol.send_stop())
        await stop_cuff
        self._emit(CommandEvent("stop", "stopped", "stopped by the patient"))

    async def send_chat(self, text: str) -> None:
        """A chat line to the doctor."""
        call = self._require_call()
        self._send(call, call.protocol.send_chat(text))

    async def send_file(self, name: str, mime: str, data: bytes) -> None:
        """A file to the doctor (at most 20 MiB), flow-controlled."""
        call = self._require_call()
        sender = dc.FileSender(data, name=name, mime=mime, transfer=uuid.uuid4().hex)
        await self._send_file(call, sender)

    async def end(self) -> None:
        """The booth ends the consultation (the patient left, or the app is wiping)."""
        await self._end_call("booth-ended", notify=True)

    # -- hub messages -------------------------------------------------------------------------------
    async def _on_hub_connected(self) -> None:
        self._emit(LinkEvent(True))
        if self.patient is not None and self._call is None:
            await self._send_announce()

    async def _on_hub_disconnected(self) -> None:
        self._emit(LinkEvent(False))

    async def _send_announce(self) -> None:
        patient = self.patient
        if patient is None:
            return
        await self.link.send(
            "announce", patient={"first_name": patient.first_name, "age": patient.age, "reason": patient.reason}
        )

    async def _on_hub_message(self, message: Message) -> None:
        async with self._lock:
            try:
                await self._handle(message)
            except CallRefused as exc:
                await self._refuse(str(exc))
            except PeerError as exc:
                logger.warning("consultation: link error (%s)", exc.reason.value)
                await self._end_call(f"link-{exc.reason.value}", notify=True)

    async def _handle(self, message: Message) -> None:
        if message.type == "accepted":
            doctor = message["doctor"]
            await self._accepted(message["session"], doctor["display_name"], doctor["certificate"])
            return
        if message.type == "error":
            logger.warning("hub refused a message: %s", message["code"])
            return
        if message.type == "position":
            # One that crossed a withdraw or an accept on the wire is stale.
            if self.patient is not None and self._call is None:
                estimate = message["estimate_seconds"]
                minutes = math.ceil(estimate / 60) if estimate is not None else None
                self._emit(WaitingEvent(message["position"], minutes))
            return
        call = self._call
        if call is None or message["session"] != call.session:
            return  # a late message of a call that already ended
        if message.type == "ended":
            await self._end_call(message["reason"], notify=False)
        else:
            await self._signal(call, message["payload"])

    async def _accepted(self, session: str, display_name: str, chain: str) -> None:
        if self._call is not None:
            logger.warning("consultation: accepted while in a call; ignored")
            return
        configuration = build_configuration(self.ice, now=time.time())
        peer = BoothPeer(
            configuration=configuration,
            booth_camera=self.media.booth_camera,
            examination=self.media.examination,
            microphone=self.media.microphone,
            stethoscope=self.media.stethoscope,
            session_id=session[:8],
        )
        call = _Call(session, display_name, chain, peer)
        self._call = call
        self.patient = None
        self._set_state(SessionState.CONNECTING)
        peer.add_state_listener(lambda change: self._spawn(self._on_peer_state(call, change)))
        peer.channel.on_message(lambda raw: self._on_channel_message(call, raw))
        sdp = await peer.create_offer()
        signature = sign_fingerprint(peer.local_fingerprint, self.credentials.key, role="booth", session=session)
        identity = {
            "kind": "identity",
            "fingerprint": peer.local_fingerprint,
            "signature": signature,
            "certificate": self.credentials.certificate_pem,
        }
        await self.link.send("signal", session=session, payload=identity)
        await self.link.send("signal", session=session, payload={"kind": "offer", "sdp": sdp})

    async def _signal(self, call: _Call, payload: dict[str, object]) -> None:
        kind = payload["kind"]
        if kind == "identity":
            fingerprint, signature = str(payload["fingerprint"]), str(payload["signature"])
            self._verify_doctor(call, fingerprint, signature, str(payload["certificate"]))
        elif kind == "answer":
            await self._answer(call, str(payload["sdp"]))
        elif kind == "ice":
            if call.sas is None:
                raise CallRefused("an ICE candidate came before a verified answer")
            index = payload["sdpMLineIndex"]
            mid = payload["sdpMid"]
            await call.peer.add_ice_candidate(
                str(payload["candidate"]),
                mid if isinstance(mid, str) else None,
                index if isinstance(index, int) else None,
            )
        elif kind == "bye":
            await self._end_call("doctor-ended", notify=False)
        else:  # an offer: the booth always offers, a doctor never does
            raise CallRefused("the doctor's side sent an offer")

    def _verify_doctor(self, call: _Call, fingerprint: str, signature: str, certificate: str) -> None:
        if call.doctor is not None:
            raise CallRefused("the doctor's identity was sent twice")
        try:
            doctor = verify_binding(
                fingerprint,
                signature,
                certificate,
                role="doctor",
                session=call.session,
                trust=self.credentials.trust,
                now=datetime.datetime.now(datetime.UTC),
            )
            now = datetime.datetime.now(datetime.UTC)
            announced = self.credentials.trust.verify_chain(call.doctor_chain, now=now)
            signer = self.credentials.trust.verify_chain(certificate, now=now)
        except BindingError as exc:
            logger.warning("consultation: doctor identity refused (%s)", exc.reason.value)
            raise CallRefused(f"the doctor's identity did not verify ({exc.reason.value})") from exc
        if announced != signer:
            raise CallRefused("the doctor's identity is not the one the hub announced")
        call.doctor = doctor

    async def _answer(self, call: _Call, sdp: str) -> None:
        if call.doctor is None:
            raise CallRefused("the doctor answered without a verified identity")
        try:
            fingerprint = fingerprint_of_sdp(sdp)
        except BindingError as exc:
            raise CallRefused("the doctor's answer has no usable fingerprint") from exc
        if fingerprint != call.doctor.fingerprint:
            logger.warning("consultation: answer fingerprint differs from the signed one")
            raise CallRefused("the answer's DTLS fingerprint is not the one the doctor signed")
        await call.peer.apply_answer(sdp)
        if call.sas is None:
            call.sas = short_authentication_string(call.peer.local_fingerprint, call.doctor.fingerprint, call.session)
            self._emit(VerifiedEvent(call.sas, call.doctor_display_name, call.doctor.name))

    async def _refuse(self, reason: str) -> None:
        call = self._call
        logger.warning("consultation refused: %s", reason)
        if call is not None:
            await self.link.send("signal", session=call.session, payload={"kind": "bye"})
            await self._close_call(call)
        self._set_state(SessionState.REFUSED, reason)

    # -- the link ----------------------------------------------------------------------------------------
    async def _on_peer_state(self, call: _Call, change: PeerStateChanged) -> None:
        if call is not self._call:
            return
        if change.new is PeerState.CONNECTED:
            self._set_state(SessionState.IN_CALL)
            call.recoveries = 0
            self._emit_srtp(call)
            # The call's own work, not the session's: closing the call (or a reconnection) cancels it. As a
            # session task it outlived the call, waiting for a peripheral's next state change, which may
            # never come, and kept the ended call alive: its peer connection, its queued frames, and three
            # peripheral subscriptions filling with readings.
            self._start_work(call, "statuses", self._send_statuses(call))
        elif change.new is PeerState.DISCONNECTED:
            await self._recover(call)
        elif change.new is PeerState.FAILED:
            error = change.error
            await self._end_call(f"link-{error.reason.value}" if error else "link-failed", notify=True)

    def _emit_srtp(self, call: _Call) -> None:
        if call.sas is not None and call.doctor is not None:
            self._emit(VerifiedEvent(call.sas, call.doctor_display_name, call.doctor.name, call.peer.srtp_profile))

    async def _recover(self, call: _Call) -> None:
        async with self._lock:
            if call is not self._call or call.peer.state is not PeerState.DISCONNECTED:
                return
            if call.recoveries >= RECOVERY_ATTEMPTS:
                await self._end_call("link-lost", notify=True)
                return
            call.recoveries += 1
            self._set_state(SessionState.RECONNECTING)
            for name in list(call.tasks):
                if name != "bp":
                    self._cancel_work(call, name)
            try:
                sdp = await call.peer.ice_restart()
            except PeerError:
                await self._end_call("link-lost", notify=True)
                return
            await self.link.send("signal", session=call.session, payload={"kind": "offer", "sdp": sdp})

    # -- the data channel -------------------------------------------------------------------------
    def _on_channel_message(self, call: _Call, raw: str | bytes) -> None:
        if call is not self._call:
            return
        try:
            events = call.protocol.receive_message(raw)
        except dc.DataChannelError as exc:
            logger.warning("consult channel: refused a message (%s)", exc.reason.value)
            if exc.transfer is not None and exc.reason is not dc.Reason.REFERENCE:
                with contextlib.suppress(dc.DataChannelError):
                    self._send(call, call.protocol.send_file_ack(exc.transfer, False, "the file was refused"))
            elif exc.message_id is not None and exc.reason is not dc.Reason.REFERENCE:
                logger.debug("consult channel: message %d ignored", exc.message_id)
            return
        for event in events:
            if isinstance(event, dc.Chat):
                self._emit(ChatEvent(event.text, from_doctor=True))
            elif isinstance(event, dc.FileReceived):
                self._send(call, call.protocol.send_file_ack(event.transfer, True))
                self._emit(FileEvent(event.name, event.mime, event.data))
            elif isinstance(event, dc.Command):
                self._spawn(self._run_command(call, event))

    async def _run_command(self, call: _Call, command: dc.Command) -> None:
        name = command.command
        if self._stopped_recently(call):
            self._send(call, call.protocol.send_ack(command.id, False, "stopped by the patient"))
            self._emit(CommandEvent(name, "refused", "stopped by the patient"))
            return
        if name == "bp.start":
            if self.peripherals.measuring_blood_pressure or "bp" in call.tasks:
                self._send(call, call.protocol.send_ack(command.id, False, "a measurement is already running"))
                return
            if self.peripherals.nibp is None:
                self._send(call, call.protocol.send_ack(command.id, False, "this booth has no blood-pressure monitor"))
                return
            self._emit(CommandEvent(name, "confirming"))
            if not await self.confirm(name) or call is not self._call:
                if call is self._call:
                    self._send(call, call.protocol.send_ack(command.id, False, "the patient declined"))
                    self._emit(CommandEvent(name, "refused", "the patient declined"))
                return
            if self._stopped_recently(call):
                self._send(call, call.protocol.send_ack(command.id, False, "stopped by the patient"))
                return
        try:
            ack_then = self._prepare(call, command)
        except PeripheralError as exc:
            self._send(call, call.protocol.send_ack(command.id, False, str(exc)))
            self._emit(CommandEvent(name, "refused", str(exc)))
            return
        self._send(call, call.protocol.send_ack(command.id, True))
        self._emit(CommandEvent(name, "started"))
        if ack_then is not None:
            await ack_then

    def _stopped_recently(self, call: _Call) -> bool:
        """Whether a command arriving now may have been sent before the doctor saw the patient's STOP."""
        return self.clock() - call.stopped_at < STOP_GUARD_SECONDS

    def _prepare(self, call: _Call, command: dc.Command) -> Awaitable[None] | None:
        """Check a command can run and do its instant part; return the part that runs after the ack."""
        name = command.command
        peripherals = self.peripherals
        if name == "oximeter.start":
            if peripherals.oximeter is None:
                raise PeripheralError("This booth has no pulse oximeter.")
            if "oximeter" not in call.tasks:
                self._start_work(call, "oximeter", self._stream_oximeter(call))
            return None
        if name == "oximeter.stop":
            self._cancel_work(call, "oximeter")
            return None
        if name == "bp.start":
            return self._start_work(call, "bp", self._blood_pressure(call, command.id))
        if name == "bp.abort":
            self._cancel_work(call, "bp")
            return self._abort_cuff()
        if name == "thermometer.read":
            if peripherals.thermometer is None:
                raise PeripheralError("This booth has no thermometer.")
            return self._start_work(call, f"thermometer-{command.id}", self._temperature(call, command.id))
        if name == "camera.select":
            assert command.camera is not None
            peripherals.select_camera(command.camera)
            return None
        if name == "camera.still":
            if peripherals.examination is None:
                raise PeripheralError("This booth has no examination camera.")
            return self._start_work(call, f"still-{command.id}", self._still(call, command.id))
        if name in ("stethoscope.start", "stethoscope.stop"):
            peripherals.set_stethoscope(name == "stethoscope.start")
            return None
        raise PeripheralError("This command is not supported by this booth.")

    async def _stream_oximeter(self, call: _Call) -> None:
        try:
            async for piece in self.peripherals.oximeter_slices():
                self._send(call, call.protocol.send_reading(piece.spo2, piece.pulse, piece.pleth))
                now = self.clock()
                if (
                    piece.spo2 is not None
                    and piece.pulse is not None
                    and now - call.oximeter_shown_at >= OXIMETER_EVENT_SECONDS
                ):
                    call.oximeter_shown_at = now
                    self._emit(MeasurementEvent("oximeter", {"spo2": piece.spo2, "pulse": piece.pulse}))
        except PeripheralError as exc:
            self._emit(CommandEvent("oximeter.start", "failed", str(exc)))

    async def _blood_pressure(self, call: _Call, ref: int) -> None:
        def progress(pressure: float) -> None:
            if ref in call.protocol.open_commands:
                self._send(call, call.protocol.send_progress(ref, pressure))
                self._emit(MeasurementEvent("cuff", {"pressure": pressure}))

        began = self.clock()
        try:
            readings = await self.peripherals.measure_blood_pressure(progress)
        except PeripheralError as exc:
            self._finish(call, ref, error=str(exc))
            self._emit(CommandEvent("bp.start", "failed", str(exc)))
            return
        except asyncio.CancelledError:
            self._finish(call, ref, error="stopped" if self.clock() - call.stopped_at < 1 else "aborted")
            raise
        if self._finish(call, ref, readings=readings):
            self._emit_measurement("blood_pressure", readings, ("systolic", "diastolic", "pulse"))
        self._emit(CommandEvent("bp.start", "done", device_seconds=self.clock() - began))

    async def _temperature(self, call: _Call, ref: int) -> None:
        began = self.clock()
        try:
            readings = await self.peripherals.read_temperature()
        except PeripheralError as exc:
            self._finish(call, ref, error=str(exc))
            return
        if self._finish(call, ref, readings=readings):
            self._emit_measurement("temperature", readings, ("celsius",))
        self._emit(CommandEvent("thermometer.read", "done", device_seconds=self.clock() - began))

    def _emit_measurement(self, name: str, readings: tuple[dc.Measurement, ...], kinds: tuple[str, ...]) -> None:
        values = {r.kind: r.value for r in readings if r.kind in kinds and r.value is not None}
        if values:
            self._emit(MeasurementEvent(name, values))

    async def _still(self, call: _Call, ref: int) -> None:
        began = self.clock()
        try:
            still = await self.peripherals.capture_still()
        except PeripheralError as exc:
            self._finish(call, ref, error=str(exc))
            return
        device_seconds = self.clock() - began
        transfer = uuid.uuid4().hex
        camera = still.camera if still.camera in dc.CAMERAS else "otoscope"
        self._finish(call, ref, still=dc.Still(transfer, camera))
        name = f"{camera}-{time.strftime('%Y%m%d-%H%M%S')}.jpg"
        await self._send_file(call, dc.FileSender(still.jpeg, name=name, mime="image/jpeg", transfer=transfer))
        self._emit(CommandEvent("camera.still", "done", f"{still.width}x{still.height}", device_seconds))

    def _finish(
        self,
        call: _Call,
        ref: int,
        *,
        readings: tuple[dc.Measurement, ...] | None = None,
        still: dc.Still | None = None,
        error: str | None = None,
    ) -> bool:
        """Send command ``ref``'s result; False when the call or the command ended before it."""
        if call is not self._call or ref not in call.protocol.open_commands:
            return False  # ended by a stop: the doctor already knows
        self._send(call, call.protocol.send_result(ref, readings=readings, still=still, error=error))
        return True

    async def _abort_cuff(self) -> None:
        try:
            await self.peripherals.abort_blood_pressure()
        except PeripheralError as exc:
            logger.error("the cuff abort was not confirmed: %s", exc)
            self._emit(CommandEvent("bp.abort", "failed", str(exc)))

    async def _send_statuses(self, call: _Call) -> None:
        for device, state in self.peripherals.states().items():
            self._send(call, call.protocol.send_status(device, state))
        async for change in self.peripherals.state_changes():
            if call is not self._call:
                return
            self._send(call, call.protocol.send_status(change.device, change.new.value))

    async def _send_file(self, call: _Call, sender: dc.FileSender) -> None:
        for text in call.protocol.send_file(sender):
            while call.peer.channel.buffered_amount > MAX_BUFFERED_BYTES and call is self._call:  # noqa: ASYNC110
                # aiortc has no bufferedamountlow event for us to wait on; poll the send buffer.
                await asyncio.sleep(0.02)
            if call is not self._call:
                return
            self._send(call, text)
        # With the bytes: the booth's records service seals what the booth sent (stills, documents).
        self._emit(FileEvent(sender.name, sender.mime, sender.data, False, sender.sha256, len(sender.data)))

    # -- plumbing -----------------------------------------------------------------------------------------
    def _send(self, call: _Call, text: str) -> None:
        if call is not self._call:
            return
        try:
            call.peer.channel.send(text)
        except PeerError as exc:
            logger.warning("consult channel: message not sent (%s)", exc.reason.value)

    def _start_work(self, call: _Call, name: str, work: Awaitable[None]) -> asyncio.Task[None]:
        self._cancel_work(call, name)  # one task per name: a restarted piece of work replaces the old one
        task = asyncio.ensure_future(work)
        call.tasks[name] = task
        task.add_done_callback(lambda _: call.tasks.pop(name, None) if call.tasks.get(name) is task else None)
        return task

    def _cancel_work(self, call: _Call, name: str) -> None:
        task = call.tasks.pop(name, None)
        if task is not None:
            task.cancel()

    def _require_call(self) -> _Call:
        if self._call is None or self.state is not SessionState.IN_CALL:
            raise RuntimeError("no consultation is running")
        return self._call

    async def _end_call(self, reason: str, *, notify: bool) -> None:
        call = self._call
        if call is None:
            return
        if notify:
            await self.link.send("signal", session=call.session, payload={"kind": "bye"})
        await self._close_call(call)
        self._set_state(SessionState.ENDED, reason)

    async def _close_call(self, call: _Call) -> None:
        if self._call is call:
            self._call = None
        if self.peripherals.measuring_blood_pressure:
            await self._abort_cuff()
        for task in list(call.tasks.values()):
            task.cancel()
        await asyncio.gather(*call.tasks.values(), return_exceptions=True)
        with contextlib.suppress(PeripheralError):
            if self.peripherals.stethoscope is not None:
                self.peripherals.set_stethoscope(False)
        await call.peer.close()

    def _set_state(self, state: SessionState, reason: str = "") -> None:
        if state is self.state and not reason:
            return
        self.state = state
        logger.info("consultation: %s%s", state.value, f" ({reason})" if reason else "")
        self._emit(StateEvent(state, reason))

    def _emit(self, event: SessionEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a UI bug must not break the consultation
                logger.exception("session listener failed")

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
