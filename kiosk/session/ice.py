"""ICE configuration of the booth's peer: STUN, TURN, relay-only mode.

:func:`build_configuration` turns an :class:`IceConfig` into aiortc's
:class:`~aiortc.RTCConfiguration`. TURN credentials are coturn's "REST API"
time-limited kind (coturn ``use-auth-secret`` + ``static-auth-secret``,
draft-uberti-behave-turn-rest-00): the hub and coturn share a secret, nobody
stores per-booth TURN passwords, and a leaked credential expires by itself.

What aiortc 1.16 / aioice 0.13 can do, checked in their source
(``aiortc/rtcicetransport.py``, ``connection_kwargs``), which this module
enforces instead of letting aiortc silently ignore a setting:

- one STUN server and one TURN server per connection; aiortc keeps the first of
  each and drops the rest without a word, so a config with more is refused;
- ``turn:`` over ``transport=udp`` (the default) or ``tcp``, and ``turns:``
  over ``transport=tcp`` only (TURN over TLS; no DTLS). aioice opens the TLS
  connection with ``ssl=True``, i.e. Python's default context: the TURN
  server's certificate must chain to the system trust store (or
  ``SSL_CERT_FILE``) and name the host in the URL; aiortc offers no way to pass
  our own CA;
- ``iceTransportPolicy="relay"`` *is* supported (aioice ``TransportPolicy.RELAY``
  gathers only relay candidates and hides their related address), so relay-only
  mode needs no candidate filtering of our own;
- ``iceServers=None`` makes aiortc use ``stun:stun.l.google.com:19302``. A
  pharmacy network must not see the booth talk to a third party it was not
  told about, so the configuration built here always carries an explicit list,
  empty when nothing is configured.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy
from aiortc.rtcicetransport import parse_stun_turn_uri

DEFAULT_TURN_TTL = 12 * 3600
"""Lifetime of a TURN credential, seconds: longer than any consultation, short enough to limit a leak."""
REST_API_SEPARATOR = ":"
"""coturn's ``rest-api-separator`` default, between expiry time and user id in the username."""


class Reason(enum.Enum):
    """Why the consultation link failed."""

    CONFIG = "config"
    """The ICE/TURN configuration is unusable."""
    NEGOTIATION = "negotiation"
    """The remote description could not be applied (malformed or incompatible SDP)."""
    SRTP_PROFILE = "srtp_profile"
    """The DTLS handshake did not settle on the one SRTP profile the booth accepts."""
    FINGERPRINT = "fingerprint"
    """The remote DTLS certificate changed, or does not match the signalled fingerprint."""
    CONNECTION = "connection"
    """ICE or DTLS failed: no path to the doctor, or the handshake broke."""
    CLOSED = "closed"
    """The connection was closed."""


class PeerError(Exception):
    """Root of the errors of the booth's peer link (:mod:`kiosk.session.peer`, this module).

    It lives here because this is the lowest module of the link. ``reason``
    says what went wrong; messages are plain language and never carry patient
    data or key material.
    """

    reason: Reason = Reason.CONNECTION

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class IceConfigError(PeerError):
    """The ICE configuration cannot be used as given."""

    reason = Reason.CONFIG


@dataclass(frozen=True)
class TurnCredentials:
    """A username and password for a TURN server."""

    username: str
    """With a shared secret: ``"<expiry unix time>:<user>"``."""
    password: str
    """With a shared secret: base64 of HMAC-SHA1(secret, username)."""


@dataclass(frozen=True)
class IceConfig:
    """Where the booth finds STUN and TURN, and how it may connect.

    Give TURN either a ``turn_secret`` (coturn ``static-auth-secret``; the
    booth derives time-limited credentials) or fixed ``turn_username`` /
    ``turn_password`` (coturn ``lt-cred-mech`` users), not both.
    """

    stun_urls: tuple[str, ...] = ()
    """``stun:host[:port]`` (aiortc uses one; more is refused)."""
    turn_urls: tuple[str, ...] = ()
    """``turn:host[:port][?transport=udp|tcp]`` or ``turns:host[:port][?transport=tcp]`` (one)."""
    turn_secret: str | None = None
    """coturn's shared ``static-auth-secret``, for REST-API credentials."""
    turn_user: str = "booth"
    """User id put in REST-API usernames (an opaque booth id, never a person)."""
    turn_ttl: int = DEFAULT_TURN_TTL
    """Seconds a derived credential stays valid."""
    turn_username: str | None = None
    """Fixed TURN username (instead of ``turn_secret``)."""
    turn_password: str | None = None
    """Fixed TURN password (instead of ``turn_secret``)."""
    relay_only: bool = False
    """Use only TURN relay candidates (locked-down networks; hides the booth's addresses)."""


def turn_rest_credentials(secret: str, *, user: str, now: float, ttl: int = DEFAULT_TURN_TTL) -> TurnCredentials:
    """coturn REST-API credentials valid ``ttl`` seconds from ``now`` (Unix time).

    coturn with ``use-auth-secret`` accepts a username whose leading number is
    an expiry time not yet past, with the password
    ``base64(HMAC-SHA1(static-auth-secret, username))``.
    """
    if ttl <= 0:
        raise IceConfigError("a TURN credential needs a lifetime above zero")
    if REST_API_SEPARATOR in user:
        raise IceConfigError(f"a TURN user id cannot contain {REST_API_SEPARATOR!r}")
    username = f"{int(now) + ttl}{REST_API_SEPARATOR}{user}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode("ascii"))


def _check_url(url: str, schemes: tuple[str, ...]) -> dict[str, object]:
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError:
        raise IceConfigError(f"malformed ICE server URL {url!r}") from None
    if parsed["scheme"] not in schemes:
        raise IceConfigError(f"{url!r} is not a {' or '.join(schemes)} URL")
    if parsed["scheme"] == "stuns":
        raise IceConfigError("aiortc does not support stuns: URLs")
    if parsed["scheme"] == "turn" and parsed["transport"] not in ("udp", "tcp"):
        raise IceConfigError(f"unsupported TURN transport in {url!r} (udp or tcp)")
    if parsed["scheme"] == "turns" and parsed["transport"] != "tcp":
        raise IceConfigError(f"aiortc supports TURN over TLS only on TCP: {url!r}")
    return parsed


def build_configuration(config: IceConfig, *, now: float) -> RTCConfiguration:
    """The aiortc configuration for ``config``; ``now`` (Unix time) dates TURN credentials."""
    if len(config.stun_urls) > 1:
        raise IceConfigError("aiortc uses a single STUN server: configure one")
    if len(config.turn_urls) > 1:
        raise IceConfigError(
            "aiortc uses a single TURN server: configure one (turns: on TCP 443 passes most firewalls)"
        )
    servers: list[RTCIceServer] = []
    for url in config.stun_urls:
        _check_url(url, ("stun", "stuns"))
        servers.append(RTCIceServer(urls=url))
    for url in config.turn_urls:
        _check_url(url, ("turn", "turns"))
        servers.append(RTCIceServer(urls=url, **_turn_credentials(config, now)))
    if config.relay_only and not config.turn_urls:
        raise IceConfigError("relay-only mode needs a TURN server")
    return RTCConfiguration(
        iceServers=servers,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if config.relay_only else RTCIceTransportPolicy.ALL,
        # One transport for everything: one DTLS handshake (one fingerprint to
        # bind, one SRTP profile to check) and one TURN allocation.
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


def _turn_credentials(config: IceConfig, now: float) -> dict[str, str]:
    fixed = config.turn_username is not None or config.turn_password is not None
    if config.turn_secret is not None and fixed:
        raise IceConfigError("give TURN a shared secret or a username and password, not both")
    if config.turn_secret is not None:
        credentials = turn_rest_credentials(config.turn_secret, user=config.turn_user, now=now, ttl=config.turn_ttl)
        return {"username": credentials.username, "credential": credentials.password}
    if config.turn_username is None or config.turn_password is None:
        raise IceConfigError("a TURN server needs a shared secret, or a username and a password")
    return {"username": config.turn_username, "credential": config.turn_password}
