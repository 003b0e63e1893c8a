"""The provisioning engine: a target system, the changes steps ask for, and plan/apply.

A step never touches the system itself: it returns ``Change`` objects, each of
which can tell whether it already holds (``is_applied``) and make it hold
(``apply``). The engine applies only those that do not hold, then checks again,
so a run is idempotent, ``--dry-run`` is the list of pending changes and
``--check`` is that list being empty.

A target is the running system (root ``/``) or a root filesystem reached
through ``chroot``. Paths inside a root are resolved as the chroot would see
them: an absolute symlink in the root (``/etc/resolv.conf -> /run/...``)
points inside the root, never at the machine doing the provisioning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final, Literal, Protocol, runtime_checkable

from provisioning.config import BoothConfig
from provisioning.errors import ApplyError, ProvisionError, TargetError

logger = logging.getLogger(__name__)

_MAX_SYMLINKS: Final = 40
_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Keeps services from starting while apt installs packages into a root that is
# not running (Debian's invoke-rc.d interface, /usr/share/doc/init-system-helpers).
_POLICY_RC_D: Final = b"#!/bin/sh\n# kiosk-provision: no service starts in a chroot\nexit 101\n"


class Target:
    """The system being provisioned: ``/`` or a root filesystem reached through chroot."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise TargetError("target", f"{root} is not a directory")

    @property
    def is_chroot(self) -> bool:
        return self.root != Path("/")

    def __repr__(self) -> str:
        return f"Target({str(self.root)!r})"

    def path(self, p: str, *, follow: bool = False) -> Path:
        """The host path of the absolute path ``p`` inside the target.

        Symlinks in the parent directories are followed as the target sees them;
        the last component is followed only with ``follow`` (so a change can see,
        and replace, a symlink where it wants a file).
        """
        posix = PurePosixPath(p)
        if not posix.is_absolute():
            raise TargetError("path", f"{p!r} is not absolute")
        if not self.is_chroot:
            return Path(os.path.realpath(posix)) if follow else Path(os.path.realpath(posix.parent)) / posix.name
        resolved = self._resolve(list(posix.parts[1:]), follow_last=follow)
        return self.root / resolved.relative_to("/") if resolved != PurePosixPath("/") else self.root

    def _resolve(self, parts: list[str], *, follow_last: bool) -> PurePosixPath:
        current = PurePosixPath("/")
        links = 0
        pending = list(parts)
        while pending:
            name = pending.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                current = current.parent
                continue
            candidate = current / name
            host = self.root / candidate.relative_to("/")
            last = not pending
            if host.is_symlink() and (follow_last or not last):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise TargetError("path", f"too many symlinks under {'/' + '/'.join(parts)}")
                link = PurePosixPath(os.readlink(host))
                if link.is_absolute():
                    current = PurePosixPath("/")
                    pending = list(link.parts[1:]) + pending
                else:
                    pending = list(link.parts) + pending
                continue
            current = candidate
        return current

    def env(self) -> dict[str, str]:
        return {"PATH": _PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        system_mounts: bool = False,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the target (through chroot unless the target is ``/``).

        ``system_mounts``: the command needs /proc, /sys and /dev (package
        scripts do); in a chroot they are mounted in a private mount namespace,
        so they vanish with the command and never leak into the host's table.
        """
        command = list(argv)
        if self.is_chroot:
            if system_mounts:
                script = (
                    'root="$1"; shift; '
                    'mount -t proc proc "$root/proc" && mount --rbind /sys "$root/sys" && '
                    'mount --rbind /dev "$root/dev" && exec chroot "$root" "$@"'
                )
                command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]
                command += [str(self.root), *argv]
            else:
                command = ["chroot", str(self.root), *argv]
        return self._run(command, check=check, input=input, timeout=timeout)

    def run_host(
        self, argv: Sequence[str], *, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a host tool (one that takes ``--root``/``--admindir`` itself)."""
        return self._run(list(argv), check=check, input=input, timeout=None)

    def _run(
        self, command: list[str], *, check: bool, input: str | None, timeout: float | None
    ) -> subprocess.CompletedProcess[str]:
        logger.debug("run %s", shlex.join(command))
        try:
            result = subprocess.run(
                command, input=input, capture_output=True, text=True, env=self.env(), timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TargetError(shlex.join(command[:4]), exc.__class__.__name__) from exc
        if check and result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise TargetError(shlex.join(command), " | ".join(tail) or "failed", returncode=result.returncode)
        return result

    def read_text(self, p: str) -> str | None:
        host = self.path(p, follow=True)
        try:
            return host.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _ids(self, database: str) -> dict[str, int]:
        ids: dict[str, int] = {}
        for line in (self.read_text(database) or "").splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[2].isdigit():
                ids.setdefault(fields[0], int(fields[2]))
        return ids

    def uid(self, user: str) -> int:
        """The uid of ``user`` in the target's /etc/passwd (root is 0 even without one)."""
        found = self._ids("/etc/passwd").get(user, 0 if user == "root" else None)
        if found is None:
            raise TargetError("uid", f"no user {user} in the target")
        return found

    def gid(self, group: str) -> int:
        found = self._ids("/etc/group").get(group, 0 if group == "root" else None)
        if found is None:
            raise TargetError("gid", f"no group {group} in the target")
        return found

    @contextlib.contextmanager
    def services_held(self) -> Iterator[None]:
        """Within: no service starts from a package script (chroot only; on ``/`` nothing changes)."""
        if not self.is_chroot:
            yield
            return
        policy = self.path("/usr/sbin/policy-rc.d")
        existed = policy.exists() or policy.is_symlink()
        if not existed:
            policy.parent.mkdir(parents=True, exist_ok=True)
            policy.write_bytes(_POLICY_RC_D)
            policy.chmod(0o755)
        try:
            yield
        finally:
            if not existed:
                policy.unlink(missing_ok=True)


@runtime_checkable
class Change(Protocol):
    """One thing a step wants to hold on the target."""

    def describe(self) -> str: ...

    def is_applied(self, target: Target) -> bool: ...

    def apply(self, target: Target) -> None: ...


def _owner_ids(target: Target, owner: str, group: str) -> tuple[int, int] | None:
    """The ids of ``owner`` and ``group``; None while they do not exist (a later change creates them)."""
    try:
        return target.uid(owner), target.gid(group)
    except TargetError:
        return None


def _mode(mode: int) -> str:
    return f"{mode:04o}"


@dataclass(frozen=True)
class WriteFile:
    """A regular file with exactly this content, mode and ownership."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"

    def describe(self) -> str:
        return f"write {self.path} ({_mode(self.mode)} {self.owner}:{self.group}, {len(self.content)} bytes)"

    def is_applied(self, target: Target) -> bool:
        host = target.path(self.path)
        try:
            info = host.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != self.mode:
            return False
        if (info.st_uid, info.st_gid) != _owner_ids(target, self.owner, self.group):
            return False
        return info.st_size == len(self.content) and host.read_bytes() == self.content

    def apply(self, target: Target) -> None:
        host = target.path(self.path)
        if host.is_dir() and not host.is_symlink():
            raise TargetError("write", f"{self.path} is a directory")
        host.parent.mkdir(parents=True, exist_ok=True)
        uid, gid = target.uid(self.owner), target.gid(self.group)
        # Written beside, then renamed: a reader (or a crash) never sees half a file.
        fd, temporary = tempfile.mkstemp(dir=host.parent, prefix=f".{host.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(self.content)
                os.fchown(out.fileno(), uid, gid)
                os.fchmod(out.fileno(), self.mode)
            os.replace(temporary, host)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


@dataclass(frozen=True)
class EnsureDirectory:
    """A directory with this mode and ownership (its content is left alone)."""

    path: str
    mode: int = 0o755
    owner: str = "root"
    group: str = "root"

    def describe(self) -> str:
        return f"directory {self.path} ({_mode(self.mode)} {self.owner}:{self.group})"

    def is_applied(self, target: Target) -> bool:
        try:
            info = target.path(self.path).lstat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        return (
            stat.S_ISDIR(info.st_mode)
            and stat.S_IMODE(info.st_mode) == self.mode
            and (info.st_uid, info.st_gid) == _owner_ids(target, self.owner, self.group)
        )

    def apply(self, target: Target) -> None:
        host = target.path(self.path)
        if host.is_symlink() or (host.exists() and not host.is_dir()):
            host.unlink()
        host.mkdir(parents=True, exist_ok=True)
        os.chown(host, target.uid(self.owner), target.gid(self.group))
        host.chmod(self.mode)


@dataclass(frozen=True)
class RemovePath:
    """Nothing at ``path`` (a file, a symlink or a whole directory)."""

    path: str

    def describe(self) -> str:
        return f"remove {self.path}"

    def is_applied(self, target: Target) -> bool:
        host = target.path(self.path)
        return not (host.exists() or host.is_symlink())

    def apply(self, target: Target) -> None:
        host = target.path(self.path)
        if host.is_dir() and not host.is_symlink():
            shutil.rmtree(host)
        else:
            host.unlink(missing_ok=True)


@dataclass(frozen=True)
class Symlink:
    """A symlink at ``path`` pointing to ``target`` (as written, not resolved)."""

    path: str
    target: str

    def describe(self) -> str:
        return f"symlink {self.path} -> {self.target}"

    def is_applied(self, target: Target) -> bool:
        host = target.path(self.path)
        return host.is_symlink() and os.readlink(host) == self.target

    def apply(self, target: Target) -> None:
        host = target.path(self.path)
        if host.is_dir() and not host.is_symlink():
            raise TargetError("symlink", f"{self.path} is a directory")
        host.parent.mkdir(parents=True, exist_ok=True)
        temporary = host.with_name(f".{host.name}.kiosk-provision")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(self.target)
        os.replace(temporary, host)


@dataclass(frozen=True)
class Command:
    """A command run in the target, when ``check_argv`` (run in the target too) fails.

    Without ``check_argv`` the command runs on every apply and always counts as
    drift: give one whenever the command's effect can be observed.
    """

    argv: tuple[str, ...]
    check_argv: tuple[str, ...] | None
    description: str
    system_mounts: bool = False

    def describe(self) -> str:
        return self.description

    def is_applied(self, target: Target) -> bool:
        if self.check_argv is None:
            return False
        return target.run(self.check_argv, check=False, system_mounts=self.system_mounts).returncode == 0

    def apply(self, target: Target) -> None:
        target.run(self.argv, system_mounts=self.system_mounts)


UnitState = Literal["enabled", "disabled", "masked"]


@dataclass(frozen=True)
class SystemdUnitState:
    """A unit enabled, disabled or masked, through ``systemctl --root`` (no running systemd needed)."""

    unit: str
    state: UnitState

    def describe(self) -> str:
        verb = {"enabled": "enable", "disabled": "disable", "masked": "mask"}[self.state]
        return f"{verb} {self.unit}"

    def _current(self, target: Target) -> str:
        # A masked unit is a symlink to /dev/null in /etc/systemd/system; looked
        # at directly because `is-enabled` wants the unit file to exist.
        link = target.path(f"/etc/systemd/system/{self.unit}")
        if link.is_symlink() and os.readlink(link) == "/dev/null":
            return "masked"
        result = target.run_host(["systemctl", f"--root={target.root}", "is-enabled", self.unit], check=False)
        return result.stdout.strip() or "not-found"

    def is_applied(self, target: Target) -> bool:
        current = self._current(target)
        if self.state == "disabled":
            return current not in ("enabled", "masked", "enabled-runtime")
        return current == self.state

    def apply(self, target: Target) -> None:
        systemctl = ["systemctl", f"--root={target.root}"]
        if self._current(target) == "masked":
            target.run_host([*systemctl, "unmask", self.unit])
        if self.state == "masked":
            target.run_host([*systemctl, "mask", self.unit])
        elif self.state == "enabled":
            target.run_host([*systemctl, "enable", self.unit])
        else:
            target.run_host([*systemctl, "disable", self.unit])


def _passwd_entry(target: Target, name: str) -> list[str] | None:
    for line in (target.read_text("/etc/passwd") or "").splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) == 7:
            return fields
    return None


def _group_members(target: Target) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for line in (target.read_text("/etc/group") or "").splitlines():
        fields = line.split(":")
        if len(fields) == 4:
            groups[fields[0]] = {member for member in fields[3].split(",") if member}
    return groups


def _shadow_password(target: Target, name: str) -> str | None:
    for line in (target.read_text("/etc/shadow") or "").splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) >= 2:
            return fields[1]
    return None


_NO_PASSWORD: Final = "!*"
"""Locked with no hash behind the lock: ``usermod --unlock`` cannot bring a password back."""


@dataclass(frozen=True)
class EnsureUser:
    """A system user with no password, this home and shell, in these supplementary groups."""

    name: str
    home: str
    shell: str = "/usr/sbin/nologin"
    groups: tuple[str, ...] = ()

    def describe(self) -> str:
        extra = f", groups {','.join(self.groups)}" if self.groups else ""
        return f"user {self.name} (no password, shell {self.shell}, home {self.home}{extra})"

    def is_applied(self, target: Target) -> bool:
        entry = _passwd_entry(target, self.name)
        if entry is None or entry[5] != self.home or entry[6] != self.shell:
            return False
        if _shadow_password(target, self.name) not in (_NO_PASSWORD, "!", "*"):
            return False
        members = _group_members(target)
        return all(self.name in members.get(group, set()) for group in self.groups)

    def apply(self, target: Target) -> None:
        root = [f"--root={target.root}"] if target.is_chroot else []
        existing = _group_members(target)
        for group in self.groups:
            if group not in existing:
                target.run_host(["groupadd", *root, "--system", group])
        if _passwd_entry(target, self.name) is None:
            argv = ["useradd", *root, "--system", "--user-group", "--no-create-home"]
            argv += ["--home-dir", self.home, "--shell", self.shell]
        else:
            argv = ["usermod", *root, "--home", self.home, "--shell", self.shell]
        if self.groups:
            argv += (["--append"] if argv[0] == "usermod" else []) + ["--groups", ",".join(self.groups)]
        target.run_host([*argv, self.name])
        if _shadow_password(target, self.name) not in (_NO_PASSWORD, "!", "*"):
            target.run_host(["usermod", *root, "--password", _NO_PASSWORD, self.name])


@dataclass(frozen=True)
class EnsureGroup:
    """A system group (members are the users' business)."""

    name: str

    def describe(self) -> str:
        return f"group {self.name}"

    def is_applied(self, target: Target) -> bool:
        return self.name in _group_members(target)

    def apply(self, target: Target) -> None:
        root = [f"--root={target.root}"] if target.is_chroot else []
        target.run_host(["groupadd", *root, "--system", self.name])


def installed_packages(target: Target, names: Iterable[str]) -> set[str]:
    """Those of ``names`` dpkg has installed in the target (read from its database, no chroot)."""
    wanted = list(names)
    if not wanted:
        return set()
    admindir = target.path("/var/lib/dpkg", follow=True)
    result = target.run_host(
        ["dpkg-query", f"--admindir={admindir}", "-W", "-f=${Package} ${db:Status-Status}\\n", *wanted], check=False
    )
    return {
        parts[0]
        for parts in (line.split() for line in result.stdout.splitlines())
        if len(parts) == 2 and parts[1] == "installed"
    }


def _apt(target: Target, *args: str) -> None:
    options = ["-y", "-q", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
    with target.services_held():
        target.run(["apt-get", *options, *args], system_mounts=True)


@dataclass(frozen=True)
class EnsurePackages:
    """Debian packages installed in the target (apt, without recommends)."""

    names: tuple[str, ...]

    def describe(self) -> str:
        return f"install packages {' '.join(self.names)}"

    def is_applied(self, target: Target) -> bool:
        return installed_packages(target, self.names) == set(self.names)

    def apply(self, target: Target) -> None:
        _apt(target, "update")
        _apt(target, "install", "--no-install-recommends", *self.names)


@dataclass(frozen=True)
class RemovePackages:
    """Debian packages a booth must not have, purged if present."""

    names: tuple[str, ...]

    def describe(self) -> str:
        return f"purge packages {' '.join(self.names)}"

    def is_applied(self, target: Target) -> bool:
        return not installed_packages(target, self.names)

    def apply(self, target: Target) -> None:
        present = sorted(installed_packages(target, self.names))
        if present:
            _apt(target, "purge", *present)


class Step(Protocol):
    """One concern of the booth (packages, sysctl, firewall...): the changes it needs.

    A frozen dataclass with ``name`` and ``description`` fields fits; ``changes``
    checks the step's table of the configuration (``ConfigError``) and only
    reads the target.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def changes(self, config: BoothConfig, target: Target) -> list[Change]: ...


@dataclass(frozen=True)
class Pending:
    """A change of a step that does not hold on the target."""

    step: str
    change: Change

    def describe(self) -> str:
        return f"{self.step}: {self.change.describe()}"


def _changes(step: Step, config: BoothConfig, target: Target) -> list[Change]:
    try:
        return step.changes(config, target)
    except ProvisionError:
        raise
    except OSError as exc:
        raise ApplyError(step.name, "listing changes", f"{exc.__class__.__name__}: {exc.strerror}") from exc


def plan(steps: Sequence[Step], config: BoothConfig, target: Target) -> list[Pending]:
    """The changes that do not hold, step by step, in order (nothing is modified)."""
    pending: list[Pending] = []
    for step in steps:
        for change in _changes(step, config, target):
            if not change.is_applied(target):
                pending.append(Pending(step.name, change))
    return pending


def apply(
    steps: Sequence[Step],
    config: BoothConfig,
    target: Target,
    *,
    on_change: Callable[[Pending], None] | None = None,
) -> list[Pending]:
    """Apply every change that does not hold; returns those applied.

    Every step's configuration is checked before anything is modified. A step's
    changes are listed only once the steps before it are applied (a file a
    package installs can be edited by a later step). Each change is checked
    again after it is applied: one that does not hold is an error, not a silent
    loop on the next run.
    """
    for step in steps:
        _changes(step, config, target)
    applied: list[Pending] = []
    for step in steps:
        for change in _changes(step, config, target):
            if change.is_applied(target):
                continue
            pending = Pending(step.name, change)
            logger.info("apply %s", pending.describe())
            try:
                change.apply(target)
            except TargetError as exc:
                raise ApplyError(step.name, change.describe(), str(exc)) from exc
            except OSError as exc:
                raise ApplyError(step.name, change.describe(), f"{exc.__class__.__name__}: {exc.strerror}") from exc
            if not change.is_applied(target):
                raise ApplyError(step.name, change.describe(), "applied but does not hold")
            applied.append(pending)
            if on_change is not None:
                on_change(pending)
    return applied
