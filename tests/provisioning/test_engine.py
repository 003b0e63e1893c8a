"""The provisioning engine: changes, targets, plan/apply and the command line, on temporary roots."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provisioning import cli, core, steps
from provisioning.config import BoothConfig
from provisioning.core import (
    Command,
    EnsureDirectory,
    EnsureUser,
    RemovePath,
    Symlink,
    SystemdUnitState,
    Target,
    WriteFile,
)
from provisioning.errors import ApplyError, ConfigError, TargetError

EXAMPLE = Path(__file__).parents[2] / "provisioning" / "example.toml"


@dataclass
class FileStep:
    """A step owned by the test: a few files and a directory."""

    name: str = "files"
    description: str = "test files"
    files: dict[str, bytes] = field(default_factory=lambda: {"/etc/kiosk/a.conf": b"a=1\n", "/etc/kiosk/b": b"b\n"})
    calls: int = 0

    def changes(self, config: BoothConfig, target: Target) -> list[core.Change]:
        self.calls += 1
        changes: list[core.Change] = [EnsureDirectory("/var/lib/kiosk", mode=0o700)]
        changes += [WriteFile(path, content, mode=0o640) for path, content in self.files.items()]
        changes.append(Symlink("/etc/kiosk/current", "a.conf"))
        return changes


def test_write_file_applies_once_and_detects_drift(target: Target, root: Path) -> None:
    change = WriteFile("/etc/kiosk/x.conf", b"x=1\n", mode=0o600)
    assert not change.is_applied(target)
    change.apply(target)
    assert change.is_applied(target)
    written = root / "etc/kiosk/x.conf"
    assert written.read_bytes() == b"x=1\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    written.chmod(0o644)
    assert not change.is_applied(target)
    change.apply(target)
    written.write_bytes(b"x=2\n")
    assert not change.is_applied(target)


def test_write_file_replaces_a_symlink_instead_of_writing_through_it(target: Target, root: Path) -> None:
    outside = root.parent / "outside"
    outside.write_text("host file")
    (root / "etc/link").symlink_to(outside)
    WriteFile("/etc/link", b"inside\n").apply(target)
    assert outside.read_text() == "host file"
    assert not (root / "etc/link").is_symlink()


def test_absolute_symlinks_resolve_inside_the_root(target: Target, root: Path) -> None:
    # /etc/alt -> /srv/real, as the chroot sees it, must not mean the host's /srv.
    (root / "srv/real").mkdir(parents=True)
    (root / "etc/alt").symlink_to("/srv/real")
    assert target.path("/etc/alt/file") == root / "srv/real/file"
    (root / "etc/up").symlink_to("../../../../..")
    assert target.path("/etc/up/etc/passwd", follow=True) == root / "etc/passwd"
    with pytest.raises(TargetError):
        target.path("relative/path")


def test_symlink_loop_is_a_typed_error(target: Target, root: Path) -> None:
    (root / "etc/loop").symlink_to("/etc/loop")
    with pytest.raises(TargetError, match="too many symlinks"):
        target.path("/etc/loop/x")


def test_remove_path_and_symlink(target: Target, root: Path) -> None:
    (root / "var/lib/junk/sub").mkdir(parents=True)
    remove = RemovePath("/var/lib/junk")
    assert not remove.is_applied(target)
    remove.apply(target)
    assert remove.is_applied(target)
    link = Symlink("/etc/systemd/system/ctrl-alt-del.target", "/dev/null")
    link.apply(target)
    assert link.is_applied(target)
    assert os.readlink(root / "etc/systemd/system/ctrl-alt-del.target") == "/dev/null"
    assert not Symlink("/etc/systemd/system/ctrl-alt-del.target", "/dev/zero").is_applied(target)


def test_directory_mode_and_owner(target: Target, root: Path) -> None:
    directory = EnsureDirectory("/var/lib/kiosk", mode=0o700, owner="nobody", group="nogroup")
    directory.apply(target)
    info = (root / "var/lib/kiosk").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o700)
    assert directory.is_applied(target)
    ghost = EnsureDirectory("/var/lib/kiosk", mode=0o700, owner="ghost")
    assert not ghost.is_applied(target), "an owner that does not exist yet is a pending change, not an error"
    with pytest.raises(TargetError, match="no user"):
        ghost.apply(target)


def test_command_runs_only_when_its_check_fails(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    change = Command(("touch", str(marker)), ("test", "-e", str(marker)), "create the marker")
    host = Target(Path("/"))
    assert not host.is_chroot
    assert not change.is_applied(host)
    change.apply(host)
    assert change.is_applied(host)
    failing = Command(("false",), None, "always fails")
    with pytest.raises(TargetError) as caught:
        failing.apply(host)
    assert caught.value.returncode == 1


def test_user_without_password_nor_shell(target: Target, root: Path) -> None:
    user = EnsureUser("kiosk", home="/var/lib/kiosk", groups=("video", "audio"))
    assert not user.is_applied(target)
    user.apply(target)
    assert user.is_applied(target)
    passwd = (root / "etc/passwd").read_text()
    assert "kiosk:x:" in passwd
    assert ":/var/lib/kiosk:/usr/sbin/nologin" in passwd
    shadow = {line.split(":")[0]: line.split(":")[1] for line in (root / "etc/shadow").read_text().splitlines()}
    assert shadow["kiosk"] in ("!", "!*", "*")
    # Drift: someone gave it a shell.
    (root / "etc/passwd").write_text(passwd.replace(":/var/lib/kiosk:/usr/sbin/nologin", ":/var/lib/kiosk:/bin/sh"))
    assert not user.is_applied(target)
    user.apply(target)
    assert user.is_applied(target)


def test_unit_enable_and_mask_offline(target: Target, root: Path) -> None:
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "kiosk-test.service").write_text(
        "[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
    )
    enable = SystemdUnitState("kiosk-test.service", "enabled")
    assert not enable.is_applied(target)
    enable.apply(target)
    assert enable.is_applied(target)
    assert (root / "etc/systemd/system/multi-user.target.wants/kiosk-test.service").is_symlink()
    mask = SystemdUnitState("getty@tty2.service", "masked")
    assert not mask.is_applied(target)
    mask.apply(target)
    assert mask.is_applied(target)
    disable = SystemdUnitState("kiosk-test.service", "disabled")
    assert not disable.is_applied(target)
    disable.apply(target)
    assert disable.is_applied(target)


def test_apply_is_idempotent_and_plan_lists_pending(target: Target, config: BoothConfig, root: Path) -> None:
    step = FileStep()
    pending = core.plan([step], config, target)
    assert pending[0].describe() == "files: directory /var/lib/kiosk (0700 root:root)"
    assert len(pending) == 4
    assert not (root / "etc/kiosk").exists(), "plan changed the target"
    applied = core.apply([step], config, target)
    assert [p.describe() for p in applied] == [p.describe() for p in pending]
    assert core.plan([step], config, target) == []
    assert core.apply([step], config, target) == []


def test_a_change_that_does_not_hold_is_an_error(target: Target, config: BoothConfig) -> None:
    @dataclass(frozen=True)
    class Stubborn:
        def describe(self) -> str:
            return "never holds"

        def is_applied(self, target: Target) -> bool:
            return False

        def apply(self, target: Target) -> None:
            pass

    @dataclass
    class StubbornStep:
        name: str = "stubborn"
        description: str = ""

        def changes(self, config: BoothConfig, target: Target) -> list[core.Change]:
            return [Stubborn()]

    with pytest.raises(ApplyError) as caught:
        core.apply([StubbornStep()], config, target)
    assert (caught.value.step, caught.value.reason) == ("stubborn", "applied but does not hold")


def test_configuration_of_every_step_is_checked_before_anything_changes(
    target: Target, config: BoothConfig, root: Path
) -> None:
    @dataclass
    class BadConfig:
        name: str = "bad"
        description: str = ""

        def changes(self, config: BoothConfig, target: Target) -> list[core.Change]:
            raise ConfigError("bad.key", "wrong")

    with pytest.raises(ConfigError):
        core.apply([FileStep(), BadConfig()], config, target)
    assert not (root / "etc/kiosk").exists()


@pytest.fixture
def file_registry(monkeypatch: pytest.MonkeyPatch) -> FileStep:
    step = FileStep()
    monkeypatch.setattr(steps, "STEPS", (step,))
    return step


def test_cli_dry_run_check_apply(
    file_registry: FileStep, root: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = ["--config", str(EXAMPLE), "--root", str(root)]
    assert cli.main([*base, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would apply files: write /etc/kiosk/a.conf (0640 root:root, 4 bytes)" in out
    assert not (root / "etc/kiosk").exists()
    assert cli.main([*base, "--check"]) == 1
    assert "drift files: symlink /etc/kiosk/current -> a.conf" in capsys.readouterr().out
    assert cli.main(base) == 0
    assert "4 change(s) applied" in capsys.readouterr().out
    assert cli.main([*base, "--check", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["drift"] is False
    assert document["changes"] == []
    (root / "etc/kiosk/b").write_bytes(b"tampered\n")
    assert cli.main([*base, "--check", "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["changes"] == [{"step": "files", "change": "write /etc/kiosk/b (0640 root:root, 2 bytes)"}]


def test_cli_errors_have_their_own_status(
    file_registry: FileStep, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[booth]\nid = "Booth 1"\n[hub]\nhost = "hub"\n')
    assert cli.main(["--config", str(bad), "--root", str(root)]) == 2
    assert "booth.id" in capsys.readouterr().err
    assert cli.main(["--config", str(EXAMPLE), "--root", str(root), "--only", "nope"]) == 2
    assert "unknown step 'nope'" in capsys.readouterr().err
    (root / "etc/kiosk").write_text("a file where a directory should be")
    assert cli.main(["--config", str(EXAMPLE), "--root", str(root)]) == 3


def test_registry_matches_the_step_modules() -> None:
    modules = {path.stem for path in Path(steps.__file__).parent.glob("*.py") if path.stem != "__init__"}
    assert modules <= set(steps.ORDER), f"steps missing from ORDER: {modules - set(steps.ORDER)}"
    assert [step.name for step in steps.STEPS] == [name for name in steps.ORDER if name in modules]
    for step in steps.STEPS:
        assert step.description
