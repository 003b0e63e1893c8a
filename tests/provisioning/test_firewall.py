"""The firewall step: a ruleset nft accepts, and that in a network namespace lets the hub through and nothing else."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.config import BoothConfig, load_config, parse_config
from provisioning.core import Command, EnsurePackages, SystemdUnitState, Target
from provisioning.errors import ConfigError
from provisioning.fields import IPAddress
from provisioning.steps import firewall
from tests.provisioning.policy_support import written

A = ipaddress.ip_address
NAMES = {
    "hub.example.org": (A("198.51.100.10"), A("2001:db8::10")),
    "turn.example.org": (A("203.0.113.5"),),
    "ntp.example.org": (A("192.0.2.123"),),
}


def fake_resolver(host: str) -> tuple[IPAddress, ...]:
    if host not in NAMES:
        raise OSError(2, "Name or service not known")
    return NAMES[host]


def booth_config(**tables: dict[str, object]) -> BoothConfig:
    document: dict[str, dict[str, object]] = {
        "booth": {"id": "booth-0001"},
        "hub": {"host": "hub.example.org", "booth_port": 8444, "https_port": 8443},
        "network": {
            "dns": ["192.0.2.53", "2001:db8::53"],
            "ntp": ["ntp.example.org"],
            "turn": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
        },
    }
    document.update(tables)
    return parse_config(document)


def nft_check(ruleset: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "ruleset.nft"
    path.write_text(ruleset)
    return subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)


def test_ruleset_passes_nft_check(tmp_path: Path) -> None:
    ssh_on = {"enabled": True, "authorized_keys": {"maint": [SSH_KEY]}, "allow_from": ["192.0.2.0/24"]}
    for config in (
        booth_config(),
        booth_config(ssh=ssh_on, firewall={"turn_relay_ports": [49152, 65535], "dhcp": False}),
        booth_config(ssh={**ssh_on, "allow_from": []}, firewall={"log_drops_per_minute": 0}),
    ):
        ruleset = firewall.render_ruleset(firewall.policy_for(config, fake_resolver))
        result = nft_check(ruleset, tmp_path)
        assert result.returncode == 0, result.stderr


def test_default_deny_and_only_the_configured_destinations() -> None:
    ruleset = firewall.render_ruleset(firewall.policy_for(booth_config(), fake_resolver))
    for chain in ("input", "forward", "output"):
        assert f"chain {chain} {{\n\t\ttype filter hook {chain} priority filter; policy drop;" in ruleset
    for element in (
        "192.0.2.53 . udp . 53",
        "192.0.2.53 . tcp . 53",
        "2001:db8::53 . udp . 53",
        "192.0.2.123 . udp . 123",
        "198.51.100.10 . tcp . 8443-8444",  # adjacent ports join: nft refuses overlapping intervals
        "2001:db8::10 . tcp . 8443-8444",
        "203.0.113.5 . udp . 3478",
        "203.0.113.5 . tcp . 5349",
    ):
        assert f"\t\t\t{element},\n" in ruleset
    assert "49152" not in ruleset  # no relay range unless asked for
    assert "tcp dport 22" not in ruleset  # SSH off: nothing comes in
    assert 'log prefix "kiosk-drop-out "' in ruleset
    assert "limit rate 10/minute" in ruleset


def test_relay_range_and_ssh_when_configured() -> None:
    config = booth_config(
        ssh={"enabled": True, "port": 2222, "authorized_keys": {"maint": [SSH_KEY]}, "allow_from": ["192.0.2.0/24"]},
        firewall={"turn_relay_ports": [49152, 65535]},
    )
    ruleset = firewall.render_ruleset(firewall.policy_for(config, fake_resolver))
    assert "203.0.113.5 . udp . 49152-65535" in ruleset
    assert "ip saddr { 192.0.2.0/24 } tcp dport 2222 ct state new accept" in ruleset
    assert "ip6 saddr" not in ruleset.split("chain input")[1].split("chain forward")[0].replace("ip6 saddr fe80", "")
    assert "limit rate over 6/minute" in ruleset


def unreachable(host: str) -> tuple[IPAddress, ...]:
    raise OSError(-3, "Temporary failure in name resolution")


def test_pinned_addresses_are_used_instead_of_dns() -> None:
    pinned: dict[str, object] = {
        "addresses": {"hub.example.org": ["192.0.2.10"], "turn.example.org": ["192.0.2.11", "2001:db8::11"]}
    }
    config = booth_config(firewall=pinned, network={"dns": ["192.0.2.53"], "turn": ["turn:turn.example.org"]})
    ruleset = firewall.render_ruleset(firewall.policy_for(config, unreachable))
    assert "192.0.2.10 . tcp . 8443-8444" in ruleset
    assert "2001:db8::11 . udp . 3478" in ruleset
    with pytest.raises(ConfigError) as raised:
        firewall.parse_settings({"addresses": {"hub.example.org": ["hub"]}})
    assert raised.value.key == "firewall.addresses.hub.example.org[0]"


def test_other_servers_the_configuration_names() -> None:
    allow = [
        {"name": "apt proxy", "host": "apt.example.org", "tcp": [3142]},
        {"name": "syslog", "host": "192.0.2.9", "udp": 514},
    ]
    config = booth_config(firewall={"allow": allow, "addresses": {"apt.example.org": ["192.0.2.8"]}})
    ruleset = firewall.render_ruleset(firewall.policy_for(config, fake_resolver))
    assert "192.0.2.8 . tcp . 3142" in ruleset
    assert "192.0.2.9 . udp . 514" in ruleset
    assert 'comment "apt proxy"' in ruleset


def test_the_example_configuration_renders_offline(tmp_path: Path) -> None:
    config = load_config(Path(__file__).parents[2] / "provisioning" / "example.toml")
    result = nft_check(firewall.render_ruleset(firewall.policy_for(config, unreachable)), tmp_path)
    assert result.returncode == 0, result.stderr


def test_names_that_do_not_resolve_name_their_key() -> None:
    with pytest.raises(ConfigError) as raised:
        firewall.policy_for(booth_config(hub={"host": "nowhere.example.org"}), fake_resolver)
    assert raised.value.key == "hub.host"
    with pytest.raises(ConfigError) as raised:
        firewall.policy_for(booth_config(), lambda host: ())
    assert raised.value.key == "network.ntp"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"dhcp": "yes"}, "firewall.dhcp"),
        ({"log_drops_per_minute": -1}, "firewall.log_drops_per_minute"),
        ({"turn_relay_ports": [65535, 49152]}, "firewall.turn_relay_ports"),
        ({"turn_relay_ports": [1]}, "firewall.turn_relay_ports"),
        ({"allow": ["0.0.0.0/0"]}, "firewall.allow[0]"),
        ({"allow": [{"name": "apt", "host": "mirror.example.org"}]}, "firewall.allow[0]"),
        ({"allow": [{"name": "hub", "host": "a.example.org", "tcp": 80}]}, "firewall.allow[0].name"),
        ({"allow": [{"name": "apt", "host": "not a host", "tcp": 80}]}, "firewall.allow[0].host"),
        ({"allow": [{"name": "apt", "host": "a.example.org", "tcp": [80, 0]}]}, "firewall.allow[0].tcp"),
        ({"addresses": {"hub.example.org": []}}, "firewall.addresses.hub.example.org"),
    ],
)
def test_bad_values_name_their_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        firewall.parse_settings(table)
    assert raised.value.key == key


def test_fingerprint_tracks_the_content() -> None:
    one = firewall.render_ruleset(firewall.policy_for(booth_config(), fake_resolver))
    other = firewall.render_ruleset(firewall.policy_for(booth_config(firewall={"dhcp": False}), fake_resolver))
    mark = one.split('comment "kiosk-provision ', 1)[1].split('"', 1)[0]
    assert mark == firewall.fingerprint(one.replace(f'\tcomment "kiosk-provision {mark}"\n', ""))
    assert mark not in other


def test_step_changes(target: Target) -> None:
    step = firewall.FirewallStep(resolver=fake_resolver)
    changes = step.changes(booth_config(), target)
    assert changes[0] == EnsurePackages(("nftables",))
    assert written(changes, firewall.RULESET).startswith(b"#!/usr/sbin/nft -f\n")
    assert SystemdUnitState("nftables.service", "enabled") in changes
    assert not any(isinstance(c, Command) for c in changes)  # nothing to load in a root filesystem
    live = step.changes(booth_config(), Target(Path("/")))
    load = next(c for c in live if isinstance(c, Command))
    assert load.argv == ("nft", "-f", "/etc/nftables.conf")


@settings(max_examples=20, deadline=None)
@given(
    addresses=st.lists(st.ip_addresses(), min_size=1, max_size=4),
    ports=st.lists(
        st.tuples(st.sampled_from(["tcp", "udp"]), st.integers(1, 65535), st.integers(0, 100)), min_size=1, max_size=3
    ),
)
def test_any_service_renders_a_ruleset_nft_accepts(
    addresses: list[IPAddress], ports: list[tuple[str, int, int]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    spans = tuple((proto, first, min(first + extra, 65535)) for proto, first, extra in ports)
    policy = firewall.FirewallPolicy(services=(firewall.Service("hub", tuple(addresses), spans),))
    result = nft_check(firewall.render_ruleset(policy), tmp_path_factory.mktemp("nft"))
    assert result.returncode == 0, result.stderr


@given(
    st.dictionaries(
        st.sampled_from(["dhcp", "log_drops_per_minute", "turn_relay_ports", "x"]),
        st.none() | st.booleans() | st.integers(-5, 70000) | st.lists(st.integers(-5, 70000), max_size=3),
    )
)
def test_settings_parser_never_fails_untyped(table: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        firewall.parse_settings(table)


SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKl6h6ep288T+sxhpozYAoz1jiCHcNnKKvpbhTdnBfze tech@laptop"


# --- the ruleset at work, in network namespaces ---------------------------------------------------

SERVER = textwrap.dedent(
    """
    import socket, sys, threading
    def tcp(port):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port)); s.listen()
        while True:
            c, _ = s.accept(); c.sendall(b"hello"); c.close()
    def udp(host, port):
        # Bound to each address: a reply from another source would not match the booth's conntrack entry.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((host, port))
        while True:
            data, peer = s.recvfrom(512); s.sendto(data, peer)
    for port in map(int, sys.argv[1].split(",")):
        threading.Thread(target=tcp, args=(port,), daemon=True).start()
    for port in map(int, sys.argv[2].split(",")):
        for host in sys.argv[3:] or ("0.0.0.0",):
            threading.Thread(target=udp, args=(host, port), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    """
)

CLIENT = textwrap.dedent(
    """
    import socket, sys
    proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    source = (sys.argv[4], 0) if len(sys.argv) > 4 else None
    try:
        if proto == "tcp":
            with socket.create_connection((host, port), timeout=2, source_address=source) as s:
                print("open" if s.recv(5) == b"hello" else "odd")
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2); s.sendto(b"ping", (host, port))
                print("open" if s.recvfrom(512)[0] == b"ping" else "odd")
    except OSError as exc:
        print("blocked", type(exc).__name__)
    """
)


WORLD = ("10.77.0.1", "10.77.0.2", "10.77.0.53")


class Lab:
    """Two network namespaces on a veth pair: the booth (10.77.0.10) and the world (10.77.0.1, .2, .53)."""

    def __init__(self) -> None:
        suffix = f"{os.getpid() % 100000}"
        self.booth, self.world = f"kpb{suffix}", f"kpw{suffix}"
        self.veth = (f"kvb{suffix}", f"kvw{suffix}")
        self.server: subprocess.Popen[str] | None = None
        self.booth_server: subprocess.Popen[str] | None = None

    def sh(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)

    def up(self) -> None:
        vb, vw = self.veth
        self.sh("ip", "netns", "add", self.booth)
        self.sh("ip", "netns", "add", self.world)
        self.sh("ip", "link", "add", vb, "type", "veth", "peer", "name", vw)
        self.sh("ip", "link", "set", vb, "netns", self.booth)
        self.sh("ip", "link", "set", vw, "netns", self.world)
        self.sh("ip", "-n", self.booth, "addr", "add", "10.77.0.10/24", "dev", vb)
        for host in ("10.77.0.1/24", "10.77.0.2/24", "10.77.0.53/24"):
            self.sh("ip", "-n", self.world, "addr", "add", host, "dev", vw)
        for ns, dev in ((self.booth, vb), (self.world, vw)):
            self.sh("ip", "-n", ns, "link", "set", dev, "up")
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")

    def serve(self, tcp_ports: str, udp_ports: str) -> None:
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.world, sys.executable, "-c", SERVER, tcp_ports, udp_ports, *WORLD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.server.stdout is not None
        assert self.server.stdout.readline().strip() == "ready"

    def probe(self, proto: str, host: str, port: int, *, source: str = "", inbound: bool = False) -> str:
        """Connect from the booth to the world, or (inbound) from the world to the booth."""
        argv = ["ip", "netns", "exec", self.world if inbound else self.booth, sys.executable, "-c", CLIENT]
        argv += [proto, host, str(port), *([source] if source else [])]
        return self.sh(*argv).stdout.split()[0]

    def serve_in_booth(self, port: int) -> None:
        self.booth_server = subprocess.Popen(
            ["ip", "netns", "exec", self.booth, sys.executable, "-c", SERVER, str(port), "9"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.booth_server.stdout is not None
        assert self.booth_server.stdout.readline().strip() == "ready"

    def down(self) -> None:
        for server in (self.server, self.booth_server):
            if server is not None:
                server.kill()
                server.communicate(timeout=10)
        for ns in (self.booth, self.world):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@pytest.mark.timeout(90)
def test_in_a_namespace_the_hub_dns_and_turn_pass_and_nothing_else(lab: Lab, tmp_path: Path) -> None:
    document = {
        "booth": {"id": "booth-0001"},
        "hub": {"host": "hub.example.org", "booth_port": 8444, "https_port": 8443},
        "network": {"dns": ["10.77.0.53"], "turn": ["turn:10.77.0.1:3478?transport=udp"]},
    }
    config = parse_config(document)
    policy = firewall.policy_for(config, lambda host: (A("10.77.0.1"),) if host == "hub.example.org" else ())
    rules = tmp_path / "nftables.conf"
    rules.write_text(firewall.render_ruleset(policy))
    lab.serve("8443,8444,9000", "53,3478,4000")

    # Before the ruleset, everything is reachable: the probes can tell open from blocked.
    assert lab.probe("tcp", "10.77.0.2", 8444) == "open"
    assert lab.probe("udp", "10.77.0.2", 53) == "open"

    lab.sh("ip", "netns", "exec", lab.booth, "nft", "-f", str(rules))
    assert lab.probe("tcp", "10.77.0.1", 8444) == "open"  # the hub, signalling
    assert lab.probe("tcp", "10.77.0.1", 8443) == "open"  # the hub, HTTPS
    assert lab.probe("udp", "10.77.0.53", 53) == "open"  # the configured resolver
    assert lab.probe("udp", "10.77.0.1", 3478) == "open"  # TURN
    assert lab.probe("tcp", "10.77.0.1", 9000) == "blocked"  # the hub's host, another port
    assert lab.probe("tcp", "10.77.0.2", 8444) == "blocked"  # another host, the hub's port
    assert lab.probe("udp", "10.77.0.2", 53) == "blocked"  # another resolver
    assert lab.probe("udp", "10.77.0.1", 4000) == "blocked"  # no relay range unless configured
    listed = lab.sh("ip", "netns", "exec", lab.booth, "nft", "list", "chain", "inet", "kiosk", "output").stdout
    assert 'log prefix "kiosk-drop-out "' in listed


@pytest.mark.timeout(90)
def test_in_a_namespace_ssh_comes_in_only_from_allow_from_and_rate_limited(lab: Lab, tmp_path: Path) -> None:
    document: dict[str, dict[str, object]] = {
        "booth": {"id": "booth-0001"},
        "hub": {"host": "10.77.0.1"},
        "ssh": {"enabled": True, "authorized_keys": {"maint": [SSH_KEY]}, "allow_from": ["10.77.0.1/32"]},
        "firewall": {"dhcp": False},
    }
    rules = tmp_path / "nftables.conf"
    rules.write_text(firewall.render_ruleset(firewall.policy_for(parse_config(document))))
    lab.serve_in_booth(22)
    assert lab.probe("tcp", "10.77.0.10", 22, source="10.77.0.2", inbound=True) == "open"
    lab.sh("ip", "netns", "exec", lab.booth, "nft", "-f", str(rules))
    assert lab.probe("tcp", "10.77.0.10", 22, source="10.77.0.2", inbound=True) == "blocked"
    assert lab.probe("tcp", "10.77.0.10", 23, source="10.77.0.1", inbound=True) == "blocked"
    # new_connections_per_minute = 6 (the default): the burst passes, then the source waits.
    results = [lab.probe("tcp", "10.77.0.10", 22, source="10.77.0.1", inbound=True) for _ in range(8)]
    assert results[:5] == ["open"] * 5
    assert "blocked" in results[5:]
