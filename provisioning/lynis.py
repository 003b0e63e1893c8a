"""Lynis's hardening index of a root filesystem, audited in a chroot that looks booted where it can.

``lynis audit system --quick`` runs inside the root (Lynis must be installed
there), in private mount, PID and network namespaces, so nothing it does or
sees leaks to or from the machine running it:

- the root's ``/etc/fstab`` entries that need no disk (tmpfs, proc, bind
  mounts) are mounted as boot would, with their options, so the mount checks
  see the booth's ``/tmp``, ``/dev/shm`` and ``/proc hidepid``;
- the ``net.ipv4.*``/``net.ipv6.*`` keys of the root's ``/etc/sysctl.d``
  are applied in the private network namespace (they are per namespace);
- every other sysctl (``kernel.*``, ``fs.*``...) is the running kernel's and
  is never written: Lynis reports the host's values for those, whatever the
  root's files say. Running processes are those of the private PID namespace
  (none of the booth's daemons run).

So the index measures the root's packages and files plus what boot would
mount; the booted image's figure comes from the image's boot test.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from provisioning.errors import TargetError

_MOUNTABLE: Final = ("tmpfs", "proc")
_NET_KEY: Final = re.compile(r"net\.ipv[46]\.[A-Za-z0-9_.]+")
_VALUE: Final = re.compile(r"[0-9 \t]+")


@dataclass(frozen=True)
class LynisResult:
    hardening_index: int
    tests_performed: int
    warnings: tuple[str, ...]
    suggestions: tuple[str, ...]
    """Test ids of the suggestions (``KRNL-6000``...)."""


def _groups(root: Path) -> dict[str, int]:
    groups: dict[str, int] = {}
    path = root / "etc/group"
    for line in path.read_text().splitlines() if path.exists() else []:
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            groups[fields[0]] = int(fields[2])
    return groups


def boot_mounts(root: Path) -> list[str]:
    """Shell commands mounting the root's diskless fstab entries under it, in fstab order."""
    fstab = root / "etc/fstab"
    groups = _groups(root)
    commands: list[str] = []
    for line in fstab.read_text().splitlines() if fstab.exists() else []:
        fields = line.split()
        if len(fields) < 4 or line.lstrip().startswith("#"):
            continue
        source, point, kind, options = fields[:4]
        if not point.startswith("/") or ".." in point.split("/"):
            continue
        # proc takes a numeric gid; mount(8) does not look a name up in the root's /etc/group.
        options = re.sub(r"\bgid=([a-z_][a-z0-9_-]*)", lambda m: f"gid={groups.get(m[1], 0)}", options)
        where = shlex.quote(str(root) + point)
        if kind in _MOUNTABLE:
            commands.append(f"mount -t {shlex.quote(kind)} -o {shlex.quote(options)} {kind} {where}")
        elif "bind" in options.split(",") and source.startswith("/") and ".." not in source.split("/"):
            rest = ",".join(option for option in options.split(",") if option not in ("bind", "defaults"))
            commands.append(f"mount --bind {shlex.quote(str(root) + source)} {where}")
            if rest:
                commands.append(f"mount -o remount,bind,{shlex.quote(rest)} {where}")
    return commands


def network_sysctls(root: Path) -> dict[str, str]:
    """The per-network-namespace keys (``net.ipv4.*``, ``net.ipv6.*``) the root's sysctl.d sets, last one wins."""
    values: dict[str, str] = {}
    directory = root / "etc/sysctl.d"
    files = sorted(directory.glob("*.conf"), key=lambda p: p.name) if directory.is_dir() else []
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if sep and _NET_KEY.fullmatch(key) and _VALUE.fullmatch(value):
                values[key] = value
    return values


def audit(root: Path, *, timeout: float = 900) -> LynisResult:
    """Run Lynis in ``root`` (see the module's docstring) and read its report."""
    if not (root / "usr/sbin/lynis").exists():
        raise TargetError("lynis", f"Lynis is not installed in {root}")
    quoted = shlex.quote(str(root))
    script = [
        "set -e",
        # The new PID namespace's own /proc first: boot_mounts may remount it with hidepid.
        f"mount -t proc proc {quoted}/proc",
        f"mount --rbind /sys {quoted}/sys",
        f"mount --rbind /dev {quoted}/dev",
        *boot_mounts(root),
    ]
    for key, value in network_sysctls(root).items():
        # Written only inside the private network namespace (the path is per namespace).
        path = "/proc/sys/" + key.replace(".", "/")
        script.append(f"if [ -w {path} ]; then echo {shlex.quote(value)} > {path}; fi")
    script.append(f"exec chroot {quoted} lynis audit system --quick --no-colors >/dev/null")
    command = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--net", "--"]
    command += ["sh", "-c", "\n".join(script)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TargetError("lynis", "timed out") from exc
    if result.returncode != 0:
        raise TargetError("lynis", result.stderr.strip()[-300:] or "failed", returncode=result.returncode)
    return read_report((root / "var/log/lynis-report.dat").read_text(errors="replace"))


def read_report(text: str) -> LynisResult:
    """The figures of a ``lynis-report.dat``."""
    index = tests = None
    warnings: list[str] = []
    suggestions: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "hardening_index" and value.isdigit():
            index = int(value)
        elif key == "lynis_tests_done" and value.isdigit():
            tests = int(value)
        elif key == "warning[]":
            warnings.append(value.split("|")[0])
        elif key == "suggestion[]":
            suggestions.append(value.split("|")[0])
    if index is None:
        raise TargetError("lynis", "the report has no hardening_index")
    return LynisResult(index, tests or 0, tuple(warnings), tuple(suggestions))
