"""Hub settings: embedded defaults, a TOML file for production, command-line overrides.

Example ``hub.toml`` (every key optional)::

    state = "/var/lib/kiosk-hub"

    [doctor]
    host = "0.0.0.0"
    port = 8443
    origins = ["https://hub.example.org"]   # the console's public origin(s), for the CSRF/Origin check

    [booth]
    host = "0.0.0.0"
    port = 8444

    [session]
    idle_timeout = 900          # seconds without a request before a doctor's session ends
    absolute_lifetime = 28800   # seconds; at most 12 hours (doctor certificates follow it)
    pending_lifetime = 300      # seconds between the password step and the TOTP step

    [lockout]
    max_failures = 5
    lock_seconds = 900

    [rate_limit]
    burst = 10                  # login attempts per client address, as a token bucket
    per_minute = 10

    [relay]
    max_invalid_per_minute = 20 # invalid signalling messages before a connection is closed
    heartbeat = 30              # seconds between WebSocket pings
    queue_refresh = 30          # seconds between waiting-room refreshes

    [enrolment]                 # POST /api/enrol (hub/enrolment.py), per client address, as a token bucket
    burst = 10
    per_minute = 6

    [ice]                       # what the console's WebRTC peer uses (GET /api/config); default: nothing
    urls = ["stun:turn.example.org:3478", "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:5349?transport=tcp"]   # stun:, turn:, turns: URLs
    turn_secret = "..."         # coturn use-auth-secret / static-auth-secret: the hub hands out REST-API
                                # credentials, username "<expiry>:<account>", base64(HMAC-SHA1(secret, username))
    turn_ttl = 43200            # seconds a TURN credential stays valid
    relay_only = false          # true: iceTransportPolicy "relay" (TURN only; hides the doctor's addresses)

turn: and turns: URLs need ``turn_secret``; ``relay_only`` needs at least one of them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

MAX_SESSION_LIFETIME: Final = 12 * 3600
MAX_TURN_TTL: Final = 7 * 24 * 3600
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST: Final = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
ICE_URL: Final = re.compile(
    rf"(?:stun:{_HOST}(?::(?P<stun_port>\d{{1,5}}))?"
    rf"|turns?:{_HOST}(?::(?P<turn_port>\d{{1,5}}))?(?:\?transport=(?:udp|tcp))?)"
)
"""RFC 7064 ``stun:`` and RFC 7065 ``turn:``/``turns:`` URIs: host (name, IPv4, [IPv6]), optional port and,
for TURN, transport."""


class ConfigError(Exception):
    """A settings file that cannot be used; the message names the key."""


@dataclass(frozen=True)
class HubConfig:
    """Every hub setting, with development defaults."""

    state: Path = Path("hub-state")
    """Directory with the PKI, the SQLite store and (in development) the demo credentials."""
    host: str = "127.0.0.1"
    """Address of the doctor (HTTPS) listener."""
    port: int = 8443
    booth_host: str = "127.0.0.1"
    """Address of the booth (mutual TLS) listener."""
    booth_port: int = 8444
    origins: tuple[str, ...] = ()
    """Origins allowed on state-changing requests; empty means ``https://host:port`` as served."""
    idle_timeout: float = 900.0
    absolute_lifetime: float = 8 * 3600.0
    pending_lifetime: float = 300.0
    max_failures: int = 5
    lock_seconds: float = 900.0
    rate_burst: int = 10
    rate_per_minute: float = 10.0
    max_invalid_per_minute: int = 20
    heartbeat: float = 30.0
    queue_refresh: float = 30.0
    static_dir: Path = field(default_factory=lambda: Path(__file__).parent / "static")
    ice_urls: tuple[str, ...] = ()
    """STUN and TURN server URLs handed to the console (``stun:``, ``turn:``, ``turns:``)."""
    turn_secret: str = field(default="", repr=False)
    """coturn's shared ``static-auth-secret``, for REST-API TURN credentials; empty when no TURN."""
    turn_ttl: int = 12 * 3600
    """Seconds a TURN credential handed to the console stays valid."""
    relay_only: bool = False
    """The console gathers TURN relay candidates only (``iceTransportPolicy: "relay"``)."""
    enrol_burst: int = 10
    enrol_per_minute: float = 6.0

    def __post_init__(self) -> None:
        if not 0 < self.absolute_lifetime <= MAX_SESSION_LIFETIME:
            raise ConfigError("session.absolute_lifetime must be between 1 s and 12 hours")
        for name in (
            "idle_timeout",
            "pending_lifetime",
            "lock_seconds",
            "rate_per_minute",
            "heartbeat",
            "enrol_per_minute",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.max_failures < 1 or self.rate_burst < 1 or self.max_invalid_per_minute < 1 or self.enrol_burst < 1:
            raise ConfigError("max_failures, burst and max_invalid_per_minute must be at least 1")
        self._check_ice()

    def _check_ice(self) -> None:
        for url in self.ice_urls:
            match = ICE_URL.fullmatch(url)
            port = (match["stun_port"] or match["turn_port"]) if match else None
            if match is None or (port is not None and not 1 <= int(port) <= 65535):
                raise ConfigError(f"ice.urls: {url!r} is not a stun:, turn: or turns: URL")
        has_turn = any(not url.startswith("stun:") for url in self.ice_urls)
        if has_turn and not self.turn_secret:
            raise ConfigError("ice.turn_secret is needed for turn: and turns: URLs")
        if self.relay_only and not has_turn:
            raise ConfigError("ice.relay_only needs a turn: or turns: URL")
        if not 0 < self.turn_ttl <= MAX_TURN_TTL:
            raise ConfigError("ice.turn_ttl must be between 1 s and 7 days")

    def allowed_origins(self) -> frozenset[str]:
        """Origins a browser may send on state-changing requests and on the WebSocket upgrade."""
        if self.origins:
            return frozenset(origin.rstrip("/") for origin in self.origins)
        host = f"[{self.host}]" if ":" in self.host else self.host
        served = {f"https://{host}:{self.port}"}
        if self.host in ("127.0.0.1", "::1", "localhost"):
            served.add(f"https://localhost:{self.port}")
        return frozenset(served)


# TOML section.key -> HubConfig field
_KEYS: Final[dict[tuple[str, str], str]] = {
    ("", "state"): "state",
    ("doctor", "host"): "host",
    ("doctor", "port"): "port",
    ("doctor", "origins"): "origins",
    ("doctor", "static_dir"): "static_dir",
    ("booth", "host"): "booth_host",
    ("booth", "port"): "booth_port",
    ("session", "idle_timeout"): "idle_timeout",
    ("session", "absolute_lifetime"): "absolute_lifetime",
    ("session", "pending_lifetime"): "pending_lifetime",
    ("lockout", "max_failures"): "max_failures",
    ("lockout", "lock_seconds"): "lock_seconds",
    ("rate_limit", "burst"): "rate_burst",
    ("rate_limit", "per_minute"): "rate_per_minute",
    ("relay", "max_invalid_per_minute"): "max_invalid_per_minute",
    ("relay", "heartbeat"): "heartbeat",
    ("relay", "queue_refresh"): "queue_refresh",
    ("ice", "urls"): "ice_urls",
    ("ice", "turn_secret"): "turn_secret",
    ("ice", "turn_ttl"): "turn_ttl",
    ("ice", "relay_only"): "relay_only",
    ("enrolment", "burst"): "enrol_burst",
    ("enrolment", "per_minute"): "enrol_per_minute",
}


def load_config(path: Path | None, **overrides: Any) -> HubConfig:
    """Defaults, then the TOML file at ``path`` (if any), then non-None ``overrides``."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        for key, value in document.items():
            if isinstance(value, dict):
                for sub, item in value.items():
                    values[_field(key, sub)] = item
            else:
                values[_field("", key)] = value
    values.update({key: value for key, value in overrides.items() if value is not None})
    return _build(values)


def _field(section: str, key: str) -> str:
    try:
        return _KEYS[(section, key)]
    except KeyError:
        raise ConfigError(f"unknown setting {section + '.' if section else ''}{key}") from None


def _build(values: dict[str, Any]) -> HubConfig:
    defaults = HubConfig()
    converted: dict[str, Any] = {}
    types = {f.name: type(getattr(defaults, f.name)) for f in fields(HubConfig)}
    for name, value in values.items():
        kind = types[name]
        if kind is tuple:
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name} must be a list of strings")
            converted[name] = tuple(value)
        elif issubclass(kind, Path):
            if not isinstance(value, str | Path):
                raise ConfigError(f"{name} must be a path")
            converted[name] = Path(value)
        elif kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false")
            converted[name] = value
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number")
            converted[name] = float(value)
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer")
            converted[name] = value
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{name} must be text")
            converted[name] = value
    return replace(defaults, **converted)
