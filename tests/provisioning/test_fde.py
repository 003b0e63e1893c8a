"""FDE: the enrolment script (bash -n, shellcheck) and a real enrolment of a LUKS2 file against swtpm."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.core import Target
from provisioning.errors import ConfigError
from provisioning.steps import fde

from .conftest import make_config

SCRIPT = fde.SCRIPT


def test_script_syntax_and_shellcheck() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def _free_ports() -> tuple[int, int]:
    # The swtpm TCTI reaches the control channel on the command port + 1: find two free neighbours.
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port, port + 1
    raise RuntimeError("no two free neighbouring ports")


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[str]:
    """A software TPM2 on loopback; yields the TCTI spec systemd-cryptenroll takes as --tpm2-device."""
    state = tmp_path / "tpm-state"
    state.mkdir()
    port, ctrl = _free_ports()
    process = subprocess.Popen(
        [
            "swtpm",
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={state}",
            "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={ctrl},bindaddr=127.0.0.1",
            "--flags",
            "not-need-init,startup-clear",
        ]
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("swtpm exited") from None
                subprocess.run(["sleep", "0.05"], check=True)
        yield f"swtpm:host=127.0.0.1,port={port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_enrolment_against_a_software_tpm(tmp_path: Path, swtpm: str) -> None:
    disk = tmp_path / "disk.img"
    with disk.open("wb") as out:
        out.truncate(32 * 1024 * 1024)
    passphrase = "synthetic-test-passphrase"
    key_file = tmp_path / "key"
    key_file.write_text(passphrase)
    fast_kdf = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]
    subprocess.run(
        [
            "cryptsetup",
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            *fast_kdf,
            "--key-file",
            str(key_file),
            str(disk),
        ],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        ["bash", str(SCRIPT), "--tpm2-device", swtpm, "--pcrs", "7", "--name", "booth_crypt", str(disk)],
        env={**os.environ, "PASSWORD": passphrase},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "booth_crypt UUID=" in result.stdout
    assert "tpm2-device=auto" in result.stdout
    dump = subprocess.run(["cryptsetup", "luksDump", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "systemd-tpm2" in dump
    assert "tpm2-hash-pcrs:   7" in dump
    # The passphrase keyslot is still there until the technician wipes it (README step 7).
    assert dump.count("luks2") >= 2


def test_script_refuses_what_is_not_luks2(tmp_path: Path) -> None:
    plain = tmp_path / "plain.img"
    plain.write_bytes(b"\0" * 4096)
    result = subprocess.run(["bash", str(SCRIPT), str(plain)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "not a LUKS2 volume" in result.stderr
    result = subprocess.run(["bash", str(SCRIPT), "--pcrs", "7;id", str(plain)], capture_output=True, text=True)
    assert result.returncode == 2


def test_fde_step(target: Target, root: Path) -> None:
    assert fde.STEP.changes(make_config(), target) == []
    config = make_config(fde={"enabled": True, "pcrs": "0+7"})
    changes = fde.STEP.changes(config, target)
    described = [change.describe() for change in changes]
    assert any("dracut" in text for text in described)
    script = next(change for change in changes if "kiosk-enroll-tpm2" in change.describe())
    script.apply(target)
    assert (root / "usr/local/sbin/kiosk-enroll-tpm2").stat().st_mode & 0o777 == 0o755
    assert b"PCRs 0+7" in fde.dracut_conf(fde.parse(config))
    with pytest.raises(ConfigError) as caught:
        fde.parse(make_config(fde={"pcrs": "7,8"}))
    assert caught.value.key == "fde.pcrs"
