"""Firewall: nftables, default deny in, out and forward.

A booth talks to very few machines: its DNS and NTP servers, the hub (booth
WebSocket, HTTPS for records and enrolment) and the TURN servers its media go
through. Everything else is dropped and logged, at a limited rate so a flood
cannot fill the journal. With this policy the booth's media always go through
TURN (no direct peer-to-peer path is open), which is what relay-only mode asks.

Host names are resolved **at provisioning time** and written as addresses into
named sets (``hub_v4``, ``turn_v6``...). The ruleset loads at boot before the
network is up (``nftables.service`` runs before ``network-pre.target``), when no
name can be resolved; nft's own load-time resolution would fail there and
leave the booth with no firewall at all. When a server's address changes,
``kiosk-provision --check`` reports the ruleset as drift and a new run
rewrites it. DNS servers must be given as addresses (a name would need DNS).

Also allowed, because the network does not work without them: loopback,
replies to the booth's own connections (conntrack established/related, which
covers the ICMP errors path MTU discovery relies on, RFC 1191/8201), explicit
ICMPv6 packet-too-big and neighbour discovery (RFC 4890), DHCP and DHCPv6
when ``firewall.dhcp`` is on, and SSH in from ``ssh.allow_from`` when
maintenance access is enabled, limited per source address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from provisioning.config import BoothConfig, check_host
from provisioning.core import Change, Command, EnsurePackages, SystemdUnitState, Target, WriteFile
from provisioning.fields import (
    IPAddress,
    IPNetwork,
    address,
    check_keys,
    fail,
    get_bool,
    get_int,
    get_list,
    get_str,
    port,
    ports,
)
from provisioning.steps import ssh

RULESET: Final = "/etc/nftables.conf"
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,39}$")
TABLE: Final = "kiosk"

Resolver = Callable[[str], tuple[IPAddress, ...]]


@dataclass(frozen=True)
class Service:
    """A remote service the booth may open connections to: addresses and (protocol, first, last port)."""

    name: str
    addresses: tuple[IPAddress, ...]
    ports: tuple[tuple[str, int, int], ...]
    """("tcp" | "udp", first port, last port); a single port has first == last."""


@dataclass(frozen=True)
class SshAccess:
    """Inbound maintenance SSH, when the ssh step enables it."""

    port: int
    sources: tuple[IPNetwork, ...] = ()
    """Empty: any source address."""
    per_minute: int = 6


@dataclass(frozen=True)
class FirewallSettings:
    """The ``[firewall]`` table."""

    dhcp: bool = True
    """Allow DHCP (udp 68->67) and DHCPv6 (udp 546->547): most booths get their address this way."""
    log_drops_per_minute: int = 10
    """How many dropped packets per minute reach the journal (each direction); 0 logs none."""
    turn_relay_ports: tuple[int, int] | None = None
    """UDP port range of the TURN servers' relays, opened too when set: only needed when the booth
    may send straight to a doctor's relayed candidate instead of through its own allocation."""
    addresses: tuple[tuple[str, tuple[IPAddress, ...]], ...] = ()
    """Host names pinned to addresses (not resolved): provisioning offline, or a hub behind fixed addresses."""
    allow: tuple[ExtraService, ...] = ()
    """Other servers the booth needs, e.g. the apt mirror or proxy unattended upgrades fetch from."""


@dataclass(frozen=True)
class ExtraService:
    """One ``[[firewall.allow]]`` entry."""

    name: str
    host: str
    tcp: tuple[int, ...] = ()
    udp: tuple[int, ...] = ()


@dataclass(frozen=True)
class FirewallPolicy:
    """Everything the ruleset is rendered from."""

    services: tuple[Service, ...]
    ssh: SshAccess | None = None
    settings: FirewallSettings = field(default_factory=FirewallSettings)


def parse_settings(table: Mapping[str, Any]) -> FirewallSettings:
    check_keys(table, {"dhcp", "log_drops_per_minute", "turn_relay_ports", "addresses", "allow"}, "firewall")
    extra = []
    for i, entry in enumerate(get_list(table, "allow", "firewall")):
        where = f"firewall.allow[{i}]"
        if not isinstance(entry, dict):
            raise fail(where, "must be a table with name, host and tcp and/or udp ports")
        check_keys(entry, {"name", "host", "tcp", "udp"}, where)
        name = get_str(entry, "name", where)
        if not _NAME.match(name) or name.lower() in ("dns", "ntp", "hub") or name.lower().startswith("turn "):
            raise fail(f"{where}.name", "must be a short label (letters, digits, '-', '_', ' ') not used by the step")
        host = check_host(f"{where}.host", entry.get("host"))
        tcp = ports(entry["tcp"], f"{where}.tcp") if "tcp" in entry else ()
        udp = ports(entry["udp"], f"{where}.udp") if "udp" in entry else ()
        if not tcp and not udp:
            raise fail(where, "needs tcp or udp ports")
        extra.append(ExtraService(name, host, tcp, udp))
    pinned = table.get("addresses", {})
    if not isinstance(pinned, dict):
        raise fail("firewall.addresses", 'must be a table of host = ["address", ...]')
    addresses = []
    for host, values in sorted(pinned.items()):
        key = f"firewall.addresses.{host}"
        if not isinstance(values, list) or not values:
            raise fail(key, "must be a non-empty list of IP addresses")
        addresses.append((host, tuple(address(value, f"{key}[{i}]") for i, value in enumerate(values))))
    relay = table.get("turn_relay_ports")
    relay_range: tuple[int, int] | None = None
    if relay is not None:
        key = "firewall.turn_relay_ports"
        if not isinstance(relay, list) or len(relay) != 2:
            raise fail(key, "must be [first, last], e.g. [49152, 65535]")
        relay_range = (port(relay[0], key), port(relay[1], key))
        if relay_range[0] > relay_range[1]:
            raise fail(key, "the first port must not be above the last")
    return FirewallSettings(
        dhcp=get_bool(table, "dhcp", "firewall", True),
        log_drops_per_minute=get_int(table, "log_drops_per_minute", "firewall", 10, 0, 600),
        turn_relay_ports=relay_range,
        addresses=tuple(addresses),
        allow=tuple(extra),
    )


def system_resolver(host: str) -> tuple[IPAddress, ...]:
    """Every address ``host`` resolves to now (IPv4 and IPv6), in a stable order."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    found = {ipaddress.ip_address(info[4][0]) for info in infos}
    return tuple(sorted(found, key=lambda a: (a.version, int(a))))


def resolve(host: str, key: str, resolver: Resolver = system_resolver) -> tuple[IPAddress, ...]:
    """An address literal as is; a name through ``resolver``, refusing a name that resolves to nothing."""
    try:
        return (ipaddress.ip_address(host.strip("[]")),)
    except ValueError:
        pass
    try:
        addresses = resolver(host)
    except OSError as exc:
        raise fail(key, f"cannot resolve {host!r} at provisioning time: {exc.strerror or exc}") from None
    if not addresses:
        raise fail(key, f"{host!r} resolves to no address")
    return addresses


def _merged(ports: Iterable[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Overlapping or adjacent port spans of one protocol joined: nft refuses overlapping interval elements."""
    out: list[tuple[str, int, int]] = []
    for proto, first, last in sorted(ports):
        if out and out[-1][0] == proto and first <= out[-1][2] + 1:
            out[-1] = (proto, out[-1][1], max(last, out[-1][2]))
        else:
            out.append((proto, first, last))
    return out


def _elements(addresses: Iterable[IPAddress], ports: Iterable[tuple[str, int, int]], version: int) -> list[str]:
    spans = _merged(ports)
    out = []
    for addr in sorted({a for a in addresses if a.version == version}, key=int):
        for proto, first, last in spans:
            span = str(first) if first == last else f"{first}-{last}"
            out.append(f"{addr} . {proto} . {span}")
    return out


def _set(name: str, version: int, elements: list[str]) -> list[str]:
    kind = "ipv4_addr" if version == 4 else "ipv6_addr"
    lines = [f"\tset {name} {{", f"\t\ttype {kind} . inet_proto . inet_service", "\t\tflags interval"]
    if elements:
        lines.append("\t\telements = {")
        lines.extend(f"\t\t\t{element}," for element in elements)
        lines.append("\t\t}")
    lines.append("\t}")
    return lines


def _log(prefix: str, per_minute: int) -> list[str]:
    if per_minute == 0:
        return []
    return [f'\t\tlimit rate {per_minute}/minute burst 5 packets log prefix "{prefix} " level warn']


def _set_name(service: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in service.lower())


def policy_for(config: BoothConfig, resolver: Resolver = system_resolver) -> FirewallPolicy:
    """The services a booth with this configuration talks to, names resolved now."""
    settings = parse_settings(config.section("firewall"))
    pinned = dict(settings.addresses)

    def lookup(host: str) -> tuple[IPAddress, ...]:
        return pinned[host] if host in pinned else resolver(host)

    dns = tuple(resolve(server, "network.dns") for server in config.dns_servers)
    services = [
        Service("dns", _flat(dns), (("udp", 53, 53), ("tcp", 53, 53))),
        Service("ntp", _flat(resolve(s, "network.ntp", lookup) for s in config.ntp_servers), (("udp", 123, 123),)),
        Service(
            "hub",
            resolve(config.hub_host, "hub.host", lookup),
            tuple(("tcp", p, p) for p in sorted({config.hub_booth_port, config.hub_https_port})),
        ),
    ]
    turn_hosts = sorted({server.host for server in config.turn_servers})
    for host in turn_hosts:
        listening = {(s.transport, s.port, s.port) for s in config.turn_servers if s.host == host}
        if settings.turn_relay_ports is not None:
            listening.add(("udp", *settings.turn_relay_ports))
        services.append(Service(f"turn {host}", resolve(host, "network.turn", lookup), tuple(sorted(listening))))
    for entry in settings.allow:
        spans = tuple(("tcp", p, p) for p in entry.tcp) + tuple(("udp", p, p) for p in entry.udp)
        services.append(Service(entry.name, resolve(entry.host, "firewall.allow", lookup), spans))
    access = ssh.parse_settings(config.section("ssh"))
    ssh_access = (
        SshAccess(access.port, access.allow_from, access.new_connections_per_minute) if access.enabled else None
    )
    return FirewallPolicy(services=tuple(services), ssh=ssh_access, settings=settings)


def _flat(groups: Iterable[tuple[IPAddress, ...]]) -> tuple[IPAddress, ...]:
    return tuple(sorted({a for group in groups for a in group}, key=lambda a: (a.version, int(a))))


def fingerprint(ruleset: str) -> str:
    """What the table's comment carries, so a running booth can tell whether the loaded ruleset is this one."""
    return hashlib.sha256(ruleset.encode()).hexdigest()[:16]


def render_ruleset(policy: FirewallPolicy) -> str:
    """The whole nftables ruleset (``/etc/nftables.conf``), checked with ``nft -c -f``.

    The table's comment is the fingerprint of the rest of the file (:func:`fingerprint`).
    """
    body = _render(policy)
    marker = f"table inet {TABLE} {{\n"
    head, _, tail = body.partition(marker)
    return f'{head}{marker}\tcomment "kiosk-provision {fingerprint(body)}"\n{tail}'


def _render(policy: FirewallPolicy) -> str:
    names = [_set_name(s.name) for s in policy.services]
    if len(set(names)) != len(names):
        raise fail("firewall", "two services share a name")
    out = [
        "#!/usr/sbin/nft -f",
        "# Rendered by kiosk-provision (step firewall). Do not edit: `kiosk-provision --check` reports drift.",
        "# Default deny in, out and forward; host names were resolved when this file was rendered.",
        "flush ruleset",
        "",
        f"table inet {TABLE} {{",
    ]
    for service, name in zip(policy.services, names, strict=True):
        out.append(f"\t# {service.name}")
        for version in (4, 6):
            out.extend(_set(f"{name}_v{version}", version, _elements(service.addresses, service.ports, version)))
    ssh = policy.ssh
    if ssh is not None:
        for version in (4, 6):
            kind = "ipv4_addr" if version == 4 else "ipv6_addr"
            # Per-source counters for the SSH rate limit; entries expire after a minute of silence.
            out += [
                f"\tset ssh_meter_v{version} {{",
                f"\t\ttype {kind}",
                "\t\tsize 4096",
                "\t\tflags dynamic, timeout",
                "\t\ttimeout 1m",
                "\t}",
            ]
    out += [
        "",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        '\t\tiif "lo" accept',
        "\t\tct state invalid drop",
        "\t\tct state established,related accept",
        "\t\t# RFC 4890: path MTU and neighbour discovery; ND only from the link (hop limit 255).",
        "\t\ticmpv6 type { packet-too-big, destination-unreachable, time-exceeded, parameter-problem } accept",
        "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } ip6 hoplimit 255 accept",
        "\t\ticmp type { destination-unreachable, time-exceeded } accept",
    ]
    if policy.settings.dhcp:
        out += [
            "\t\tudp sport 67 udp dport 68 accept",
            "\t\tip6 saddr fe80::/10 udp sport 547 udp dport 546 accept",
        ]
    if ssh is not None:
        v4 = sorted(str(n) for n in ssh.sources if n.version == 4)
        v6 = sorted(str(n) for n in ssh.sources if n.version == 6)
        rate = f"limit rate over {ssh.per_minute}/minute burst {ssh.per_minute} packets"
        for family, meter, nets in (("ip", "ssh_meter_v4", v4), ("ip6", "ssh_meter_v6", v6)):
            if ssh.sources and not nets:
                continue
            match = f"{family} saddr {{ {', '.join(nets)} }} " if nets else f"meta nfproto {_nfproto(family)} "
            out += [
                f"\t\t{match}tcp dport {ssh.port} ct state new update @{meter} {{ {family} saddr {rate} }} drop",
                f"\t\t{match}tcp dport {ssh.port} ct state new accept",
            ]
    out += _log("kiosk-drop-in", policy.settings.log_drops_per_minute)
    out += [
        "\t}",
        "",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy drop;",
        *_log("kiosk-drop-fwd", policy.settings.log_drops_per_minute),
        "\t}",
        "",
        "\tchain output {",
        "\t\ttype filter hook output priority filter; policy drop;",
        '\t\toif "lo" accept',
        "\t\tct state invalid drop",
        "\t\tct state established,related accept",
        "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld2-listener-report } accept",
        "\t\ticmpv6 type { packet-too-big, destination-unreachable, time-exceeded, parameter-problem } accept",
        "\t\ticmp type { destination-unreachable, time-exceeded } accept",
    ]
    if policy.settings.dhcp:
        out += [
            "\t\tudp sport 68 udp dport 67 accept",
            "\t\tudp sport 546 udp dport 547 accept",
        ]
    for service, name in zip(policy.services, names, strict=True):
        out += [
            f'\t\tip daddr . meta l4proto . th dport @{name}_v4 counter accept comment "{_comment(service.name)}"',
            f'\t\tip6 daddr . meta l4proto . th dport @{name}_v6 counter accept comment "{_comment(service.name)}"',
        ]
    out += _log("kiosk-drop-out", policy.settings.log_drops_per_minute)
    out += [
        "\t\t# Fail fast for the booth's own programs instead of a connection time-out.",
        "\t\tmeta l4proto tcp reject with tcp reset",
        "\t\treject with icmpx type admin-prohibited",
        "\t}",
        "}",
        "",
    ]
    return "\n".join(out)


def _nfproto(family: str) -> str:
    return "ipv4" if family == "ip" else "ipv6"


def _comment(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in " .:-_")[:120]


@dataclass(frozen=True)
class FirewallStep:
    """The ``firewall`` step: nftables installed, the ruleset written, enabled at boot, loaded when live."""

    name: str = "firewall"
    description: str = "nftables: default deny in and out; DNS, NTP, the hub and TURN only"
    resolver: Resolver = system_resolver

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        ruleset = render_ruleset(policy_for(config, self.resolver))
        changes: list[Change] = [
            EnsurePackages(("nftables",)),
            WriteFile(RULESET, ruleset.encode(), mode=0o755),
            SystemdUnitState("nftables.service", "enabled"),
        ]
        if not target.is_chroot:
            # On a running booth, load it now; the table's comment tells whether this very ruleset is loaded.
            mark = ruleset.split('comment "', 1)[1].split('"', 1)[0]
            changes.append(
                Command(
                    ("nft", "-f", RULESET),
                    ("sh", "-c", f'nft list table inet {TABLE} 2>/dev/null | grep -qF "{mark}"'),
                    f"load {RULESET}",
                )
            )
        return changes


STEP = FirewallStep()
