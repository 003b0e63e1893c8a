"""The booth configuration: one TOML file (``provisioning/example.toml`` documents every key).

``load_config`` checks the tables every step shares (``[booth]``, ``[hub]``,
``[network]``) into a frozen ``BoothConfig``. Each step reads its own table
through ``BoothConfig.table(name)`` (or the raw ``section(name)``) and checks
it into its own frozen dataclass; every bad value raises ``ConfigError``
naming the key, never a ``KeyError`` or a ``TypeError`` from deep inside a step.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from provisioning.errors import ConfigError

__all__ = ["BoothConfig", "ConfigError", "Table", "TurnServer", "load_config", "parse_config"]

_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
BOOTH_ID: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
"""A booth id is a DNS label: it names the booth's certificate and appears in unit environments."""
TURN_URL: Final = re.compile(
    rf"(?P<scheme>turns?):(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>\d{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?"
)
"""RFC 7065 ``turn:``/``turns:`` URIs, as in the hub's ``[ice] urls``."""


def check_host(key: str, value: object) -> str:
    """A host name or an IP address literal (no brackets)."""
    if not isinstance(value, str):
        raise ConfigError(key, "must be a host name or an IP address")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if len(value) > 253 or HOST_NAME.fullmatch(value) is None:
            raise ConfigError(key, "must be a host name or an IP address") from None
    return value


def check_port(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(key, "must be a port number (1-65535)")
    return value


@dataclass(frozen=True)
class TurnServer:
    """A TURN server the booth may reach (the firewall opens it)."""

    host: str
    port: int
    transport: str
    """``udp`` or ``tcp``."""
    tls: bool
    """``turns:`` (TLS over TCP)."""

    @classmethod
    def parse(cls, key: str, url: object) -> TurnServer:
        match = TURN_URL.fullmatch(url) if isinstance(url, str) else None
        if match is None:
            raise ConfigError(key, "must be a turn: or turns: URL, e.g. turn:turn.example.org:3478?transport=udp")
        tls = match["scheme"] == "turns"
        port = int(match["port"]) if match["port"] else (5349 if tls else 3478)
        check_port(key, port)
        transport = match["transport"] or ("tcp" if tls else "udp")
        if tls and transport != "tcp":
            raise ConfigError(key, "turns: runs over TCP")
        return cls(host=match["host"].strip("[]"), port=port, transport=transport, tls=tls)


class Table:
    """One TOML table, read key by key with checks; ``done()`` refuses keys nobody read (typos)."""

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        self.name = name
        self._values = dict(values)
        self._read: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def _get(self, key: str, default: object) -> object:
        self._read.add(key)
        value: object = self._values.get(key, default)
        return value

    def has(self, key: str) -> bool:
        return key in self._values

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(key), "must be true or false")
        return value

    def integer(self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(key), "must be an integer")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ConfigError(self.key(key), f"must be between {minimum} and {maximum}")
        return value

    def string(self, key: str, default: str, *, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ConfigError(self.key(key), "must be a string")
        if pattern is not None and pattern.fullmatch(value) is None:
            raise ConfigError(self.key(key), f"must be {what or 'of the form ' + pattern.pattern}")
        return value

    def strings(
        self, key: str, default: tuple[str, ...] = (), *, pattern: re.Pattern[str] | None = None, what: str = ""
    ) -> tuple[str, ...]:
        value = self._get(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ConfigError(self.key(key), "must be a list of strings")
        if pattern is not None:
            for item in value:
                if pattern.fullmatch(item) is None:
                    raise ConfigError(self.key(key), f"{item!r} is not {what or 'of the form ' + pattern.pattern}")
        return tuple(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._get(key, default)
        if value not in choices:
            raise ConfigError(self.key(key), f"must be one of {', '.join(choices)}")
        assert isinstance(value, str)
        return value

    def raw(self, key: str, default: object = None) -> object:
        return self._get(key, default)

    def done(self) -> None:
        unknown = sorted(set(self._values) - self._read)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown setting")


@dataclass(frozen=True)
class BoothConfig:
    """The settings every step shares, and each step's own raw table."""

    booth_id: str
    hub_host: str
    hub_booth_port: int = 8444
    """The hub's mutual-TLS WebSocket listener (signalling)."""
    hub_https_port: int = 8443
    """The hub's HTTPS listener (enrolment, records inbox)."""
    dns_servers: tuple[str, ...] = ()
    """Resolvers (IP addresses) the booth may ask; the firewall allows only these."""
    ntp_servers: tuple[str, ...] = ()
    """NTP servers (names or addresses) for systemd-timesyncd; the firewall allows NTP to them."""
    turn_servers: tuple[TurnServer, ...] = ()
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    source: Path | None = None
    """The file the configuration came from, if any."""

    @property
    def hub_wss_url(self) -> str:
        return f"wss://{_url_host(self.hub_host)}:{self.hub_booth_port}/ws"

    @property
    def hub_https_url(self) -> str:
        return f"https://{_url_host(self.hub_host)}:{self.hub_https_port}"

    def section(self, name: str) -> dict[str, Any]:
        """The raw table ``[name]`` (empty when absent): a step checks it itself."""
        return dict(self.sections.get(name, {}))

    def table(self, name: str) -> Table:
        """The table ``[name]`` with checked accessors."""
        return Table(name, self.sections.get(name, {}))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_COMMON: Final = ("booth", "hub", "network")


def parse_config(document: Mapping[str, Any], source: Path | None = None) -> BoothConfig:
    """Check the common tables of a parsed TOML document; keep every table for the steps."""
    for name, value in document.items():
        if not isinstance(value, dict):
            raise ConfigError(name, "must be a table ([name])")
    booth = Table("booth", document.get("booth", {}))
    if not booth.has("id"):
        raise ConfigError("booth.id", "is required")
    booth_id = booth.string("id", "", pattern=BOOTH_ID, what="a lower-case DNS label, e.g. booth-0001")
    booth.done()
    hub = Table("hub", document.get("hub", {}))
    if not hub.has("host"):
        raise ConfigError("hub.host", "is required")
    hub_host = check_host("hub.host", hub.raw("host"))
    booth_port = check_port("hub.booth_port", hub.raw("booth_port", 8444))
    https_port = check_port("hub.https_port", hub.raw("https_port", 8443))
    hub.done()
    network = Table("network", document.get("network", {}))
    dns = network.strings("dns")
    for address in dns:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError("network.dns", f"{address!r} is not an IP address") from None
    ntp = tuple(check_host("network.ntp", host) for host in network.strings("ntp"))
    turn = tuple(TurnServer.parse("network.turn", url) for url in network.strings("turn"))
    network.done()
    return BoothConfig(
        booth_id=booth_id,
        hub_host=hub_host,
        hub_booth_port=booth_port,
        hub_https_port=https_port,
        dns_servers=dns,
        ntp_servers=ntp,
        turn_servers=turn,
        sections={name: value for name, value in document.items() if name not in _COMMON},
        source=source,
    )


def load_config(path: Path) -> BoothConfig:
    """Read and check the booth configuration at ``path``."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read {path}: {exc.__class__.__name__}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from exc
    return parse_config(document, source=path)
