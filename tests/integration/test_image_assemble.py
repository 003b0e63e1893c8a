"""image/assemble: the disk layout by hand and with hypothesis, then a real disk from a small tree
(real mkfs.fat, mtools, mke2fs and sfdisk), read back with sfdisk, mtools and debugfs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from image.assemble import (
    ALIGN,
    ESP_TYPE,
    GPT_TAIL,
    MIB,
    ROOT_X86_64_TYPE,
    ImageError,
    assemble,
    boot_entry,
    find_boot_files,
    loader_conf,
    plan_layout,
    sfdisk_script,
)

U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"


def fake_tree(root: Path, versions: tuple[str, ...] = ("6.1.0-9-amd64",)) -> Path:
    for version in versions:
        (root / "boot").mkdir(parents=True, exist_ok=True)
        (root / "boot" / f"vmlinuz-{version}").write_bytes(b"MZ kernel " + version.encode())
        (root / "boot" / f"initrd.img-{version}").write_bytes(b"initrd " + version.encode())
    loader = root / "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
    loader.parent.mkdir(parents=True, exist_ok=True)
    loader.write_bytes(b"MZ systemd-boot")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/hostname").write_text("kiosk\n")
    secret = root / "var/lib/kiosk"
    secret.mkdir(parents=True)
    secret.chmod(0o700)
    return root


def test_newest_kernel_is_picked_numerically(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path, ("6.1.0-9-amd64", "6.1.0-18-amd64", "5.10.0-30-amd64"))
    boot = find_boot_files(tree)
    assert boot.version == "6.1.0-18-amd64"
    assert boot.initrd.name == "initrd.img-6.1.0-18-amd64"


def test_missing_pieces_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no kernel"):
        find_boot_files(tmp_path)
    tree = fake_tree(tmp_path)
    (tree / "boot/initrd.img-6.1.0-9-amd64").unlink()
    with pytest.raises(ImageError, match="no initrd") as caught:
        find_boot_files(tree)
    assert caught.value.path == tree / "boot/initrd.img-6.1.0-9-amd64"


def test_loader_never_lets_the_booth_edit_the_command_line() -> None:
    conf = loader_conf()
    assert "editor no" in conf.splitlines()
    assert "timeout 0" in conf.splitlines()
    entry = boot_entry("6.1.0-9-amd64", U1)
    assert f"options root=UUID={U1} rw quiet console=ttyS0,115200" in entry.splitlines()


def test_layout_by_hand() -> None:
    layout = plan_layout(256 * MIB, 3000 * MIB + 1, esp_uuid=U1, root_uuid=U2)
    esp, root = layout.partitions
    assert (esp.start, esp.size, esp.type_guid) == (MIB, 256 * MIB, ESP_TYPE)
    assert (root.start, root.size, root.type_guid) == (257 * MIB, 3001 * MIB, ROOT_X86_64_TYPE)
    assert layout.disk_size == 3259 * MIB
    script = sfdisk_script(layout)
    assert script.startswith("label: gpt\n")
    assert f'start=2048, size=524288, type={ESP_TYPE}, uuid={U1}, name="esp"' in script


@given(st.integers(1, 2**34), st.integers(1, 2**40))
def test_layout_is_aligned_ordered_and_fits(esp_size: int, root_size: int) -> None:
    layout = plan_layout(esp_size, root_size, esp_uuid=U1, root_uuid=U2)
    esp, root = layout.partitions
    for part, wanted in ((esp, esp_size), (root, root_size)):
        assert part.start % ALIGN == 0 and part.size % ALIGN == 0
        assert wanted <= part.size < wanted + ALIGN
    assert esp.start >= 34 * 512
    assert esp.start + esp.size <= root.start
    assert root.start + root.size + GPT_TAIL <= layout.disk_size


@given(st.integers(-(2**20), 0))
def test_layout_refuses_empty_partitions(size: int) -> None:
    with pytest.raises(ImageError):
        plan_layout(size, MIB, esp_uuid=U1, root_uuid=U2)


def test_real_disk_from_a_tree(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "tree")
    disk = tmp_path / "out" / "kiosk.raw"
    figures = assemble(tree, disk, headroom=16 * MIB, esp_size=64 * MIB)
    assert figures["image_bytes"] == disk.stat().st_size
    assert int(figures["image_allocated_bytes"]) < disk.stat().st_size  # type: ignore[call-overload]  # sparse

    table = json.loads(subprocess.run(["sfdisk", "--json", disk], check=True, capture_output=True).stdout)
    esp, root = table["partitiontable"]["partitions"]
    assert esp["type"] == ESP_TYPE and root["type"] == ROOT_X86_64_TYPE
    assert esp["start"] * 512 % ALIGN == 0 and root["start"] * 512 % ALIGN == 0

    # The ESP, read by mtools at its offset in the disk.
    esp_at = f"{disk}@@{esp['start'] * 512}"

    def mtype(path: str) -> bytes:
        return subprocess.run(["mtype", "-i", esp_at, path], check=True, capture_output=True).stdout

    assert mtype("::/EFI/BOOT/BOOTX64.EFI") == b"MZ systemd-boot"
    assert mtype("::/kiosk/vmlinuz") == b"MZ kernel 6.1.0-9-amd64"
    entry = mtype("::/loader/entries/kiosk.conf").decode()
    root_uuid = re.search(r"root=UUID=([0-9a-f-]+)", entry).group(1)  # type: ignore[union-attr]

    # The root, copied out of the disk and read by debugfs: the tree's files, modes and the UUID the entry names.
    part = tmp_path / "root.img"
    with disk.open("rb") as source, part.open("wb") as out:
        source.seek(root["start"] * 512)
        out.write(source.read(root["size"] * 512))
    header = subprocess.run(["dumpe2fs", "-h", part], check=True, capture_output=True, text=True).stdout
    assert f"Filesystem UUID:          {root_uuid}" in header
    cat = subprocess.run(["debugfs", "-R", "cat /etc/hostname", part], check=True, capture_output=True, text=True)
    assert cat.stdout == "kiosk\n"
    stat = subprocess.run(["debugfs", "-R", "stat /var/lib/kiosk", part], check=True, capture_output=True, text=True)
    assert "Mode:  0700" in stat.stdout


def test_cli_reports_a_bad_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from image.assemble import main

    assert main(["--tree", str(tmp_path), "--output", str(tmp_path / "x.raw")]) == 1
    assert "no kernel in the tree" in capsys.readouterr().err
