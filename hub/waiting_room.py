"""The waiting room and the signalling relay: who waits, who accepted whom, who may talk to whom.

No I/O here: connections are :class:`Endpoint` objects whose ``send`` queues a
text frame and ``close`` asks for the connection to end; the WebSocket
handlers (``hub.booth_api``, ``hub.doctor_api``) feed validated messages in
and call :meth:`WaitingRoom.booth_left` / :meth:`WaitingRoom.doctor_left`.
Methods never await, so on one event loop each one is atomic: when two
doctors accept the same entry, the first call removes it and the second
finds it gone. Exactly one wins.

Rules it keeps:

* A booth has at most one live connection; a new one (same certificate CN)
  replaces the old one, which is closed and whose entry and session end. A
  booth reconnecting after a network drop must not be locked out by its own
  half-open connection, and only the holder of that booth's key can do it.
* A booth announces at most one patient at a time (a new announce replaces
  its entry) and cannot announce during a consultation.
* Signalling goes only between a session's booth and the doctor connection
  that accepted it; anything else is refused with ``not_your_session``.
* A doctor holds one consultation at a time per connection, and must have a
  certified identity key (the booth needs its certificate) to accept.
* End, or either side disconnecting, sends ``ended`` to the other side.
* Every waiting booth learns its place and an estimated wait (``position``,
  :mod:`hub.wait_estimate`) when it changes, and at each periodic refresh; a
  booth in a consultation gets none.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from aiohttp import WSMsgType, web

from hub.accounts import AuditHook, log_security_event
from hub.messages import (
    MAX_MESSAGE_BYTES,
    MAX_POSITION,
    Direction,
    Message,
    MessageError,
    MessageReason,
    encode,
    parse,
)
from hub.wait_estimate import wait_estimates

logger = logging.getLogger(__name__)

INVALID_WINDOW: Final = 60.0
CLOSE_REPLACED: Final = 4000
CLOSE_ABUSE: Final = 4008
CLOSE_SESSION: Final = 4401
MAX_QUEUE_ENTRIES: Final = 500
QUEUE_OVERHEAD: Final = 64
"""Bytes of a ``queue`` message around its entries (``{"v":1,"type":"queue","entries":[]}`` and margin)."""
HISTORY_SIZE: Final = 50
"""Finished consultations whose durations the wait estimate is based on (the most recent ones)."""


class Endpoint(Protocol):
    """One side's live connection, as the waiting room sees it."""

    def send(self, text: str) -> None:
        """Queue one text frame (never blocks)."""

    def close(self, code: int, reason: str) -> None:
        """Ask for the connection to close."""


@dataclass
class Entry:
    """A patient waiting: only what a doctor needs to choose."""

    entry: str
    booth: str
    first_name: str
    age: int
    reason: str
    since: float


@dataclass
class Consultation:
    """An accepted entry: a booth and the one doctor connection that may signal it."""

    session: str
    entry: str
    booth: str
    doctor: DoctorLink
    started: float
    """When it was accepted (monotonic seconds)."""


@dataclass(eq=False)
class _Link:
    endpoint: Endpoint
    invalid: deque[float] = field(default_factory=deque)

    def strike(self, now: float, limit: int) -> bool:
        """Count an invalid message; True when the connection crossed the abuse limit."""
        self.invalid.append(now)
        while self.invalid and self.invalid[0] <= now - INVALID_WINDOW:
            self.invalid.popleft()
        return len(self.invalid) > limit


@dataclass(eq=False)
class BoothLink(_Link):
    """A booth's connection: its id (certificate CN) and certificate."""

    booth: str = ""
    certificate: str = ""
    entry: str | None = None
    session: str | None = None
    position_sent: tuple[int, int | None] | None = None
    """The last ``position`` sent for the current entry: unchanged ones are not repeated between refreshes."""


@dataclass(eq=False)
class DoctorLink(_Link):
    """A doctor's WebSocket: the account, and the identity chain certified for this login."""

    username: str = ""
    display_name: str = ""
    identity_chain: Callable[[], str | None] = lambda: None
    """Looked up at accept time: the browser may certify its key after connecting."""
    session: str | None = None


def read_message(raw: str, direction: Direction) -> Message:
    """Parse and validate one received frame (lone surrogates included: hub.messages refuses them)."""
    return parse(raw, direction)


def _booth_text(type_: str, **body: Any) -> str:
    return encode(Message(type_, body), Direction.HUB_TO_BOOTH)


def _doctor_text(type_: str, **body: Any) -> str:
    return encode(Message(type_, body), Direction.HUB_TO_DOCTOR)


class WaitingRoom:
    """Waiting entries, consultations and the links they run over; ``now`` is monotonic seconds."""

    def __init__(
        self,
        *,
        max_invalid_per_minute: int = 20,
        audit: AuditHook = log_security_event,
        audit_heads: Callable[[str, int, str], object] | None = None,
    ) -> None:
        self.max_invalid = max_invalid_per_minute
        self.audit = audit
        self.audit_heads = audit_heads
        """Receives each booth's ``audit_head`` (booth, seq, hash): :class:`hub.audit.BoothHeads`."""
        self.booths: dict[str, BoothLink] = {}
        self.doctors: set[DoctorLink] = set()
        self.entries: dict[str, Entry] = {}
        self.sessions: dict[str, Consultation] = {}
        self.history: deque[float] = deque(maxlen=HISTORY_SIZE)
        """Durations (s) of the latest finished consultations."""

    # -- connections ---------------------------------------------------------------------------
    def booth_joined(self, link: BoothLink, now: float) -> None:
        """A booth connected; an older connection of the same booth is replaced."""
        old = self.booths.get(link.booth)
        if old is not None:
            self.audit("booth_replaced", {"booth": link.booth})
            self.booth_left(old, now, reason="booth-reconnected")
            old.endpoint.close(CLOSE_REPLACED, "replaced by a newer connection")
        self.booths[link.booth] = link
        self.audit("booth_connected", {"booth": link.booth})

    def booth_left(self, link: BoothLink, now: float, *, reason: str = "booth-disconnected") -> None:
        """A booth's connection ended: its entry leaves the queue, its consultation ends."""
        if self.booths.get(link.booth) is not link:
            return
        del self.booths[link.booth]
        self.audit("booth_disconnected", {"booth": link.booth})
        if link.entry is not None:
            self.entries.pop(link.entry, None)
            link.entry = None
            self.broadcast_queue(now)
        if link.session is not None:
            self._end(link.session, reason, now, notify_booth=False)
        self.broadcast_positions(now)

    def doctor_joined(self, link: DoctorLink, now: float) -> None:
        """A doctor's WebSocket opened: it gets the queue at once."""
        self.doctors.add(link)
        self.audit("doctor_connected", {"account": link.username})
        link.endpoint.send(self._queue_text(now))
        self.broadcast_positions(now)

    def doctor_left(self, link: DoctorLink, now: float) -> None:
        """A doctor's WebSocket closed: the consultation it held ends."""
        if link not in self.doctors:
            return
        self.doctors.discard(link)
        self.audit("doctor_disconnected", {"account": link.username})
        if link.session is not None:
            self._end(link.session, "doctor-disconnected", now, notify_doctor=False)
        self.broadcast_positions(now)

    # -- booth messages ------------------------------------------------------------------------------
    def from_booth(self, link: BoothLink, message: Message, now: float) -> None:
        """A validated message from a booth."""
        if self.booths.get(link.booth) is not link:
            return  # replaced connection still draining
        if message.type == "announce":
            if link.session is not None:
                self._refuse(link, "busy", "this booth is in a consultation", now, booth=True)
                return
            if link.entry is not None:
                self.entries.pop(link.entry, None)
            patient = message["patient"]
            entry = Entry(uuid.uuid4().hex, link.booth, patient["first_name"], patient["age"], patient["reason"], now)
            self.entries[entry.entry] = entry
            link.entry = entry.entry
            link.position_sent = None
            self.audit("patient_announced", {"booth": link.booth, "entry": entry.entry})
            self.broadcast_queue(now)
            self.broadcast_positions(now)
        elif message.type == "withdraw":
            if link.entry is not None:
                self.entries.pop(link.entry, None)
                self.audit("patient_withdrawn", {"booth": link.booth, "entry": link.entry})
                link.entry = None
                self.broadcast_queue(now)
                self.broadcast_positions(now)
        elif message.type == "signal":
            consultation = self.sessions.get(message["session"])
            if consultation is None or consultation.booth != link.booth or link.session != consultation.session:
                self.audit("signal_refused", {"booth": link.booth})
                self._refuse(link, "not_your_session", "no such session for this booth", now, booth=True)
                return
            consultation.doctor.endpoint.send(
                _doctor_text("signal", session=consultation.session, payload=message["payload"])
            )
        elif message.type == "audit_head" and self.audit_heads is not None:
            self.audit_heads(link.booth, message["seq"], message["hash"])
        # heartbeat: nothing to do; reading it kept the connection alive.

    # -- doctor messages --------------------------------------------------------------------------------
    def from_doctor(self, link: DoctorLink, message: Message, now: float) -> None:
        """A validated message from a doctor."""
        if link not in self.doctors:
            return
        if message.type == "accept":
            self._accept(link, message["entry"], now)
            return
        consultation = self.sessions.get(message["session"])
        if consultation is None or consultation.doctor is not link:
            self.audit("signal_refused" if message.type == "signal" else "end_refused", {"account": link.username})
            self._refuse(link, "not_your_session", "no such session for this connection", now, booth=False)
            return
        if message.type == "signal":
            booth = self.booths.get(consultation.booth)
            if booth is not None:
                booth.endpoint.send(_booth_text("signal", session=consultation.session, payload=message["payload"]))
        else:  # end
            self._end(consultation.session, "doctor-ended", now)
            self.broadcast_positions(now)

    def _accept(self, link: DoctorLink, entry_id: str, now: float) -> None:
        if link.session is not None:
            self._refuse(link, "busy", "end the current consultation first", now, booth=False, strike=False)
            return
        chain = link.identity_chain()
        if chain is None:
            self._refuse(link, "no_identity", "certify this login's identity key first", now, booth=False, strike=False)
            return
        entry = self.entries.get(entry_id)
        booth = self.booths.get(entry.booth) if entry is not None else None
        if entry is None or booth is None:
            link.endpoint.send(_doctor_text("taken", entry=entry_id, by_me=False))
            return
        # From here to the end nothing awaits: this accept wins, any later one finds the entry gone.
        del self.entries[entry_id]
        booth.entry = None
        session = uuid.uuid4().hex
        self.sessions[session] = Consultation(session, entry_id, booth.booth, link, now)
        booth.session = session
        link.session = session
        self.audit("consultation_accepted", {"account": link.username, "booth": booth.booth, "session": session})
        booth.endpoint.send(
            _booth_text("accepted", session=session, doctor={"display_name": link.display_name, "certificate": chain})
        )
        link.endpoint.send(
            _doctor_text(
                "session", session=session, entry=entry_id, booth=booth.booth, booth_certificate=booth.certificate
            )
        )
        for doctor in self.doctors:
            doctor.endpoint.send(_doctor_text("taken", entry=entry_id, by_me=doctor is link))
        self.broadcast_queue(now)
        self.broadcast_positions(now)

    def _end(
        self, session: str, reason: str, now: float, *, notify_booth: bool = True, notify_doctor: bool = True
    ) -> None:
        consultation = self.sessions.pop(session, None)
        if consultation is None:
            return
        # Every ending counts, a dropped or refused call too: it is the doctor's time the queue waits for.
        self.history.append(max(0.0, now - consultation.started))
        consultation.doctor.session = None
        booth = self.booths.get(consultation.booth)
        if booth is not None and booth.session == session:
            booth.session = None
            if notify_booth:
                booth.endpoint.send(_booth_text("ended", session=session, reason=reason))
        if notify_doctor and consultation.doctor in self.doctors:
            consultation.doctor.endpoint.send(_doctor_text("ended", session=session, reason=reason))
        self.audit("consultation_ended", {"session": session, "booth": consultation.booth, "reason": reason})

    # -- errors ------------------------------------------------------------------------------------------
    def invalid(self, link: BoothLink | DoctorLink, error: MessageError, now: float) -> None:
        """A message that failed validation: an ``error`` back, and a strike."""
        self._refuse(link, error.reason.value, str(error), now, booth=isinstance(link, BoothLink))

    def _refuse(self, link: _Link, code: str, text: str, now: float, *, booth: bool, strike: bool = True) -> None:
        body = {"code": code[:40], "message": text[:200].replace("\n", " ")}
        link.endpoint.send(_booth_text("error", **body) if booth else _doctor_text("error", **body))
        if strike and link.strike(now, self.max_invalid):
            who = {"booth": link.booth} if isinstance(link, BoothLink) else {"account": getattr(link, "username", "")}
            self.audit("connection_abusive", who)
            link.endpoint.close(CLOSE_ABUSE, "too many invalid messages")

    # -- queue --------------------------------------------------------------------------------------------
    def _queue_text(self, now: float) -> str:
        # Longest waiting first, as many as fit in one message: with long names and reasons a few
        # hundred entries reach MAX_MESSAGE_BYTES, and the newest then show once older ones are taken.
        entries: list[dict[str, Any]] = []
        size = QUEUE_OVERHEAD
        for entry in sorted(self.entries.values(), key=lambda e: e.since)[:MAX_QUEUE_ENTRIES]:
            item = {
                "entry": entry.entry,
                "first_name": entry.first_name,
                "age": entry.age,
                "reason": entry.reason,
                "waiting_seconds": max(0, min(int(now - entry.since), 7 * 24 * 3600)),
                "booth": entry.booth,
            }
            size += len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()) + 1
            if size > MAX_MESSAGE_BYTES:
                break
            entries.append(item)
        return _doctor_text("queue", entries=entries)

    def broadcast_queue(self, now: float) -> None:
        """Send every doctor the current queue (on each change, and periodically for waiting times)."""
        if not self.doctors:
            return
        text = self._queue_text(now)
        for doctor in self.doctors:
            doctor.endpoint.send(text)

    def refresh(self, now: float) -> None:
        """The periodic refresh: the queue to every doctor, and every waiting booth its position."""
        self.broadcast_queue(now)
        self.broadcast_positions(now, force=True)

    def broadcast_positions(self, now: float, *, force: bool = False) -> None:
        """Send each waiting booth its place in the queue and estimated wait, if it changed (or ``force``)."""
        waiting = sorted(self.entries.values(), key=lambda e: e.since)
        if not waiting:
            return
        # A doctor with two tabs open is one doctor, but each tab may hold a consultation.
        doctors = max(len({doctor.username for doctor in self.doctors}), len(self.sessions))
        estimates = wait_estimates(
            len(waiting),
            doctors=doctors,
            running=[now - consultation.started for consultation in self.sessions.values()],
            history=list(self.history),
        )
        for index, (entry, estimate) in enumerate(zip(waiting, estimates, strict=True)):
            link = self.booths.get(entry.booth)
            if link is None or link.entry != entry.entry or link.session is not None:
                continue
            position = (min(index + 1, MAX_POSITION), estimate)
            if force or position != link.position_sent:
                link.position_sent = position
                link.endpoint.send(_booth_text("position", position=position[0], estimate_seconds=estimate))


L = TypeVar("L", BoothLink, DoctorLink)


async def relay_frames(
    ws: web.WebSocketResponse,
    room: WaitingRoom,
    link: L,
    direction: Direction,
    deliver: Callable[[L, Message, float], None],
) -> None:
    """Read one side's WebSocket until it closes: valid messages to ``deliver``, the rest to ``room.invalid``."""
    async for frame in ws:
        now = time.monotonic()
        if frame.type == WSMsgType.TEXT:
            try:
                message = read_message(frame.data, direction)
            except MessageError as exc:
                room.invalid(link, exc, now)
                continue
            deliver(link, message, now)
        elif frame.type == WSMsgType.BINARY:
            room.invalid(link, MessageError(MessageReason.NOT_JSON, "binary frames are not accepted"), now)
        elif frame.type == WSMsgType.ERROR:
            break
