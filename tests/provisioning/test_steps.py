"""Each provisioning step on a temporary root: the files it writes, its configuration errors, idempotence."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning import core
from provisioning.config import BoothConfig
from provisioning.core import EnsurePackages, RemovePackages, Target
from provisioning.errors import ConfigError
from provisioning.steps import auditd, hardening, journald, mounts, packages, project, session, sysctl, upgrades

from .conftest import make_config

# Keys a Debian kernel has that a test machine's kernel may lack: Debian's own
# patch (userns clone), the Yama LSM, kexec (absent from kernels built without it).
KERNEL_SPECIFIC = {"kernel.unprivileged_userns_clone", "kernel.yama.ptrace_scope", "kernel.kexec_load_disabled"}


def _apply_twice(step: core.Step, config: BoothConfig, target: Target) -> list[core.Pending]:
    applied = core.apply([step], config, target)
    assert core.plan([step], config, target) == [], "a second run would change something"
    return applied


def _dpkg_status(root: Path, installed: list[str]) -> None:
    status = root / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/info").mkdir(exist_ok=True)
    (root / "var/lib/dpkg/updates").mkdir(exist_ok=True)
    status.write_text(
        "".join(
            f"Package: {name}\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0\n"
            "Maintainer: test <test@example.org>\nDescription: test\n\n"
            for name in installed
        )
    )


def test_packages_are_read_from_the_targets_dpkg_database(target: Target, root: Path) -> None:
    _dpkg_status(root, ["cage", "pcscd", "telnet"])
    assert installed_set(target, ["cage", "pcscd", "auditd", "telnet"]) == {"cage", "pcscd", "telnet"}
    assert EnsurePackages(("cage", "pcscd")).is_applied(target)
    assert not EnsurePackages(("cage", "auditd")).is_applied(target)
    assert not RemovePackages(("telnet", "rsh-client")).is_applied(target)
    assert RemovePackages(("rsh-client",)).is_applied(target)


def installed_set(target: Target, names: list[str]) -> set[str]:
    return core.installed_packages(target, names)


def test_packages_configuration() -> None:
    defaults = packages.parse(make_config())
    assert "cage" in defaults.install
    assert "telnet" in defaults.remove
    assert "needrestart" not in defaults.install, "needrestart pulls binutils (an assembler) in"
    extra = packages.parse(make_config(packages={"extra": ["cups", "cage"]}))
    assert extra.install.count("cage") == 1
    assert extra.install[-1] == "cups"
    with pytest.raises(ConfigError) as caught:
        packages.parse(make_config(packages={"extra": ["telnet"]}))
    assert caught.value.key == "packages.remove"
    with pytest.raises(ConfigError) as caught:
        packages.parse(make_config(packages={"install": ["Bad_Name"]}))
    assert caught.value.key == "packages.install"


def test_session_locks_the_keyboard_out(target: Target, root: Path, config: BoothConfig) -> None:
    _apply_twice(session.STEP, config, target)
    passwd = (root / "etc/passwd").read_text()
    entry = next(line for line in passwd.splitlines() if line.startswith("kiosk:"))
    assert entry.endswith(":/var/lib/kiosk:/usr/sbin/nologin")
    shadow = next(line for line in (root / "etc/shadow").read_text().splitlines() if line.startswith("kiosk:"))
    assert shadow.split(":")[1] in ("!", "!*", "*")
    for n in range(1, 7):
        assert os.readlink(root / f"etc/systemd/system/getty@tty{n}.service") == "/dev/null"
    assert os.readlink(root / "etc/systemd/system/autovt@.service") == "/dev/null"
    assert os.readlink(root / "etc/systemd/system/ctrl-alt-del.target") == "/dev/null"
    logind = (root / "etc/systemd/logind.conf.d/50-kiosk.conf").read_text()
    assert "NAutoVTs=0\n" in logind
    assert "ReserveVT=0\n" in logind
    assert "HandlePowerKey=ignore" in logind
    assert "kernel.sysrq = 0" in (root / "etc/sysctl.d/55-kiosk-session.conf").read_text()
    state = root / "var/lib/kiosk/identity"
    assert (state.stat().st_mode & 0o777, state.stat().st_uid) == (0o700, _uid(root, "kiosk"))


def _uid(root: Path, user: str) -> int:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2])
    raise AssertionError(user)


def test_session_configuration_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        session.parse(make_config(session={"user": "Root Kiosk"}))
    assert caught.value.key == "session.user"
    with pytest.raises(ConfigError) as caught:
        session.parse(make_config(session={"mask_vts": 0}))
    assert caught.value.key == "session.mask_vts"


def _sysctl_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not key = value: {line!r}"
        assert "#" not in value, "sysctl.d has no end-of-line comments"
        values[key.strip()] = value.strip()
    return values


def test_sysctl_file_has_the_anssi_values(target: Target, root: Path, config: BoothConfig) -> None:
    _apply_twice(sysctl.STEP, config, target)
    values = _sysctl_values((root / "etc/sysctl.d/60-kiosk-hardening.conf").read_text())
    expected = {
        "kernel.kptr_restrict": "2",
        "kernel.dmesg_restrict": "1",
        "kernel.yama.ptrace_scope": "2",
        "kernel.unprivileged_bpf_disabled": "1",
        "net.core.bpf_jit_harden": "2",
        "fs.protected_symlinks": "1",
        "fs.protected_hardlinks": "1",
        "fs.protected_fifos": "2",
        "fs.protected_regular": "2",
        "fs.suid_dumpable": "0",
        "net.ipv4.conf.all.rp_filter": "1",
        "net.ipv4.conf.all.accept_redirects": "0",
        "net.ipv4.conf.all.send_redirects": "0",
        "net.ipv4.conf.all.accept_source_route": "0",
        "net.ipv4.tcp_syncookies": "1",
        "net.ipv4.conf.all.log_martians": "1",
        "net.ipv6.conf.all.accept_ra": "0",
    }
    assert {key: values.get(key) for key in expected} == expected


def test_every_sysctl_key_exists_in_a_kernel() -> None:
    values = sysctl.settings(sysctl.parse(make_config(sysctl={"ipv6": "off"})))
    values |= sysctl.settings(sysctl.parse(make_config()))
    missing = [key for key in values if key not in KERNEL_SPECIFIC and not Path("/proc/sys", *key.split(".")).exists()]
    assert missing == [], "typo, or a key this kernel lacks: add it to KERNEL_SPECIFIC with the reason"


def test_sysctl_configuration() -> None:
    config = make_config(sysctl={"ptrace_scope": 3, "extra": {"vm.swappiness": 10}})
    values = sysctl.settings(sysctl.parse(config))
    assert (values["kernel.yama.ptrace_scope"], values["vm.swappiness"]) == ("3", "10")
    cases: list[tuple[dict[str, object], str]] = [
        ({"ptrace_scope": 0}, "sysctl.ptrace_scope"),
        ({"extra": {"kernel.sysrq": 1}}, "sysctl.extra.kernel.sysrq"),
        ({"extra": {"bad key": 1}}, "sysctl.extra.bad key"),
        ({"extra": {"vm.x": "1\nkernel.sysrq = 1"}}, "sysctl.extra.vm.x"),
        ({"extra": 3}, "sysctl.extra"),
        ({"ipv6": "maybe"}, "sysctl.ipv6"),
    ]
    for bad, key in cases:
        with pytest.raises(ConfigError) as caught:
            sysctl.parse(make_config(sysctl=bad))
        assert caught.value.key == key


FSTAB = """\
# /etc/fstab: static file system information.
UUID=0a1b2c3d-0000-4000-8000-000000000001 / ext4 errors=remount-ro 0 1
UUID=0a1b2c3d-0000-4000-8000-000000000002 /tmp ext4 defaults 0 2
"""


def test_mounts_block_replaces_conflicting_lines(target: Target, root: Path, config: BoothConfig) -> None:
    (root / "etc/fstab").write_text(FSTAB)
    _apply_twice(mounts.STEP, config, target)
    fstab = (root / "etc/fstab").read_text()
    assert "UUID=0a1b2c3d-0000-4000-8000-000000000001 / ext4" in fstab
    assert "# replaced by kiosk-provision: UUID=0a1b2c3d-0000-4000-8000-000000000002 /tmp" in fstab
    rows = [line.split() for line in fstab.splitlines() if line and not line.startswith("#")]
    table = {row[1]: row for row in rows}
    assert table["/tmp"][2] == "tmpfs"
    for point in ("/tmp", "/dev/shm", "/var/tmp", "/home", "/var/lib/kiosk", "/proc"):
        options = table[point][3].split(",")
        assert {"nodev", "nosuid", "noexec"} <= set(options), point
    assert "hidepid=invisible" in table["/proc"][3]
    assert "proc:" in (root / "etc/group").read_text()
    assert (
        "SupplementaryGroups=proc"
        in (root / "etc/systemd/system/systemd-logind.service.d/50-kiosk-proc.conf").read_text()
    )


def test_fstab_is_valid_for_util_linux(tmp_path: Path) -> None:
    settings = mounts.parse(make_config(mounts={"bind_hardened": ["/var/tmp"]}))
    fstab = tmp_path / "fstab"
    fstab.write_text(mounts.render_fstab(FSTAB, settings))
    result = subprocess.run(
        ["findmnt", "--verify", "--tab-file", str(fstab)], capture_output=True, text=True, check=False
    )
    # findmnt checks the sources of this machine: only the test's made-up UUIDs may be unknown.
    errors = [line for line in result.stdout.splitlines() if "[E]" in line and "0a1b2c3d" not in line]
    assert errors == [], result.stdout


_fstab_lines = st.lists(
    st.one_of(
        st.sampled_from(["", "# comment", mounts.BEGIN, mounts.END, "tmpfs /tmp tmpfs defaults 0 0"]),
        st.text(alphabet=" \t/abcdefxyz=#,", max_size=40),
    ),
    max_size=12,
)


@given(_fstab_lines)
def test_fstab_rendering_is_stable(lines: list[str]) -> None:
    settings = mounts.parse(make_config())
    once = mounts.render_fstab("\n".join(lines), settings)
    assert mounts.render_fstab(once, settings) == once
    assert once.count(mounts.BEGIN) == 1
    live = [line.split() for line in once.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert [fields[1] for fields in live if len(fields) > 1].count("/tmp") == 1


def test_mounts_configuration() -> None:
    config = make_config(mounts={"kiosk_state_device": "LABEL=kiosk-state", "hidepid": False})
    rows = mounts.entries(mounts.parse(config))
    assert ("LABEL=kiosk-state", "/var/lib/kiosk", "ext4", "nodev,nosuid,noexec,noatime") in rows
    assert all(row[1] != "/proc" for row in rows)
    with pytest.raises(ConfigError) as caught:
        mounts.parse(make_config(mounts={"kiosk_state_device": "/dev/sda1;rm"}))
    assert caught.value.key == "mounts.kiosk_state_device"
    with pytest.raises(ConfigError):
        mounts.parse(make_config(mounts={"tmp_size": "huge"}))


LOGIN_DEFS = "MAIL_DIR /var/mail\nUMASK\t\t022\n# UMASK 077\nPASS_MAX_DAYS 99999\nPASS_MAX_DAYS 5\n"


def test_hardening_files(target: Target, root: Path, config: BoothConfig) -> None:
    (root / "etc/login.defs").write_text(LOGIN_DEFS)
    _apply_twice(hardening.STEP, config, target)
    defs = (root / "etc/login.defs").read_text()
    assert "UMASK\t027" in defs
    assert "# UMASK 077" in defs, "comments are kept"
    assert defs.count("PASS_MAX_DAYS") == 1
    assert "MAIL_DIR /var/mail" in defs
    blacklist = (root / "etc/modprobe.d/kiosk-blacklist.conf").read_text()
    assert "install usb-storage /bin/false" in blacklist
    assert "install firewire-core /bin/false" in blacklist
    assert "hard    core    0" in (root / "etc/security/limits.d/50-kiosk-core.conf").read_text()
    assert "readonly TMOUT" in (root / "etc/profile.d/kiosk-tmout.sh").read_text()
    banner = (root / "etc/issue").read_text()
    assert "\\" not in banner, "agetty would expand escapes in /etc/issue"


@given(st.lists(st.sampled_from(["UMASK 022", "PASS_MIN_DAYS 0", "# x", "", "FOO bar", "UMASK"]), max_size=10))
def test_login_defs_rendering_is_stable(lines: list[str]) -> None:
    settings = hardening.parse(make_config())
    once = hardening.login_defs("\n".join(lines), settings)
    assert hardening.login_defs(once, settings) == once
    assert len(re.findall(r"^UMASK\t027$", once, re.MULTILINE)) == 1


def test_hardening_configuration() -> None:
    with pytest.raises(ConfigError) as caught:
        hardening.parse(make_config(hardening={"umask": "0777"}))
    assert caught.value.key == "hardening.umask"
    with pytest.raises(ConfigError) as caught:
        hardening.parse(make_config(hardening={"banner": "line one\nline two"}))
    assert caught.value.key == "hardening.banner"


def test_journald_configuration_and_sealing_state(target: Target, root: Path) -> None:
    config = make_config(journald={"system_max_use": "256M"})
    settings = journald.parse(config)
    text = journald.render(settings).decode()
    assert "Storage=persistent\n" in text
    assert "Seal=yes\n" in text
    assert "SystemMaxUse=256M\n" in text
    keys = journald.SealingKeys("15min", "")
    assert not keys.is_applied(target), "no machine id yet"
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    assert not keys.is_applied(target)
    fss = root / "var/log/journal/0123456789abcdef0123456789abcdef/fss"
    fss.parent.mkdir(parents=True)
    fss.write_bytes(b"KSHHRHLP")
    assert keys.is_applied(target)
    with pytest.raises(ConfigError) as caught:
        journald.parse(make_config(journald={"seal_interval": "often"}))
    assert caught.value.key == "journald.seal_interval"


AUDIT_RULE = re.compile(
    r"-D|-b \d+|-f [012]|--backlog_wait_time \d+|-e [012]"
    r"|-w /[^ ]* -p [rwxa]+ -k [a-z-]+"
    r"|-a always,exit -F arch=b(?:32|64) -S [a-z0-9_,]+(?: -F auid!=unset)? -k [a-z-]+"
)


def test_audit_rules(target: Target, root: Path) -> None:
    config = make_config(auditd={"extra_watches": ["/srv/booth"]})
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "auditd.service").write_text("[Service]\nExecStart=/sbin/auditd\n[Install]\nWantedBy=multi-user.target\n")
    _apply_twice(auditd.STEP, config, target)
    path = root / "etc/audit/rules.d/50-kiosk.rules"
    assert path.stat().st_mode & 0o777 == 0o640
    rules = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert [rule for rule in rules if AUDIT_RULE.fullmatch(rule) is None] == []
    for watched in ("/etc/kiosk/", "/var/lib/kiosk/identity/", "/opt/kiosk/", "/etc/sudoers", "/etc/passwd"):
        assert any(rule.startswith(f"-w {watched} ") for rule in rules), watched
    assert "-w /srv/booth -p wa -k kiosk-extra" in rules
    assert rules[-1] == "-e 2"
    assert (root / "etc/systemd/system/multi-user.target.wants/auditd.service").is_symlink()


DEFAULT_UNATTENDED = """\
Unattended-Upgrade::Origins-Pattern {
        "origin=Debian,codename=${distro_codename},label=Debian";
        "origin=Debian,codename=${distro_codename},label=Debian-Security";
        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
};
"""


def test_unattended_upgrades_keep_security_origins_only(tmp_path: Path) -> None:
    settings = upgrades.parse(make_config(upgrades={"reboot_time": "04:15"}))
    # apt reads apt.conf.d in name order: the package's 50unattended-upgrades, then ours.
    merged = tmp_path / "apt.conf"
    merged.write_text(DEFAULT_UNATTENDED + upgrades.render_unattended(settings).decode())
    empty = tmp_path / "empty.conf"
    empty.write_text("")
    result = subprocess.run(
        ["apt-config", "-c", str(merged), "dump", "Unattended-Upgrade"],
        capture_output=True,
        text=True,
        check=True,
        env={"APT_CONFIG": str(empty), "PATH": "/usr/bin:/bin"},
    )
    origins = [line for line in result.stdout.splitlines() if "Origins-Pattern::" in line]
    assert len(origins) == 1
    assert "codename=${distro_codename}-security,label=Debian-Security" in origins[0]
    assert 'Unattended-Upgrade::Automatic-Reboot-Time "04:15";' in result.stdout
    with pytest.raises(ConfigError) as caught:
        upgrades.parse(make_config(upgrades={"reboot_time": "25:00"}))
    assert caught.value.key == "upgrades.reboot_time"


def test_security_source_added_only_when_missing(target: Target, root: Path, config: BoothConfig) -> None:
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    (root / "etc/apt/sources.list").write_text("deb http://deb.debian.org/debian bookworm main\n")
    _apply_twice(upgrades.STEP, config, target)
    ours = root / "etc/apt/sources.list.d/kiosk-debian-security.list"
    assert "bookworm-security main" in ours.read_text()
    (root / "etc/apt/sources.list").write_text(
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
    )
    _apply_twice(upgrades.STEP, config, target)
    assert not ours.exists(), "one security source is enough"


def test_project_configuration(tmp_path: Path) -> None:
    assert project.parse(make_config(project={"install": False})).install is False
    with pytest.raises(ConfigError) as caught:
        project.parse(make_config())
    assert caught.value.key == "project.source"
    with pytest.raises(ConfigError, match="not a wheel"):
        project.parse(make_config(project={"source": str(tmp_path / "project.tar.gz")}))
    with pytest.raises(ConfigError, match="does not exist"):
        project.parse(make_config(project={"source": str(tmp_path / "kiosk-0.1.0-py3-none-any.whl")}))
    wheel = tmp_path / "teleconsult_kiosk-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    settings = project.parse(make_config(project={"source": str(wheel), "pip_args": ["--no-index"]}))
    assert (settings.source, settings.pip_args) == (wheel, ("--no-index",))
    with pytest.raises(ConfigError) as caught:
        project.parse(make_config(project={"source": str(wheel), "pip_args": ["--index-url=x; rm -rf /"]}))
    assert caught.value.key == "project.pip_args"
