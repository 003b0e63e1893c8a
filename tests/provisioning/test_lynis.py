"""The Lynis runner's parsers: the report, the root's fstab (boot mounts) and sysctl.d (network keys)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning import lynis
from provisioning.errors import TargetError
from provisioning.steps import mounts

from .conftest import make_config

REPORT = """\
# Lynis Report
report_version_major=1
lynis_tests_done=233
hardening_index=88
warning[]=LOGG-2138|klogd is not running|-|-|
suggestion[]=DEB-0810|Install apt-listbugs|-|-|
suggestion[]=KRNL-6000|One or more sysctl values differ|-|-|
"""


def test_report() -> None:
    result = lynis.read_report(REPORT)
    assert (result.hardening_index, result.tests_performed) == (88, 233)
    assert result.warnings == ("LOGG-2138",)
    assert result.suggestions == ("DEB-0810", "KRNL-6000")
    with pytest.raises(TargetError, match="hardening_index"):
        lynis.read_report("lynis_tests_done=3\n")


@given(st.text(max_size=300))
def test_any_report_text_gives_a_result_or_a_typed_error(text: str) -> None:
    try:
        result: lynis.LynisResult | TargetError = lynis.read_report(text)
    except TargetError as exc:
        result = exc
    assert isinstance(result, lynis.LynisResult | TargetError)


def test_boot_mounts_of_the_mounts_step(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/group").write_text("root:x:0:\nproc:x:998:\n")
    settings = mounts.parse(make_config())
    (root / "etc/fstab").write_text(mounts.render_fstab("UUID=abc / ext4 defaults 0 1\n", settings))
    commands = lynis.boot_mounts(root)
    assert f"mount -t tmpfs -o nodev,nosuid,noexec,mode=1777,size=25% tmpfs {root}/tmp" in commands
    assert f"mount --bind {root}/var/tmp {root}/var/tmp" in commands
    assert f"mount -o remount,bind,nodev,nosuid,noexec {root}/var/tmp" in commands
    assert f"mount -t proc -o nodev,nosuid,noexec,hidepid=invisible,gid=998 proc {root}/proc" in commands
    assert not any(" / " in command or command.endswith(f"{root}/") for command in commands), "disks are not mounted"


_fstab_field = st.text(alphabet="abcdefgh/.=,;$`'\" -", min_size=1, max_size=15).map(lambda s: s.replace(" ", ""))
_fstab_kind = st.sampled_from(["tmpfs", "proc", "none", "ext4"])
_fstab_line = st.one_of(
    st.tuples(_fstab_field, _fstab_field, _fstab_kind, _fstab_field | st.just("bind")).map(
        lambda row: " ".join(field or "x" for field in row) + " 0 0"
    ),
    st.text(max_size=40),
)


@given(st.lists(_fstab_line, max_size=8))
def test_boot_mounts_never_leave_the_root(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    root = tmp_path_factory.mktemp("root")
    (root / "etc").mkdir()
    (root / "etc/fstab").write_text("\n".join(lines))
    for command in lynis.boot_mounts(root):
        argv = shlex.split(command)
        assert argv[0] == "mount"
        paths = argv[-2:] if argv[1] == "--bind" else argv[-1:]
        for path in paths:
            assert path.startswith(str(root) + "/"), command
            assert ".." not in path.split("/")


def test_network_sysctls_only_per_namespace_keys(tmp_path: Path) -> None:
    directory = tmp_path / "etc/sysctl.d"
    directory.mkdir(parents=True)
    (directory / "10-a.conf").write_text(
        "kernel.kptr_restrict = 2\nnet.ipv4.tcp_syncookies = 1\nnet.core.bpf_jit_harden = 2\n"
        "net.ipv4.ip_local_port_range = 32768 65535\n"
    )
    (directory / "20-b.conf").write_text("net.ipv4.tcp_syncookies=0\nnet.ipv6.conf.all.accept_ra = 0\n# x = 1\n")
    assert lynis.network_sysctls(tmp_path) == {
        "net.ipv4.tcp_syncookies": "0",
        "net.ipv4.ip_local_port_range": "32768 65535",
        "net.ipv6.conf.all.accept_ra": "0",
    }


@given(st.lists(st.text(alphabet="netipv46.coralsfy_=0123 ;$`'\n", max_size=40), max_size=8))
def test_network_sysctls_never_pass_a_shell_word(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    root = tmp_path_factory.mktemp("root")
    (root / "etc/sysctl.d").mkdir(parents=True)
    (root / "etc/sysctl.d/x.conf").write_text("\n".join(lines))
    for key, value in lynis.network_sysctls(root).items():
        assert key.startswith(("net.ipv4.", "net.ipv6."))
        assert set(value) <= set("0123456789 \t")
