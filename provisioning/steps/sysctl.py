"""Kernel and network sysctls from ANSSI BP-028 (v2, 2022), intermediary level and a little beyond.

One file, ``/etc/sysctl.d/60-kiosk-hardening.conf``, applied by systemd-sysctl
at boot. Rule numbers are the guide's (R9 kernel, R12 IPv4, R13 IPv6, R14
file systems). ``[sysctl] extra`` overrides or adds keys; the session step
owns ``kernel.sysrq`` and ``kernel.ctrl-alt-del``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from provisioning.config import BoothConfig
from provisioning.core import Change, Target, WriteFile
from provisioning.errors import ConfigError

KEY: Final = re.compile(r"[a-z0-9_]+(?:[./][a-zA-Z0-9_-]+)+")
VALUE: Final = re.compile(r"[A-Za-z0-9 ._:-]{1,64}")
PATH: Final = "/etc/sysctl.d/60-kiosk-hardening.conf"

KERNEL: Final[tuple[tuple[str, str, str], ...]] = (
    # (key, value, why)
    ("kernel.kptr_restrict", "2", "R9: kernel pointers hidden, even from root"),
    ("kernel.dmesg_restrict", "1", "R9: the kernel log for CAP_SYSLOG only"),
    ("kernel.perf_event_paranoid", "3", "R9: no perf events for unprivileged users (Debian patch)"),
    ("kernel.randomize_va_space", "2", "R9: full ASLR"),
    ("kernel.kexec_load_disabled", "1", "R9: no kexec of another kernel once booted"),
    ("kernel.unprivileged_bpf_disabled", "1", "R9: no BPF for unprivileged users"),
    ("net.core.bpf_jit_harden", "2", "R9: JIT-compiled BPF hardened for everyone"),
    ("kernel.unprivileged_userns_clone", "0", "no user namespaces for unprivileged users (Debian patch)"),
    ("kernel.core_uses_pid", "1", "R9"),
    ("kernel.pid_max", "65536", "R9: bounded PID space"),
    ("vm.mmap_min_addr", "65536", "R9: no mapping at NULL"),
    ("vm.unprivileged_userfaultfd", "0", "userfaultfd is a common exploitation aid"),
    ("dev.tty.ldisc_autoload", "0", "no line discipline module loaded on demand"),
    ("fs.suid_dumpable", "0", "R14: no core dump of a setuid program"),
    ("fs.protected_symlinks", "1", "R14: symlinks in sticky directories followed by their owner only"),
    ("fs.protected_hardlinks", "1", "R14: no hard link to a file one cannot write"),
    ("fs.protected_fifos", "2", "R14: no FIFO of someone else opened in a sticky directory"),
    ("fs.protected_regular", "2", "R14: same for regular files"),
)

IPV4: Final[tuple[tuple[str, str, str], ...]] = (
    ("net.ipv4.ip_forward", "0", "R12: a booth routes nothing"),
    ("net.ipv4.conf.all.rp_filter", "1", "R12: strict reverse-path filter"),
    ("net.ipv4.conf.default.rp_filter", "1", "R12"),
    ("net.ipv4.conf.all.accept_redirects", "0", "R12: no ICMP redirects"),
    ("net.ipv4.conf.default.accept_redirects", "0", "R12"),
    ("net.ipv4.conf.all.secure_redirects", "0", "R12"),
    ("net.ipv4.conf.default.secure_redirects", "0", "R12"),
    ("net.ipv4.conf.all.send_redirects", "0", "R12"),
    ("net.ipv4.conf.default.send_redirects", "0", "R12"),
    ("net.ipv4.conf.all.accept_source_route", "0", "R12: no source routing"),
    ("net.ipv4.conf.default.accept_source_route", "0", "R12"),
    ("net.ipv4.conf.all.log_martians", "1", "R12: impossible addresses logged"),
    ("net.ipv4.conf.default.log_martians", "1", "R12"),
    ("net.ipv4.conf.all.shared_media", "0", "R12"),
    ("net.ipv4.conf.default.shared_media", "0", "R12"),
    ("net.ipv4.conf.all.arp_filter", "1", "R12"),
    ("net.ipv4.conf.all.arp_ignore", "2", "R12"),
    ("net.ipv4.conf.all.route_localnet", "0", "R12"),
    ("net.ipv4.conf.all.drop_gratuitous_arp", "1", "R12"),
    ("net.ipv4.icmp_echo_ignore_broadcasts", "1", "R12: no smurf amplifier"),
    ("net.ipv4.icmp_ignore_bogus_error_responses", "1", "R12"),
    ("net.ipv4.tcp_syncookies", "1", "R12: SYN flood"),
    ("net.ipv4.tcp_rfc1337", "1", "R12: TIME-WAIT assassination"),
    ("net.ipv4.ip_local_port_range", "32768 65535", "R12"),
)

IPV6_NO_RA: Final[tuple[tuple[str, str, str], ...]] = (
    ("net.ipv6.conf.all.forwarding", "0", "R13"),
    ("net.ipv6.conf.all.accept_ra", "0", "R13: no router advertisement changes the booth's routes"),
    ("net.ipv6.conf.default.accept_ra", "0", "R13"),
    ("net.ipv6.conf.all.accept_redirects", "0", "R13"),
    ("net.ipv6.conf.default.accept_redirects", "0", "R13"),
    ("net.ipv6.conf.all.accept_source_route", "0", "R13"),
    ("net.ipv6.conf.default.accept_source_route", "0", "R13"),
    ("net.ipv6.conf.all.router_solicitations", "0", "R13"),
    ("net.ipv6.conf.default.router_solicitations", "0", "R13"),
    ("net.ipv6.conf.all.accept_ra_rtr_pref", "0", "R13"),
    ("net.ipv6.conf.default.accept_ra_rtr_pref", "0", "R13"),
    ("net.ipv6.conf.all.accept_ra_pinfo", "0", "R13"),
    ("net.ipv6.conf.default.accept_ra_pinfo", "0", "R13"),
    ("net.ipv6.conf.all.accept_ra_defrtr", "0", "R13"),
    ("net.ipv6.conf.default.accept_ra_defrtr", "0", "R13"),
    ("net.ipv6.conf.all.autoconf", "0", "R13"),
    ("net.ipv6.conf.default.autoconf", "0", "R13"),
    ("net.ipv6.conf.all.max_addresses", "1", "R13"),
    ("net.ipv6.conf.default.max_addresses", "1", "R13"),
)

IPV6_OFF: Final[tuple[tuple[str, str, str], ...]] = (
    ("net.ipv6.conf.all.disable_ipv6", "1", "R13: IPv6 unused on this booth's network"),
    ("net.ipv6.conf.default.disable_ipv6", "1", "R13"),
)


@dataclass(frozen=True)
class SysctlConfig:
    ptrace_scope: int
    ipv6: str
    """``no-ra`` (addresses configured by DHCPv6 or statically, no router advertisements) or ``off``."""
    extra: Mapping[str, str]


def parse(config: BoothConfig) -> SysctlConfig:
    table = config.table("sysctl")
    ptrace = table.integer("ptrace_scope", 2, minimum=1, maximum=3)
    ipv6 = table.choice("ipv6", "no-ra", ("no-ra", "off"))
    raw = table.raw("extra", {})
    table.done()
    if not isinstance(raw, dict):
        raise ConfigError("sysctl.extra", "must be a table of key = value")
    extra: dict[str, str] = {}
    for key, value in raw.items():
        if KEY.fullmatch(key) is None:
            raise ConfigError(f"sysctl.extra.{key}", "is not a sysctl key")
        if isinstance(value, bool) or not isinstance(value, int | str) or VALUE.fullmatch(str(value)) is None:
            raise ConfigError(f"sysctl.extra.{key}", "must be an integer or a short string")
        if key in ("kernel.sysrq", "kernel.ctrl-alt-del"):
            raise ConfigError(f"sysctl.extra.{key}", "belongs to the session step")
        extra[key] = str(value)
    return SysctlConfig(ptrace_scope=ptrace, ipv6=ipv6, extra=extra)


def settings(config: SysctlConfig) -> dict[str, str]:
    """Every key and value the booth gets, in file order."""
    values = {key: value for key, value, _ in KERNEL}
    values["kernel.yama.ptrace_scope"] = str(config.ptrace_scope)
    values.update({key: value for key, value, _ in IPV4})
    values.update({key: value for key, value, _ in (IPV6_NO_RA if config.ipv6 == "no-ra" else IPV6_OFF)})
    values.update(config.extra)
    return values


def render(config: SysctlConfig) -> bytes:
    why = {key: reason for key, _, reason in (*KERNEL, *IPV4, *IPV6_NO_RA, *IPV6_OFF)}
    why["kernel.yama.ptrace_scope"] = "R11: ptrace for CAP_SYS_PTRACE only (2) or never (3)"
    lines = ["# kiosk-provision (sysctl): ANSSI BP-028 hardening; edit [sysctl] in the booth configuration."]
    # sysctl.d has no end-of-line comments: the reason goes on the line before.
    for key, value in settings(config).items():
        lines += [f"# {why.get(key, 'booth configuration')}", f"{key} = {value}"]
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class SysctlStep:
    name: str = "sysctl"
    description: str = "kernel and network sysctls (ANSSI BP-028 intermediary)"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        return [WriteFile(PATH, render(parse(config)))]


STEP: Final = SysctlStep()
