"""The booth's audit wiring: what the patient flow and the consultation do, into the chain; its head to the hub.

:class:`BoothAudit` is plugged in where the booth is assembled
(:func:`kiosk.ui.main.emulated_stack`), with no change to the flow or the controller:

* ``Services.audit`` gets :meth:`BoothAudit.flow_event` (consent, identification, staff, failures);
* ``BoothSession.add_listener`` gets :meth:`BoothAudit.session_event` (hub link, waiting room,
  call states, the doctor's verified identity, every peripheral command and its outcome, files);
* ``Services.forget`` is wrapped by :meth:`BoothAudit.wrap_forget` (the wipe ends the patient's token).

A patient is only ever an opaque token (128 random bits) drawn when their
session starts and dropped at the wipe: it ties a session's entries together
and says nothing about who they were. Measurements, chat and file names are
never recorded (health data); files are a SHA-256 and a size.

The chain head goes to the hub (``audit_head``) every :data:`HEAD_INTERVAL`
seconds, when the link comes up and when a consultation ends, so the booth
cannot later rewrite what it had recorded without the hub's anchors showing it.
Recording never raises into the patient flow: a failing disk is logged loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final

from kiosk.audit.chain import ChainError
from kiosk.audit.log import AuditLog
from kiosk.session.consultation import (
    CommandEvent,
    FileEvent,
    LinkEvent,
    SessionEvent,
    SessionState,
    StateEvent,
    VerifiedEvent,
)

logger = logging.getLogger(__name__)

HEAD_INTERVAL: Final = 60.0
CONFIG_DIGEST_FILE: Final = "config.sha256"
_PLAIN = re.compile(r"[^A-Za-z0-9_.+/ x-]")
_FLOW_EVENTS: Final = {
    "consent_given": "consent_given",
    "consent_declined": "consent_declined",
    "idle_timeout": "idle_timeout",
    "patient_quit": "patient_quit",
    "cleaning_confirmed": "cleaning_confirmed",
    "staff_login": "staff_login",
    "staff_logout": "staff_logout",
    "staff_pin_wrong": "staff_pin_wrong",
    "staff_pin_locked": "staff_pin_locked",
}
_PATIENT_EVENTS: Final = frozenset({"consent_given", "consent_declined", "patient_identified", "patient_failure"})
"""Events that open a patient's session (a fresh token) when none is open."""
_STATE_EVENTS: Final = {
    SessionState.WAITING: "patient_waiting",
    SessionState.CONNECTING: "consultation_accepted",
    SessionState.IN_CALL: "consultation_connected",
    SessionState.RECONNECTING: "consultation_reconnecting",
    SessionState.ENDED: "consultation_ended",
    SessionState.REFUSED: "consultation_refused",
}
HeadSender = Callable[[int, str], Awaitable[bool]]
"""Sends ``audit_head`` {seq, hash} to the hub; False when the link is down."""


def _plain(text: str, limit: int = 120) -> str:
    return _PLAIN.sub("_", text)[:limit]


class BoothAudit:
    """The booth's audit trail around one :class:`AuditLog`."""

    def __init__(
        self,
        log: AuditLog,
        *,
        send_head: HeadSender | None = None,
        consultation: Callable[[], str | None] = lambda: None,
        interval: float = HEAD_INTERVAL,
    ) -> None:
        self.log = log
        self.send_head = send_head
        self.consultation = consultation
        """The current consultation's id (the hub's session id), to tie booth and hub entries together."""
        self.interval = interval
        self.patient: str | None = None
        """The opaque token of the patient now at the booth."""
        self.heads_sent = 0
        self._state = SessionState.IDLE
        self._verified: tuple[str, str, str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._periodic: asyncio.Task[None] | None = None

    # -- recording ------------------------------------------------------------------------------
    def record(self, event: str, **fields: object) -> None:
        """Record ``event`` with the patient token (if a patient is there); never raises."""
        if self.patient is None and event in _PATIENT_EVENTS:
            self.patient = secrets.token_hex(16)
            self._safe("patient_session_started", {"patient": self.patient})
        if self.patient is not None:
            fields = {"patient": self.patient, **fields}
        self._safe(event, fields)

    def _safe(self, event: str, fields: Mapping[str, object]) -> None:
        try:
            self.log.record(event, **fields)
        except ChainError:
            logger.exception("audit: %s could not be recorded", event)

    def flow_event(self, event: str) -> None:
        """``Services.audit``: the patient flow's events (never patient data)."""
        if event == "card_read":
            self.record("patient_identified", method="card")
        elif event == "manual_identity":
            self.record("patient_identified", method="manual")
        elif event.startswith("failure_"):
            self.record("patient_failure", kind=_plain(event.removeprefix("failure_"), 40))
        elif event in _FLOW_EVENTS:
            self.record(_FLOW_EVENTS[event])
        else:
            self.record("flow_event", flow=_plain(event, 64))

    def session_event(self, event: SessionEvent) -> None:
        """A :class:`~kiosk.session.consultation.BoothSession` listener."""
        if isinstance(event, StateEvent):
            self._state_changed(event)
        elif isinstance(event, CommandEvent):
            self.record(
                "peripheral_command",
                consultation=self.consultation() or "",
                command=_plain(event.command, 40),
                phase=_plain(event.phase, 20),
                detail=_plain(event.detail),
            )
        elif isinstance(event, FileEvent):
            if event.from_doctor:
                digest, size = hashlib.sha256(event.data).hexdigest(), len(event.data)
            else:
                digest, size = event.sha256, event.size
            self.record(
                "file_received" if event.from_doctor else "file_sent",
                consultation=self.consultation() or "",
                sha256=digest,
                size=size,
                mime=_plain(event.mime, 80),
            )
        elif isinstance(event, VerifiedEvent):
            verified = (self.consultation() or "", _plain(event.doctor_account, 80), event.srtp_profile or "")
            if verified != self._verified:  # the session repeats it after each reconnection
                self._verified = verified
                self.record("doctor_verified", consultation=verified[0], account=verified[1], srtp=verified[2])
        elif isinstance(event, LinkEvent):
            self.record("hub_connected" if event.connected else "hub_disconnected")
            if event.connected:
                self._spawn(self.report_head)
        # Chat, measurements and waiting positions are the patient's data or noise: not recorded.

    def _state_changed(self, event: StateEvent) -> None:
        previous, self._state = self._state, event.state
        if event.state is SessionState.IDLE:
            if previous is SessionState.WAITING:
                self.record("patient_withdrawn")
            return
        name = _STATE_EVENTS[event.state]
        fields: dict[str, object] = {"consultation": self.consultation() or ""}
        if event.reason:
            fields["reason"] = _plain(event.reason)
        self.record(name, **fields)
        if event.state in (SessionState.ENDED, SessionState.REFUSED):
            self._spawn(self.report_head)

    def wrap_forget(self, forget: Callable[[], None]) -> Callable[[], None]:
        """``Services.forget``, which also closes the patient's audit session (their token is dropped)."""

        def wrapped() -> None:
            forget()
            if self.patient is not None:
                self.record("patient_session_ended")
                self.patient = None

        return wrapped

    def record_start(self, config: Mapping[str, object]) -> str:
        """``service_started`` with the configuration's digest; ``config_changed`` when it differs from last time."""
        document = json.dumps(dict(config), sort_keys=True, default=str)
        digest = hashlib.sha256(document.encode()).hexdigest()
        path: Path = self.log.directory / CONFIG_DIGEST_FILE
        try:
            previous = path.read_text().strip()
        except FileNotFoundError:
            previous = ""
        if previous != digest:
            self.record("config_changed", previous=previous or "none", digest=digest)
            path.write_text(digest + "\n")
        self.record("service_started", service="booth", config=digest)
        return digest

    # -- the head to the hub ---------------------------------------------------------------------
    async def report_head(self) -> bool:
        """Send the chain's head to the hub now; False when there is no link (the next report catches up)."""
        head = self.log.head
        if self.send_head is None or head is None:
            return False
        sent = await self.send_head(head.seq, head.hash)
        if sent:
            self.heads_sent += 1
        return sent

    def start(self) -> None:
        """Report the head every :attr:`interval` seconds until :meth:`stop`."""
        if self._periodic is None:
            self._periodic = asyncio.get_running_loop().create_task(self._every_interval(), name="audit-head")

    async def stop(self) -> None:
        """Stop reporting (a last report first), and record the stop."""
        periodic, self._periodic = self._periodic, None
        for task in [*([periodic] if periodic else []), *self._tasks]:
            task.cancel()
        await asyncio.gather(*([periodic] if periodic else []), *self._tasks, return_exceptions=True)
        self.record("service_stopped", service="booth")

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(Exception):  # a failed report is retried at the next interval
                await self.report_head()

    def _spawn(self, work: Callable[[], Awaitable[bool]]) -> None:
        async def run() -> None:
            try:
                await work()
            except Exception:
                logger.warning("audit: the head report failed", exc_info=True)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the periodic report will carry it
            return
        task = loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
