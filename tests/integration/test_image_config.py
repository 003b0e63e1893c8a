"""The image's configuration and scripts, checked without building: mkosi 14 parses the config
(an unknown key is an error there), the scripts pass bash -n and shellcheck, the boot test's qemu
command line is what the booth needs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from image.boot_test import Machine, QmpError, pick_accel, qemu_argv, qmp_command, screenshot

IMAGE = Path(__file__).resolve().parents[2] / "image"
SCRIPTS = ["build", "customize", "boot-test", "test-overlay"]


def summary(directory: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mkosi", "-C", str(directory), f"--output-dir={output}", "summary"], capture_output=True, text=True
    )


def test_mkosi_parses_the_config(tmp_path: Path) -> None:
    result = summary(IMAGE, tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr  # mkosi 14 prints its summary on stderr
    lines = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}
    assert lines["Distribution"] == "debian"
    assert lines["Release"] == "bookworm"
    assert lines["Output Format"] == "directory"
    for package in ("linux-image-amd64", "systemd-boot-efi", "python3-venv", "cage"):
        assert package in text


def test_a_misspelt_key_fails_the_parse(tmp_path: Path) -> None:
    config = tmp_path / "conf"
    config.mkdir()
    text = (IMAGE / "mkosi.default").read_text().replace("Format=directory", "Fromat=directory")
    (config / "mkosi.default").write_text(text)
    result = summary(config, tmp_path / "out")
    assert result.returncode != 0
    assert "fromat" in result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_and_pass_shellcheck(script: str) -> None:
    path = IMAGE / script
    shell = "sh" if path.read_text().startswith("#!/bin/sh") else "bash"
    subprocess.run([shell, "-n", str(path)], check=True)
    subprocess.run(["shellcheck", "--severity=style", str(path)], check=True)


def test_shellcheck_does_catch_a_bug(tmp_path: Path) -> None:
    # the test above is only worth something if shellcheck fails on a real mistake
    script = tmp_path / "bad"
    script.write_text("#!/bin/bash\nrm -rf $1/*\n")
    assert subprocess.run(["shellcheck", str(script)], capture_output=True).returncode != 0


def test_qemu_machine(tmp_path: Path) -> None:
    argv = qemu_argv(Machine(image=tmp_path / "kiosk.raw", vars_file=tmp_path / "vars.fd"))
    line = " ".join(argv)
    assert argv[0] == shutil.which("qemu-system-x86_64") or argv[0] == "qemu-system-x86_64"
    assert "-accel kvm" in line
    assert f"if=virtio,format=raw,snapshot=on,file={tmp_path / 'kiosk.raw'}" in line  # the image is never written
    assert "-device virtio-gpu-pci" in line  # cage's DRM device
    assert "-nic none" in line  # nothing leaves the host
    assert argv[argv.index("-serial") + 1] == "stdio"
    assert Path(argv[argv.index("-drive") + 1].rsplit("file=", 1)[1]).is_file()  # OVMF is installed


def test_tcg_machine(tmp_path: Path) -> None:
    line = " ".join(qemu_argv(Machine(image=tmp_path / "x.raw", vars_file=tmp_path / "v.fd", accel="tcg")))
    assert "-accel tcg -cpu max" in line
    assert "kvm" not in line


def test_qmp_socket_only_when_asked(tmp_path: Path) -> None:
    plain = qemu_argv(Machine(image=tmp_path / "x.raw", vars_file=tmp_path / "v.fd"))
    assert "-qmp" not in plain
    argv = qemu_argv(Machine(image=tmp_path / "x.raw", vars_file=tmp_path / "v.fd", qmp_socket=tmp_path / "q.sock"))
    assert argv[argv.index("-qmp") + 1] == f"unix:{tmp_path / 'q.sock'},server=on,wait=off"


def test_screenshot_through_qmp(tmp_path: Path) -> None:
    """A real qemu (no disk, SeaBIOS on a standard VGA) answers screendump with a PNG; a refused
    command is a QmpError, and a dead socket gives no screenshot rather than an exception."""
    sock = tmp_path / "qmp.sock"
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-machine", "q35", "-accel", "tcg",
         "-device", "VGA", "-display", "none", "-monitor", "none", "-serial", "none",
         "-qmp", f"unix:{sock},server=on,wait=off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(200):
            if sock.exists():
                break
            assert qemu.poll() is None, qemu.stderr.read() if qemu.stderr else ""
            subprocess.run(["sleep", "0.05"], check=True)
        target = tmp_path / "shots" / "screen.png"
        assert asyncio.run(screenshot(sock, target)) is True
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(QmpError, match="no-such-command"):
            asyncio.run(qmp_command(sock, "no-such-command", {}))
    finally:
        qemu.terminate()
        qemu.communicate(timeout=10)  # also closes its stderr pipe
    assert asyncio.run(screenshot(sock, tmp_path / "after.png")) is False
    assert not (tmp_path / "after.png").exists()


def test_accel_choice(tmp_path: Path) -> None:
    kvm = tmp_path / "kvm"
    pvm = tmp_path / "kvm_pvm"
    assert pick_accel("auto", kvm_device=kvm, pvm_module=pvm) == "tcg"  # no /dev/kvm
    kvm.touch()
    assert pick_accel("auto", kvm_device=kvm, pvm_module=pvm) == "kvm"
    pvm.mkdir()  # PVM runs only PVM-built guest kernels
    assert pick_accel("auto", kvm_device=kvm, pvm_module=pvm) == "tcg"
    assert pick_accel("kvm", kvm_device=kvm, pvm_module=pvm) == "kvm"  # asked for: no second guess


def _verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # kiosk-app.service (the systemd helper's) next to it: the report unit requires it.
    shutil.copy(IMAGE.parent / "systemd" / "kiosk-app.service", tmp_path / "kiosk-app.service")
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )


def test_ready_report_unit_verifies_and_is_sandboxed(tmp_path: Path) -> None:
    unit = tmp_path / "kiosk-ready-report.service"
    shutil.copy(IMAGE / "units" / unit.name, unit)
    result = _verify(unit, tmp_path)
    assert result.returncode == 0, result.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)], capture_output=True, text=True
    )
    assert security.returncode == 0, security.stdout[-2000:]
    exposure = float(security.stdout.rsplit("Overall exposure level for", 1)[1].split(":")[1].split()[0])
    assert exposure <= 2.0


def test_verify_does_catch_a_broken_unit(tmp_path: Path) -> None:
    unit = tmp_path / "kiosk-ready-report.service"
    text = (IMAGE / "units" / unit.name).read_text().replace("ExecStart=/bin/sh", "ExecStart=bin/sh")
    unit.write_text(text)
    assert _verify(unit, tmp_path).returncode != 0
