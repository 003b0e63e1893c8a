"""SSH: off on a booth, or key-only with hardened algorithms while a technician maintains it.

Off (the default) masks ``ssh.service`` and ``ssh.socket`` and removes our
configuration and keys, so nothing listens even if ``openssh-server`` is
installed. On, it writes a complete ``/etc/ssh/sshd_config`` (no ``Include``:
the file tested with ``sshd -t`` is the whole effective configuration), the
authorized keys under ``/etc/ssh/authorized_keys/USER`` (root-owned, so a
logged-in user cannot add a key for later), an ed25519 host key, and the
maintenance users. The firewall step opens the port, rate-limited, from
``allow_from`` only.

Algorithm choice follows the ANSSI SSH guide (R8-R13) and ssh-audit's
hardening guide for OpenSSH 9.2 (Debian 12): post-quantum hybrid and X25519
key exchange, AEAD ciphers, encrypt-then-MAC, ed25519 keys (plain or FIDO).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from provisioning.config import BoothConfig
from provisioning.core import (
    Change,
    Command,
    EnsureDirectory,
    EnsurePackages,
    EnsureUser,
    RemovePath,
    SystemdUnitState,
    Target,
    WriteFile,
)
from provisioning.fields import (
    IPNetwork,
    check_keys,
    fail,
    get_bool,
    get_int,
    get_list,
    network,
    port,
)

SSHD_CONFIG: Final = "/etc/ssh/sshd_config"
HOST_KEY: Final = "/etc/ssh/ssh_host_ed25519_key"
AUTHORIZED_KEYS_DIR: Final = "/etc/ssh/authorized_keys"

KEX: Final = (
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
)
CIPHERS: Final = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
)
MACS: Final = (
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
)
HOST_KEY_ALGORITHMS: Final = ("ssh-ed25519",)
KEY_TYPES: Final = ("ssh-ed25519", "sk-ssh-ed25519@openssh.com")
"""User keys accepted: ed25519, in a file or on a FIDO2 security key."""

USER_NAME: Final = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_COMMENT: Final = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,199}$")


@dataclass(frozen=True)
class AuthorizedKey:
    """One public key line, checked: a known type whose blob names the same type."""

    kind: str
    blob: str
    comment: str = ""

    def line(self) -> str:
        return " ".join(part for part in (self.kind, self.blob, self.comment) if part)


@dataclass(frozen=True)
class SshSettings:
    """The ``[ssh]`` table."""

    enabled: bool = False
    port: int = 22
    keys: tuple[tuple[str, tuple[AuthorizedKey, ...]], ...] = ()
    """(user, keys) pairs, sorted by user: the maintenance accounts and who may use them."""
    allow_from: tuple[IPNetwork, ...] = ()
    """Networks a technician may connect from; empty means any source."""
    groups: tuple[str, ...] = ("adm", "systemd-journal")
    """Supplementary groups of the maintenance users: reading the logs is what maintenance needs most."""
    max_auth_tries: int = 3
    login_grace_time: int = 20
    new_connections_per_minute: int = 6
    """Per source address, enforced by the firewall before sshd sees the connection."""

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(user for user, _ in self.keys)


def _ssh_strings(raw: bytes) -> list[bytes] | None:
    """Split a blob into RFC 4251 section 5 strings (uint32 length, then the bytes), or None if malformed."""
    out: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            return None
        length = int.from_bytes(raw[offset : offset + 4], "big")
        offset += 4
        if offset + length > len(raw):
            return None
        out.append(raw[offset : offset + length])
        offset += length
    return out


def _well_formed(kind: str, raw: bytes) -> bool:
    # RFC 8709 section 4: ssh-ed25519 is the type and a 32-byte key; OpenSSH's
    # PROTOCOL.u2f adds the FIDO application ("ssh:...") for sk-ssh-ed25519.
    strings = _ssh_strings(raw)
    if strings is None or not strings or strings[0] != kind.encode():
        return False
    if kind == "ssh-ed25519":
        return len(strings) == 2 and len(strings[1]) == 32
    return len(strings) == 3 and len(strings[1]) == 32 and strings[2].startswith(b"ssh:")


def parse_key(line: object, key: str) -> AuthorizedKey:
    """Check one ``authorized_keys`` line; options (``command=``, ``from=``) are refused on purpose."""
    if not isinstance(line, str):
        raise fail(key, "must be a public key line as a string")
    parts = line.strip().split(" ", 2)
    if len(parts) < 2:
        raise fail(key, "must read 'TYPE BASE64 [COMMENT]'")
    kind, blob = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else ""
    if kind not in KEY_TYPES:
        raise fail(key, f"key type must be one of {', '.join(KEY_TYPES)} (options before the type are not allowed)")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise fail(key, "the key is not valid base64") from None
    if not _well_formed(kind, raw):
        raise fail(key, "the key's data does not match its type")
    if comment and not _COMMENT.match(comment):
        raise fail(key, "the comment must be printable ASCII on one line")
    return AuthorizedKey(kind, blob, comment)


def parse_settings(table: Mapping[str, Any]) -> SshSettings:
    """Read the ``[ssh]`` table; a missing table means SSH off."""
    check_keys(
        table,
        {
            "enabled",
            "port",
            "authorized_keys",
            "allow_from",
            "groups",
            "max_auth_tries",
            "login_grace_time",
            "new_connections_per_minute",
        },
        "ssh",
    )
    enabled = get_bool(table, "enabled", "ssh", False)
    raw_keys = table.get("authorized_keys", {})
    if not isinstance(raw_keys, dict):
        raise fail("ssh.authorized_keys", "must be a table of user = [key lines]")
    keys: list[tuple[str, tuple[AuthorizedKey, ...]]] = []
    for user, lines in sorted(raw_keys.items()):
        where = f"ssh.authorized_keys.{user}"
        if not USER_NAME.match(user):
            raise fail(where, "is not a valid user name")
        if not isinstance(lines, list) or not lines:
            raise fail(where, "must be a non-empty list of public key lines")
        keys.append((user, tuple(parse_key(line, f"{where}[{i}]") for i, line in enumerate(lines))))
    if enabled and not keys:
        raise fail("ssh.authorized_keys", "SSH is enabled but no user has a key: nobody could log in")
    allow_from = tuple(
        network(item, f"ssh.allow_from[{i}]") for i, item in enumerate(get_list(table, "allow_from", "ssh"))
    )
    groups = get_list(table, "groups", "ssh") if "groups" in table else list(SshSettings.groups)
    for i, group in enumerate(groups):
        if not isinstance(group, str) or not USER_NAME.match(group):
            raise fail(f"ssh.groups[{i}]", "is not a valid group name")
    return SshSettings(
        enabled=enabled,
        groups=tuple(groups),
        port=port(table.get("port", 22), "ssh.port"),
        keys=tuple(keys),
        allow_from=allow_from,
        max_auth_tries=get_int(table, "max_auth_tries", "ssh", 3, 1, 6),
        login_grace_time=get_int(table, "login_grace_time", "ssh", 20, 5, 120),
        new_connections_per_minute=get_int(table, "new_connections_per_minute", "ssh", 6, 1, 60),
    )


def render_sshd_config(
    settings: SshSettings,
    *,
    host_key: str = HOST_KEY,
    authorized_keys_dir: str = AUTHORIZED_KEYS_DIR,
    listen_address: str | None = None,
) -> str:
    """The whole ``sshd_config`` for maintenance access (paths and address are parameters for tests)."""
    if settings.allow_from:
        allow = " ".join(f"{user}@{net.with_prefixlen}" for user in settings.users for net in settings.allow_from)
    else:
        allow = " ".join(settings.users)
    # Root may only ever log in with a key, and only when a key is configured for it.
    root_login = "prohibit-password" if "root" in settings.users else "no"
    lines = [
        "# Rendered by kiosk-provision (step ssh) from the [ssh] table of the booth configuration.",
        "# Do not edit: `kiosk-provision --check` reports any change as drift.",
        f"Port {settings.port}",
        *([f"ListenAddress {listen_address}"] if listen_address else []),
        "AddressFamily any",
        f"HostKey {host_key}",
        "",
        "# Algorithms (ANSSI SSH guide; OpenSSH 9.2): hybrid post-quantum and X25519 key",
        "# exchange, AEAD ciphers, encrypt-then-MAC only, ed25519 keys.",
        f"KexAlgorithms {','.join(KEX)}",
        f"Ciphers {','.join(CIPHERS)}",
        f"MACs {','.join(MACS)}",
        f"HostKeyAlgorithms {','.join(HOST_KEY_ALGORITHMS)}",
        f"PubkeyAcceptedAlgorithms {','.join(KEY_TYPES)}",
        "",
        "# Keys only, from root-owned files the user cannot change.",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "IgnoreRhosts yes",
        "PermitEmptyPasswords no",
        f"PermitRootLogin {root_login}",
        f"AuthorizedKeysFile {authorized_keys_dir}/%u",
        "AuthorizedPrincipalsFile none",
        "StrictModes yes",
        "UsePAM yes",
        f"AllowUsers {allow}",
        "",
        "# Rate limits: few attempts, short grace, few unauthenticated connections",
        "# (the firewall also limits new connections per source).",
        f"MaxAuthTries {settings.max_auth_tries}",
        f"LoginGraceTime {settings.login_grace_time}",
        "MaxStartups 3:50:10",
        "PerSourceMaxStartups 2",
        "PerSourceNetBlockSize 32:64",
        "MaxSessions 2",
        "ClientAliveInterval 300",
        "ClientAliveCountMax 2",
        "",
        "# Nothing but a shell and file copy: no forwarding, tunnels, agent or X11.",
        "DisableForwarding yes",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "AllowStreamLocalForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "GatewayPorts no",
        "PermitUserEnvironment no",
        "PermitUserRC no",
        "Compression no",
        "TCPKeepAlive no",
        "UseDNS no",
        "PrintMotd no",
        "Banner none",
        "",
        "# VERBOSE logs each key's fingerprint: who connected is traceable.",
        "SyslogFacility AUTH",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp -l INFO",
        "",
    ]
    return "\n".join(lines)


def render_authorized_keys(keys: tuple[AuthorizedKey, ...]) -> str:
    return "".join(key.line() + "\n" for key in keys)


@dataclass(frozen=True)
class SshStep:
    """The ``ssh`` step: masked by default, hardened key-only maintenance access when enabled."""

    name: str = "ssh"
    description: str = "SSH off, or key-only with hardened algorithms for maintenance"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse_settings(config.section("ssh"))
        if not settings.enabled:
            # Masked, not just disabled: nothing (a package upgrade, a socket) can start it.
            return [
                SystemdUnitState("ssh.service", "masked"),
                SystemdUnitState("ssh.socket", "masked"),
                RemovePath(AUTHORIZED_KEYS_DIR),
            ]
        changes: list[Change] = [EnsurePackages(("openssh-server",))]
        for user in settings.users:
            if user != "root":
                home = f"/home/{user}"
                changes += [
                    EnsureUser(user, home=home, shell="/bin/bash", groups=settings.groups),
                    EnsureDirectory(home, mode=0o700, owner=user, group=user),
                ]
        changes.append(EnsureDirectory(AUTHORIZED_KEYS_DIR, mode=0o755))
        keys_dir = target.path(AUTHORIZED_KEYS_DIR)
        if keys_dir.is_dir():
            # Keys of users taken out of the configuration go, or they could still log in.
            stale = sorted(p.name for p in keys_dir.iterdir() if p.name not in settings.users)
            changes += [RemovePath(f"{AUTHORIZED_KEYS_DIR}/{name}") for name in stale]
        changes += [
            WriteFile(f"{AUTHORIZED_KEYS_DIR}/{user}", render_authorized_keys(keys).encode())
            for user, keys in settings.keys
        ]
        changes += [
            # Generated on the booth: each booth has its own host key.
            Command(
                ("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", HOST_KEY),
                ("test", "-s", HOST_KEY),
                f"generate the ed25519 host key {HOST_KEY}",
            ),
            WriteFile(SSHD_CONFIG, render_sshd_config(settings).encode()),
            SystemdUnitState("ssh.socket", "disabled"),
            SystemdUnitState("ssh.service", "enabled"),
        ]
        return changes


STEP = SshStep()
