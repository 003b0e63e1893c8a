"""Turn the root tree mkosi built into the booth's bootable disk, without mounting anything.

mkosi 14 can write GPT disks itself, but it mounts the ESP as vfat to install the boot loader,
and build hosts without the vfat module (containers, microVMs, the CI runners here) cannot. So
mkosi builds a directory tree (``Format=directory``) and this module lays the disk out:

- a GPT with two partitions (UEFI spec 2.10 §5.3; types from the Discoverable Partitions
  Specification): an ESP and the ext4 root;
- the ESP is a FAT32 image filled with mtools (``mcopy``): systemd-boot as the removable-media
  loader (``/EFI/BOOT/BOOTX64.EFI``, so no NVRAM entry is needed), the kernel and the initrd, and a
  Boot Loader Specification entry; ``editor no`` so nobody at the booth edits the kernel command
  line, ``timeout 0`` so no menu shows;
- the root is built by ``mke2fs -d`` straight from the tree (owners, modes, xattrs kept).

``python -m image.assemble --tree DIR --output FILE [--json]`` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
SECTOR = 512
ALIGN = MIB  # partitions start on 1 MiB boundaries, as every partitioning tool does today
# The GPT header and its 128-entry table take 34 sectors at the start and 33 at the end.
GPT_TAIL = 33 * SECTOR

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_X86_64_TYPE = "4F68BCE3-E8CD-4C31-B1C7-8E5FEAD0D09D"

ENTRY_NAME = "kiosk.conf"
LOADER_IN_TREE = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
# Kernel messages and the boot-ready marker on the serial line (maintenance and the boot test);
# tty1 keeps only the app, under cage.
DEFAULT_CMDLINE = ("rw", "quiet", "console=ttyS0,115200")


class ImageError(Exception):
    """The tree cannot become a bootable disk; ``reason`` says why, ``path`` what is missing or wrong."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{reason}: {path}" if path is not None else reason)


@dataclass(frozen=True)
class BootFiles:
    """What the ESP carries, found in the tree."""

    kernel: Path
    initrd: Path
    version: str
    loader: Path


@dataclass(frozen=True)
class Partition:
    """One partition: where it starts and how long it is, in bytes (both multiples of ALIGN)."""

    start: int
    size: int
    type_guid: str
    name: str
    uuid: str


@dataclass(frozen=True)
class Layout:
    """The disk: its size and its partitions, in order."""

    disk_size: int
    partitions: tuple[Partition, ...]


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    # "6.1.0-18-amd64" sorts after "6.1.0-9-amd64": numbers compare as numbers.
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\-+~]", version))


def find_boot_files(tree: Path) -> BootFiles:
    """The newest kernel in ``tree/boot`` with its initrd, and systemd-boot."""
    kernels = {path.name.removeprefix("vmlinuz-"): path for path in (tree / "boot").glob("vmlinuz-*")}
    if not kernels:
        raise ImageError("no kernel in the tree", tree / "boot")
    version = max(kernels, key=_version_key)
    initrd = tree / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise ImageError("no initrd for the kernel", initrd)
    loader = tree / LOADER_IN_TREE
    if not loader.is_file():
        raise ImageError("no systemd-boot (package systemd-boot-efi)", loader)
    return BootFiles(kernel=kernels[version], initrd=initrd, version=version, loader=loader)


def loader_conf() -> str:
    return f"timeout 0\ndefault {ENTRY_NAME}\neditor no\nconsole-mode keep\n"


def boot_entry(version: str, root_uuid: str, cmdline: Sequence[str] = DEFAULT_CMDLINE) -> str:
    """A Boot Loader Specification type 1 entry for the kernel ``version`` on the root ``root_uuid``."""
    options = " ".join([f"root=UUID={root_uuid}", *cmdline])
    return (
        f"title Teleconsultation booth\nversion {version}\n"
        f"linux /kiosk/vmlinuz\ninitrd /kiosk/initrd.img\noptions {options}\n"
    )


def _align_up(value: int, alignment: int = ALIGN) -> int:
    return -(-value // alignment) * alignment


def plan_layout(esp_size: int, root_size: int, *, esp_uuid: str, root_uuid: str) -> Layout:
    """Place the ESP then the root, each aligned; the disk ends with room for the backup GPT."""
    if esp_size <= 0 or root_size <= 0:
        raise ImageError("partition sizes must be positive")
    esp = Partition(ALIGN, _align_up(esp_size), ESP_TYPE, "esp", esp_uuid)
    root = Partition(esp.start + esp.size, _align_up(root_size), ROOT_X86_64_TYPE, "root-x86-64", root_uuid)
    disk_size = _align_up(root.start + root.size + GPT_TAIL)
    return Layout(disk_size=disk_size, partitions=(esp, root))


def sfdisk_script(layout: Layout) -> str:
    """The layout as an sfdisk script (sectors), so sfdisk writes both GPT copies and the protective MBR."""
    lines = ["label: gpt", f"first-lba: {ALIGN // SECTOR}", "unit: sectors"]
    for part in layout.partitions:
        lines.append(
            f"start={part.start // SECTOR}, size={part.size // SECTOR}, type={part.type_guid}, "
            f'uuid={part.uuid}, name="{part.name}"'
        )
    return "\n".join(lines) + "\n"


def tree_usage(tree: Path) -> int:
    """Bytes the tree's files take on disk (allocated blocks, not apparent sizes), without following links."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in [*dirnames, *filenames]:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _run(argv: Sequence[str | Path], **kwargs: object) -> None:
    subprocess.run([str(arg) for arg in argv], check=True, **kwargs)  # type: ignore[call-overload]


def build_esp(image: Path, size: int, boot: BootFiles, root_uuid: str, cmdline: Sequence[str]) -> None:
    """A FAT32 ESP image holding systemd-boot, the kernel, the initrd and the loader entry (mtools, no mount)."""
    image.unlink(missing_ok=True)
    _run(["mkfs.fat", "-F", "32", "-n", "ESP", "-C", image, str(size // 1024)], stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as scratch:
        conf = Path(scratch) / "loader.conf"
        conf.write_text(loader_conf())
        entry = Path(scratch) / ENTRY_NAME
        entry.write_text(boot_entry(boot.version, root_uuid, cmdline))
        for directory in ("::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries", "::/kiosk"):
            _run(["mmd", "-i", image, directory])
        for source, dest in (
            (boot.loader, "::/EFI/BOOT/BOOTX64.EFI"),
            (boot.kernel, "::/kiosk/vmlinuz"),
            (boot.initrd, "::/kiosk/initrd.img"),
            (conf, "::/loader/loader.conf"),
            (entry, f"::/loader/entries/{ENTRY_NAME}"),
        ):
            _run(["mcopy", "-i", image, source, dest])


def build_root(image: Path, size: int, tree: Path, fs_uuid: str) -> None:
    """An ext4 image of ``size`` bytes holding ``tree``, populated by mke2fs itself (no mount)."""
    image.unlink(missing_ok=True)
    with image.open("wb") as handle:
        handle.truncate(size)
    _run(["mke2fs", "-q", "-t", "ext4", "-F", "-L", "kiosk-root", "-U", fs_uuid, "-d", tree, image])


def _chunks(path: Path, size: int = MIB) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        offset = 0
        while chunk := handle.read(size):
            yield offset, chunk
            offset += len(chunk)


def copy_sparse(source: Path, disk: Path, offset: int) -> None:
    """Write ``source`` into ``disk`` at ``offset``, skipping zero blocks so the disk file stays sparse."""
    zero = bytes(MIB)
    with disk.open("r+b") as out:
        for position, chunk in _chunks(source):
            if chunk != zero[: len(chunk)]:
                out.seek(offset + position)
                out.write(chunk)


def assemble(
    tree: Path,
    output: Path,
    *,
    root_size: int | None = None,
    headroom: int = 1024 * MIB,
    esp_size: int = 256 * MIB,
    cmdline: Sequence[str] = DEFAULT_CMDLINE,
) -> dict[str, object]:
    """Build ``output`` from ``tree``; returns the figures (sizes in bytes)."""
    boot = find_boot_files(tree)
    used = tree_usage(tree)
    # ext4's metadata takes a few percent; the headroom is the booth's writable space (journal, state).
    size = root_size if root_size is not None else _align_up(int(used * 1.1) + headroom)
    fs_uuid = str(uuid.uuid4())
    layout = plan_layout(esp_size, size, esp_uuid=str(uuid.uuid4()), root_uuid=str(uuid.uuid4()))
    esp_part, root_part = layout.partitions
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".assemble-") as scratch:
        esp_image = Path(scratch) / "esp.img"
        root_image = Path(scratch) / "root.img"
        build_esp(esp_image, esp_part.size, boot, fs_uuid, cmdline)
        build_root(root_image, root_part.size, tree, fs_uuid)
        partial = Path(scratch) / "disk.raw"
        with partial.open("wb") as handle:
            handle.truncate(layout.disk_size)
        _run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", partial], input=sfdisk_script(layout).encode())
        copy_sparse(esp_image, partial, esp_part.start)
        copy_sparse(root_image, partial, root_part.start)
        partial.replace(output)
    stat = output.stat()
    return {
        "image": str(output),
        "kernel": boot.version,
        "tree_bytes": used,
        "image_bytes": stat.st_size,
        "image_allocated_bytes": stat.st_blocks * 512,
        "root_bytes": root_part.size,
        "esp_bytes": esp_part.size,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image.assemble", description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="the root tree mkosi built (Format=directory)")
    parser.add_argument("--output", type=Path, required=True, help="the raw disk image to write")
    parser.add_argument("--root-size-mib", type=int, help="root partition size; default: the tree plus headroom")
    parser.add_argument("--headroom-mib", type=int, default=1024, help="free space left on the root (default 1024)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        figures = assemble(
            args.tree,
            args.output,
            root_size=args.root_size_mib * MIB if args.root_size_mib else None,
            headroom=args.headroom_mib * MIB,
        )
    except ImageError as error:
        print(f"assemble: {error}", file=sys.stderr)
        return 1
    print(json.dumps(figures) if args.json else f"{figures['image']}: {figures['image_bytes']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
