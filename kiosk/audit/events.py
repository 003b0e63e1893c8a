"""The catalog of audit events: each name has a fixed journald MESSAGE_ID, a priority and a description.

MESSAGE_IDs are constant uuid4 hex strings, as systemd's catalog wants
(``journalctl MESSAGE_ID=...`` finds every occurrence of one event type, on
any booth, forever): never change one, add a new event instead. Priorities
are syslog levels (2 crit, 3 err, 4 warning, 5 notice, 6 info).

Fields never carry a patient's identity or health data: a patient is an
opaque per-session token; files are a SHA-256 and a size; a doctor is an
account name (or its pseudonym when the name is only what someone typed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class EventType:
    """One kind of audit event."""

    name: str
    message_id: str
    """32 lower-case hex digits (uuid4), journald's MESSAGE_ID."""
    priority: int
    """Syslog level for journald's PRIORITY."""
    description: str


def _e(name: str, message_id: str, priority: int, description: str) -> EventType:
    return EventType(name, message_id, priority, description)


_EVENTS: Final = (
    _e("audit_log_started", "a59c8ee7c9814e37986f51bc61207cb8", 5, "A new audit chain begins (its first entry)."),
    _e(
        "audit_head_mismatch",
        "1fcb2167a7b04147a4006a31774d2708",
        2,
        "At start, the log's tail disagreed with its head sidecar: entries were lost or rewritten.",
    ),
    _e(
        "unlisted_event",
        "5d379d2c36c04a49ad857ca0a049a177",
        4,
        "An event missing from this catalog (its name only): a bug to fix.",
    ),
    _e(
        "audit_head_rewound",
        "64e1efda434844ab9cc056b4204d93a1",
        2,
        "Hub: a booth's audit head does not extend the previous one (lower seq, or same seq and another hash).",
    ),
    _e(
        "config_changed",
        "1e6d7f2bc67b411fb6b873b41570436a",
        5,
        "The configuration differs from the one in force at the previous start (digests only).",
    ),
    _e(
        "service_started",
        "47032bee26384dfe9de2f34c928dae62",
        6,
        "The booth app or the hub started (with its configuration digest).",
    ),
    _e("service_stopped", "5304d201e3084d69a7ae03d2e0de6b3c", 6, "The booth app or the hub stopped cleanly."),
    _e("hub_connected", "331492fcfae5427cae63858359d6416d", 6, "Booth: the signalling link to the hub came up."),
    _e("hub_disconnected", "0fae544617984d30be4294d0ccd67b5a", 4, "Booth: the signalling link to the hub went down."),
    _e("booth_connected", "d706de5fb99d4e218d7d160edbfb23b7", 6, "Hub: a booth connected over mutual TLS."),
    _e("booth_disconnected", "007ead58903c44bcb5265ff266d95dcc", 6, "Hub: a booth's connection ended."),
    _e("booth_replaced", "2eb6e4fffe434939a4e5931b7bd172ad", 4, "Hub: a booth's new connection replaced its old one."),
    _e(
        "booth_refused",
        "e7157a8e841c4d60abdce96fd199d000",
        4,
        "Hub: a client without a valid booth certificate was refused.",
    ),
    _e("doctor_connected", "767caea3bcfb4157985071455e9ca719", 6, "Hub: a doctor's console WebSocket opened."),
    _e("doctor_disconnected", "fc6f719258f749269b18ea4b0c61459b", 6, "Hub: a doctor's console WebSocket closed."),
    _e(
        "connection_abusive",
        "902eebf1d5324d7594a5aab5415d8842",
        4,
        "Hub: a connection sent too many invalid messages and was closed.",
    ),
    _e("cross_site_refused", "f49a77a614664f039682a229969ae2ec", 4, "Hub: a cross-site request was refused."),
    _e("csrf_refused", "dbb630db5130412b8d5b70768c9fa114", 4, "Hub: a request without a valid CSRF token was refused."),
    _e(
        "login_password_ok",
        "2b626ea32e4544a8bf7070aefc78a340",
        6,
        "Hub: a doctor's password was accepted; the second factor is pending.",
    ),
    _e("login_ok", "b2b7f3be3598454797d7eecc561ebcab", 5, "Hub: a doctor logged in (second factor: totp or webauthn)."),
    _e("login_failed", "afc990b965314241828d4706e0ed9e3d", 4, "Hub: a login step failed (opaque account pseudonym)."),
    _e(
        "login_rate_limited",
        "34d01f1055404b5f89e3b682eb534ae1",
        4,
        "Hub: login attempts from a client were rate-limited.",
    ),
    _e("login_totp_replay", "da37ea0598264fbc9b8ef136a02f6c50", 4, "Hub: a TOTP code was replayed."),
    _e("account_locked", "a2dc925b71704f69a7d6aa1e1817c671", 4, "Hub: too many failures locked an account name."),
    _e("session_expired", "bdce1370b70241d297b987f7a46418e0", 6, "Hub: a doctor's login session expired."),
    _e("logout", "ef62a29f383e4611a6bbf71828dc57b5", 6, "Hub: a doctor logged out."),
    _e(
        "identity_certified",
        "05e0e44c4b5c4fc4bf461bf54c1ae2bb",
        6,
        "Hub: a doctor's per-login identity key was certified.",
    ),
    _e("webauthn_register_started", "615727c966a34ce8b9d77852fec4b1d6", 6, "Hub: a security-key registration began."),
    _e("webauthn_registered", "1baf62e6659c4d36b3be04f4242e7463", 5, "Hub: a security key was registered."),
    _e(
        "webauthn_register_refused",
        "506c5bd541e34b52a872982865f6a7db",
        4,
        "Hub: a security-key registration was refused.",
    ),
    _e(
        "patient_announced",
        "f55942051d024936acb7c3eb61f1048c",
        6,
        "Hub: a booth put a patient in the waiting room (entry id only).",
    ),
    _e("patient_withdrawn", "749e42416c754491bb70be9c070f64ca", 6, "A waiting patient left the waiting room."),
    _e("patient_waiting", "49b0eb360dba486d9247a42da59de78e", 6, "Booth: the patient joined the waiting room."),
    _e(
        "signal_refused",
        "c0b5a3b72773464c9ada46856e0dee2b",
        4,
        "Hub: signalling for a session the sender does not hold was refused.",
    ),
    _e(
        "end_refused",
        "d5351ac96f2d4268ae78cefde7dce853",
        4,
        "Hub: an end for a session the doctor does not hold was refused.",
    ),
    _e(
        "consultation_accepted",
        "3d2b76f3012d42a69d4956301d2725f2",
        5,
        "A doctor accepted a waiting patient: a consultation session starts.",
    ),
    _e("consultation_connected", "2a88ffe473f64a159fddac3cc670b912", 5, "Booth: the verified call is up."),
    _e(
        "consultation_reconnecting",
        "d4cd5049556446bc9f577fa1f3c9d6a7",
        4,
        "Booth: the call's network dropped; it is being rebuilt.",
    ),
    _e(
        "consultation_refused",
        "1c883c6a45c1435682bdee33c3c1d517",
        3,
        "Booth: the doctor's identity or the link's security did not check out; the call was refused.",
    ),
    _e("consultation_ended", "65c5dfcc04af4c3d9f6c0d56def56d1e", 5, "A consultation session ended (with the reason)."),
    _e(
        "doctor_verified",
        "b3c2a8a4238b4c728322e5d90a5f5fab",
        5,
        "Booth: the doctor's signed identity verified (account name, never the patient).",
    ),
    _e(
        "patient_session_started",
        "f68d65e8841240e0b1fbd6f1a96018f4",
        6,
        "Booth: a patient began using the booth (a fresh opaque token).",
    ),
    _e("patient_session_ended", "63cbedaec52e4e7a9ff09504b79f6c16", 6, "Booth: the patient's session was wiped."),
    _e(
        "patient_identified",
        "9f40083fe43545759c48f0ae6c6b9b5b",
        5,
        "Booth: the patient was identified (card or manual entry; opaque token only).",
    ),
    _e("consent_given", "864ab5d8a94249209ea9a48af7d36391", 5, "Booth: the patient consented."),
    _e("consent_declined", "a91cad454bfa4b18a6f041b762026810", 5, "Booth: the patient declined consent."),
    _e("patient_quit", "b222c719d2764414a5f939a927177689", 6, "Booth: the patient left before the end."),
    _e("idle_timeout", "c3b13154203a4fb58d5a922a949616ad", 6, "Booth: the session expired for inactivity."),
    _e(
        "patient_failure",
        "4efa681f848a4a6584f8058a442c61f2",
        4,
        "Booth: the patient met a failure screen (card, peripheral, network, doctor gone).",
    ),
    _e("flow_event", "89f4d3a344fb488a8df4ba1a3c56edb7", 6, "Booth: another event of the patient flow."),
    _e(
        "peripheral_command",
        "f2e40940aaf44557983518ed4b46e464",
        6,
        "Booth: a doctor's peripheral command and its outcome (started, refused, done, failed, stopped).",
    ),
    _e(
        "file_sent",
        "3ce11f2e4a054e8386814e4e0ed0b13d",
        6,
        "A file left for the other side (sha256 and size, never the name or content).",
    ),
    _e(
        "file_received",
        "ec0289a1a9e54da19e3e6725f9a04d01",
        6,
        "A file arrived from the other side (sha256 and size, never the name or content).",
    ),
    _e("staff_login", "13e0013151a24033936acce72775bc83", 5, "Booth: staff mode opened with the PIN."),
    _e("staff_logout", "77b49396c6054963b8ff8b924e8d3b04", 6, "Booth: staff mode closed."),
    _e("staff_pin_wrong", "579b3902015b480b9395a1476a1cc122", 4, "Booth: a wrong staff PIN."),
    _e("staff_pin_locked", "0f21f8500e4f48e8afc1dff84a6a6736", 4, "Booth: staff PIN entry locked after failures."),
    _e(
        "cleaning_confirmed", "20434e6053b849e48275ca1d20b591d1", 6, "Booth: staff confirmed cleaning between patients."
    ),
    _e(
        "booth_certificate_issued",
        "672890c08ef54cec9286291a32c6dff7",
        5,
        "Hub: a booth certificate was minted by the fleet CA.",
    ),
    _e(
        "enrol_token_issued",
        "4760ab647fbf486ca66db01c2be19471",
        5,
        "Hub: a one-time enrolment token was issued (hash prefix only).",
    ),
    _e(
        "enrol_ok", "89599af6697a40b4a925d0e4d6ba9e0a", 5, "Hub: a booth enrolled with a token and got its certificate."
    ),
    _e(
        "enrol_refused", "830236b41c8c4ad58eca2965fbd179d7", 4, "Hub: an enrolment was refused (with the typed reason)."
    ),
    _e("renew_ok", "6d1a51d0847a406bb6621692a5ca4cd2", 5, "Hub: a booth renewed its certificate over mutual TLS."),
    _e(
        "renew_refused",
        "b3f9ee94419d46b1befc2f09d85967f4",
        4,
        "Hub: a certificate renewal was refused (with the typed reason).",
    ),
    _e(
        "record_sealed",
        "4b9bff01db0041b4bb5b565337c80063",
        6,
        "Booth: a session record was sealed into the spool (record id, kind, size).",
    ),
    _e(
        "record_uploaded",
        "5e0602733d494e61af726086236ebc29",
        6,
        "Booth: the hub acknowledged a verified copy of a record.",
    ),
    _e("record_received", "87f55c039393445ba3821f550be3bc41", 6, "Hub: a sealed record arrived in the inbox."),
    _e(
        "records_exported",
        "44f967afc6c041a88b93a569e6ca6d4e",
        5,
        "Hub: an operator opened records with the records private key.",
    ),
    _e(
        "document_print_failed",
        "bd1a434a4220443eabe8871bd78a873e",
        4,
        "Booth: a verified document could not be printed.",
    ),
    _e("document_printed", "6f3e3ccba58b4e038a55c71f4d333adb", 6, "Booth: a document was printed."),
    _e(
        "prescription_signed",
        "40b4f85ec228477584e4585bf9456c50",
        5,
        "A prescription was signed with the doctor's certificate.",
    ),
    _e(
        "prescription_fetched",
        "dd97e10d84444e499e5be9652c98f27c",
        6,
        "Hub: a patient fetched a prescription with its code.",
    ),
    _e(
        "prescription_verified",
        "04d3793eb4614e03acac0c6498754f47",
        6,
        "Booth: a prescription's signature verified before printing.",
    ),
    _e(
        "prescription_refused",
        "0c11a1bc5f5d4bb1bc510a25183d5fe8",
        3,
        "Booth: a prescription failed verification and was not printed.",
    ),
)

CATALOG: Final[dict[str, EventType]] = {event.name: event for event in _EVENTS}
"""Every event an audit log accepts, by name."""

FORBIDDEN_FIELDS: Final = frozenset(
    {"name", "first_name", "last_name", "surname", "birth_date", "birthdate", "nir", "ssn", "address", "phone"}
)
"""Field names that would mean patient identity: refused outright, whatever the value."""


def event_type(name: str) -> EventType:
    """The catalog entry for ``name``; KeyError for an event not in the catalog."""
    return CATALOG[name]
