"""The ssh step: off by default; when on, a config sshd accepts and that refuses all but hardened key logins."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.config import BoothConfig
from provisioning.core import EnsurePackages, EnsureUser, RemovePath, SystemdUnitState, Target, WriteFile
from provisioning.errors import ConfigError
from provisioning.steps import ssh
from tests.provisioning.conftest import make_config
from tests.provisioning.policy_support import free_port, private_mounts, quote, written


def keygen(directory: Path, kind: str = "ed25519", name: str = "id") -> Path:
    key = directory / f"{name}_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "tech@laptop", "-f", str(key)], check=True)
    return key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    keygen(directory, "ed25519")
    keygen(directory, "ecdsa")
    keygen(directory, "ed25519", "host")
    return directory


def enabled_config(keys: Path, **extra: object) -> BoothConfig:
    public = (keys / "id_ed25519.pub").read_text()
    table: dict[str, object] = {"enabled": True, "authorized_keys": {"maint": [public]}, **extra}
    return make_config(ssh=table)


def sshd(config_file: Path, *args: str, host_key: Path | None = None) -> subprocess.CompletedProcess[str]:
    script = quote("/usr/sbin/sshd", "-f", config_file, *args)
    return private_mounts(script)


def test_off_by_default_masks_the_service_and_applies_once(target: Target, config: BoothConfig) -> None:
    changes = ssh.STEP.changes(config, target)
    assert SystemdUnitState("ssh.service", "masked") in changes
    assert SystemdUnitState("ssh.socket", "masked") in changes
    assert RemovePath(ssh.AUTHORIZED_KEYS_DIR) in changes
    keys_dir = target.path(ssh.AUTHORIZED_KEYS_DIR)
    keys_dir.mkdir(parents=True)
    (keys_dir / "maint").write_text("ssh-ed25519 AAAA old\n")
    for change in changes:
        change.apply(target)
    assert all(change.is_applied(target) for change in ssh.STEP.changes(config, target))
    assert (target.root / "etc/systemd/system/ssh.service").readlink() == Path("/dev/null")
    assert not keys_dir.exists()


def test_rendered_config_passes_sshd_t(keys: Path, tmp_path: Path) -> None:
    settings = ssh.parse_settings(enabled_config(keys).section("ssh"))
    config_file = tmp_path / "sshd_config"
    config_file.write_text(ssh.render_sshd_config(settings, host_key=str(keys / "host_ed25519")))
    result = sshd(config_file, "-t")
    assert result.returncode == 0, result.stderr


def test_effective_settings_are_the_hardened_ones(keys: Path, tmp_path: Path) -> None:
    settings = ssh.parse_settings(enabled_config(keys, allow_from=["192.0.2.0/24", "2001:db8::/32"]).section("ssh"))
    config_file = tmp_path / "sshd_config"
    config_file.write_text(ssh.render_sshd_config(settings, host_key=str(keys / "host_ed25519")))
    result = sshd(config_file, "-T", "-C", "user=maint,host=laptop,addr=192.0.2.9")
    assert result.returncode == 0, result.stderr
    effective = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert effective["kexalgorithms"] == ",".join(ssh.KEX)
    assert effective["ciphers"] == ",".join(ssh.CIPHERS)
    assert effective["macs"] == ",".join(ssh.MACS)
    assert effective["hostkeyalgorithms"] == "ssh-ed25519"
    assert effective["pubkeyacceptedalgorithms"] == ",".join(ssh.KEY_TYPES)
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["permitrootlogin"] == "no"
    assert effective["authenticationmethods"] == "publickey"
    # sshd -T prints one line per AllowUsers pattern.
    allowed = [line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("allowusers ")]
    assert allowed == ["maint@192.0.2.0/24", "maint@2001:db8::/32"]
    assert effective["maxauthtries"] == "3"
    assert effective["maxstartups"] == "3:50:10"
    assert effective["x11forwarding"] == "no"
    assert effective["allowtcpforwarding"] == "no"


def test_root_only_ever_with_a_key(keys: Path) -> None:
    public = (keys / "id_ed25519.pub").read_text()
    settings = ssh.parse_settings({"enabled": True, "authorized_keys": {"root": [public]}})
    assert "PermitRootLogin prohibit-password" in ssh.render_sshd_config(settings)
    settings = ssh.parse_settings({"enabled": True, "authorized_keys": {"maint": [public]}})
    assert "PermitRootLogin no" in ssh.render_sshd_config(settings)


@pytest.mark.timeout(60)
def test_a_running_sshd_accepts_the_key_and_refuses_everything_else(keys: Path, tmp_path: Path) -> None:
    # root is the one account every test machine has; the key lives on a tmpfs so
    # StrictModes accepts its directory (it refuses a path through /tmp).
    port = free_port()
    public = (keys / "id_ed25519.pub").read_text()
    settings = ssh.parse_settings({"enabled": True, "port": port, "authorized_keys": {"root": [public]}})
    config_file = tmp_path / "sshd_config"
    config_file.write_text(
        ssh.render_sshd_config(
            settings, host_key="/run/t/host", authorized_keys_dir="/run/t/keys", listen_address="127.0.0.1"
        )
    )
    keys_file = tmp_path / "root.keys"
    keys_file.write_text(ssh.render_authorized_keys(settings.keys[0][1]))
    script = (
        "mkdir -m 0755 /run/t /run/t/keys && "
        f"cp {quote(keys_file)} /run/t/keys/root && cp {quote(keys / 'host_ed25519')} /run/t/host && "
        f"exec /usr/sbin/sshd -D -e -f {quote(config_file)}"
    )
    wrapped = "mount -t tmpfs -o mode=0755 none /run && mkdir -m 0755 /run/sshd && " + script
    server = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", wrapped],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = ["ssh", "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        base += ["-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-F", "/dev/null"]

        def login(*options: str, key: str = "id_ed25519") -> subprocess.CompletedProcess[str]:
            argv = [*base, *options, "-i", str(keys / key), "root@127.0.0.1", "echo", "in"]
            return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)

        for _ in range(50):
            if login().returncode == 0:
                break
            time.sleep(0.1)
        assert login().stdout.strip() == "in"
        assert "Permission denied" in login(key="id_ecdsa").stderr
        assert "no matching key exchange" in login("-o", "KexAlgorithms=diffie-hellman-group14-sha256").stderr
        assert "no matching cipher" in login("-c", "aes128-ctr").stderr
        # No MAC check: every cipher offered is AEAD, so no MAC is ever negotiated.
        password = login("-o", "PreferredAuthentications=password,keyboard-interactive")
        assert password.returncode != 0
        assert "Permission denied (publickey)" in password.stderr
    finally:
        server.terminate()
        server.communicate(timeout=10)


def test_enabled_step_writes_config_keys_and_user(keys: Path, target: Target, root: Path) -> None:
    (root / "etc/ssh/authorized_keys").mkdir(parents=True)
    (root / "etc/ssh/authorized_keys/former").write_text("ssh-ed25519 AAAA former\n")
    config = enabled_config(keys)
    changes = ssh.STEP.changes(config, target)
    assert changes[0] == EnsurePackages(("openssh-server",))
    assert EnsureUser("maint", home="/home/maint", shell="/bin/bash", groups=("adm", "systemd-journal")) in changes
    assert RemovePath("/etc/ssh/authorized_keys/former") in changes
    assert written(changes, "/etc/ssh/authorized_keys/maint").decode() == (keys / "id_ed25519.pub").read_text()
    sshd_config = written(changes, ssh.SSHD_CONFIG).decode()
    assert "PasswordAuthentication no" in sshd_config
    assert "AllowUsers maint\n" in sshd_config
    assert "Include" not in sshd_config
    assert SystemdUnitState("ssh.service", "enabled") in changes
    key_file = next(c for c in changes if isinstance(c, WriteFile) and c.path.endswith("/maint"))
    assert (key_file.owner, key_file.mode) == ("root", 0o644)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"enabled": True}, "ssh.authorized_keys"),
        ({"port": 0}, "ssh.port"),
        ({"prot": 22}, "ssh.prot"),
        ({"authorized_keys": {"Bad User": ["x"]}}, "ssh.authorized_keys.Bad User"),
        ({"authorized_keys": {"maint": []}}, "ssh.authorized_keys.maint"),
        ({"authorized_keys": {"maint": ["ssh-rsa AAAAB3NzaC1yc2E= x"]}}, "ssh.authorized_keys.maint[0]"),
        ({"allow_from": ["192.0.2.1/24"]}, "ssh.allow_from[0]"),
        ({"max_auth_tries": 10}, "ssh.max_auth_tries"),
        ({"groups": ["ok", "Not ok"]}, "ssh.groups[1]"),
    ],
)
def test_bad_values_name_their_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ssh.parse_settings(table)
    assert raised.value.key == key


def test_keys_are_checked(keys: Path) -> None:
    public = (keys / "id_ed25519.pub").read_text().strip()
    kind, blob, comment = public.split(" ", 2)
    rsa_blob = base64.b64encode(b"\x00\x00\x00\x07ssh-rsa" + b"x" * 32).decode()
    assert ssh.parse_key(public, "k") == ssh.AuthorizedKey(kind, blob, comment)
    refused = [
        (keys / "id_ecdsa.pub").read_text(),  # not ed25519
        f'command="/bin/sh" {public}',  # options are not ours to give
        f"{kind} {blob[:-8]}",  # truncated
        f"{kind} {base64.b64encode(base64.b64decode(blob) + b'x').decode()}",  # trailing bytes
        f"{kind} {rsa_blob}",  # blob of another type
        f"{kind} {blob} two\nlines",
        kind,
    ]
    for line in refused:
        with pytest.raises(ConfigError):
            ssh.parse_key(line, "k")


@given(st.text(max_size=300))
def test_any_key_line_is_refused_cleanly_or_reads_back(line: str) -> None:
    try:
        key = ssh.parse_key(line, "k")
    except ConfigError:
        return
    assert "\n" not in key.line() and "\r" not in key.line()
    assert ssh.parse_key(key.line(), "k") == key


def ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


@given(
    kind=st.sampled_from(ssh.KEY_TYPES),
    point=st.binary(min_size=32, max_size=32),
    application=st.binary(max_size=20),
    comment=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
def test_well_formed_keys_round_trip(kind: str, point: bytes, application: bytes, comment: str) -> None:
    raw = ssh_string(kind.encode()) + ssh_string(point)
    if kind.startswith("sk-"):
        raw += ssh_string(b"ssh:" + application)
    blob = base64.b64encode(raw).decode()
    line = f"{kind} {blob} {comment}"
    key = ssh.parse_key(line, "k")
    assert (key.kind, key.blob) == (kind, blob)
    assert key.comment == comment.strip()
