"""Boot the booth's disk image under qemu/KVM and wait until the booth app reports ready.

The machine: q35, UEFI (OVMF, a throw-away copy of its variable store), the image as a
virtio disk in snapshot mode (the image file is never written), a virtio GPU so cage gets a real
DRM device (``/dev/dri/card0``) and the app renders on it as on a booth, no network card (nothing
leaves the host), the serial console on qemu's standard output.

Ready means the line ``KIOSK-READY`` on the serial console: the image's
``kiosk-ready-report.service`` prints it after ``kiosk-app.service`` has started, and that unit
is ``Type=notify``, so it counts as started only once the app sent READY=1 from its event loop.
A failure of either unit, or a kernel panic, ends the test at once; otherwise it gives up after
``--timeout`` seconds.

Acceleration: KVM when the host's KVM runs ordinary guests; TCG (software emulation, several
times slower) otherwise. ``--accel auto`` picks TCG where /dev/kvm is PVM (``kvm_pvm``, the
pagetable-based nested KVM of some cloud sandboxes), which only runs PVM-built guest kernels: a
stock Debian kernel and OVMF stop there with "emulation failure".

The screen: with ``--screenshot FILE`` the test asks qemu (QMP ``screendump``) for a PNG of what
the booth's display shows when the test ends, ready or not: the welcome screen, or what stands in
its way.

``python -m image.boot_test --image FILE [--timeout S] [--log FILE] [--screenshot PNG] [--accel auto|kvm|tcg]``
prints one JSON object (``ready``, ``boot_to_ready_s``, ``accel``, ``image_bytes``, ...) and
exits 0 only when the booth got ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from image.console import CompositorFailed, ConsoleEvent, ConsoleWatcher, KernelPanic, NotReady, Ready, UnitFailed

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
PVM_MODULE = Path("/sys/module/kvm_pvm")


def pick_accel(requested: str, *, kvm_device: Path = Path("/dev/kvm"), pvm_module: Path = PVM_MODULE) -> str:
    """``kvm`` or ``tcg`` for ``requested`` (``auto``, ``kvm`` or ``tcg``); see the module's docstring."""
    if requested != "auto":
        return requested
    usable = kvm_device.exists() and os.access(kvm_device, os.R_OK | os.W_OK)
    return "kvm" if usable and not pvm_module.exists() else "tcg"


@dataclass(frozen=True)
class Machine:
    """How the booth's virtual machine is built."""

    image: Path
    vars_file: Path
    memory_mib: int = 2048
    cpus: int = 2
    accel: str = "kvm"
    ovmf_code: Path = OVMF_CODE
    qmp_socket: Path | None = None
    """qemu's QMP socket (a Unix socket qemu listens on), for the screenshot."""


@dataclass
class BootResult:
    """What the boot test observed; printed as JSON."""

    ready: bool
    outcome: str
    """``ready``, ``not-ready``, ``unit-failed``, ``compositor-failed``, ``kernel-panic``, ``timeout`` or
    ``qemu-exited``."""
    boot_to_ready_s: float | None
    elapsed_s: float
    accel: str
    failed_unit: str | None
    qemu_error: str | None
    """The end of qemu's standard error when qemu itself stopped."""
    app_state: str | None
    """``systemctl is-active kiosk-app.service`` when the app was not ready."""
    compositor_error: str | None
    """cage's fatal error, when that is what stopped the test."""
    image: str
    image_bytes: int
    image_allocated_bytes: int
    timeout_s: float
    screenshot: str | None = None
    """The PNG of the booth's display as the test ended, when one was asked for and qemu gave it."""


def qemu_argv(machine: Machine) -> list[str]:
    """The qemu command line for ``machine``; its serial console is qemu's standard output."""
    argv = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-machine", "q35"]
    argv += ["-accel", "kvm", "-cpu", "host"] if machine.accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
    argv += [
        "-m",
        str(machine.memory_mib),
        "-smp",
        str(machine.cpus),
        "-drive",
        f"if=pflash,format=raw,unit=0,readonly=on,file={machine.ovmf_code}",
        "-drive",
        f"if=pflash,format=raw,unit=1,file={machine.vars_file}",
        "-drive",
        f"if=virtio,format=raw,snapshot=on,file={machine.image}",
        "-device",
        "virtio-gpu-pci",
        "-device",
        "virtio-rng-pci",
        "-nic",
        "none",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
    ]
    if machine.qmp_socket is not None:
        argv += ["-qmp", f"unix:{machine.qmp_socket},server=on,wait=off"]
    return argv


class QmpError(RuntimeError):
    """qemu's QMP refused a command or closed the connection."""


async def qmp_command(socket: Path, command: str, arguments: dict[str, object], *, timeout: float = 30.0) -> object:
    """Run one QMP command on a fresh connection and return its ``return`` value."""

    async def exchange() -> object:
        reader, writer = await asyncio.open_unix_connection(str(socket))
        try:

            async def reply() -> dict[str, object]:
                while True:  # skip asynchronous events (``{"event": ...}``) until the command's answer
                    line = await reader.readline()
                    if not line:
                        raise QmpError("qemu closed the QMP connection")
                    message = json.loads(line)
                    if "return" in message or "error" in message:
                        return dict(message)

            greeting = json.loads(await reader.readline() or b"null")
            if not isinstance(greeting, dict) or "QMP" not in greeting:
                raise QmpError(f"not a QMP greeting: {greeting!r}")
            for name, args in (("qmp_capabilities", {}), (command, arguments)):
                writer.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
                await writer.drain()
                answer = await reply()
                if "error" in answer:
                    raise QmpError(f"{name}: {answer['error']}")
            return answer["return"]
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(exchange(), timeout)


async def screenshot(socket: Path, target: Path) -> bool:
    """Save the display as a PNG at ``target`` through QMP; False (said on stderr) when qemu could not."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        await qmp_command(socket, "screendump", {"filename": str(target.resolve()), "format": "png"})
    except (OSError, TimeoutError, QmpError, ValueError) as error:
        print(f"boot test: no screenshot ({error})", file=sys.stderr)
        return False
    return target.is_file()


async def _read_until_event(
    stream: asyncio.StreamReader, watcher: ConsoleWatcher, deadline: float, log: Path | None
) -> ConsoleEvent | str:
    loop = asyncio.get_running_loop()
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(log.open("wb")) if log is not None else None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return "timeout"
            try:
                data = await asyncio.wait_for(stream.read(65536), remaining)
            except TimeoutError:
                return "timeout"
            if not data:
                watcher.end_of_data()
            elif sink is not None:
                sink.write(data)
                sink.flush()
            if data:
                watcher.receive_data(data)
            while (event := watcher.next_event()) is not None:
                return event
            if not data:
                return "qemu-exited"


async def boot(
    machine: Machine, *, timeout: float, log: Path | None = None, screenshot_to: Path | None = None
) -> BootResult:
    """Start the machine, watch its console until ready, failure or ``timeout``; the machine is stopped after.

    With ``screenshot_to`` (and ``machine.qmp_socket``), the display is saved there first."""
    stat = machine.image.stat()
    loop = asyncio.get_running_loop()
    started = loop.time()
    process = await asyncio.create_subprocess_exec(
        *qemu_argv(machine),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    errors = asyncio.create_task(process.stderr.read())
    try:
        event = await _read_until_event(process.stdout, ConsoleWatcher(), started + timeout, log)
        ready_at = loop.time()
        shot = None
        if screenshot_to is not None and machine.qmp_socket is not None and process.returncode is None:
            shot = screenshot_to if await screenshot(machine.qmp_socket, screenshot_to) else None
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
    qemu_error = (await errors).decode("utf-8", "replace").strip()[-500:] or None
    failed = app_state = compositor_error = None
    if isinstance(event, Ready):
        outcome = "ready"
    elif isinstance(event, NotReady):
        outcome, app_state = "not-ready", event.state
    elif isinstance(event, UnitFailed):
        outcome, failed = "unit-failed", event.unit
    elif isinstance(event, CompositorFailed):
        outcome, compositor_error = "compositor-failed", event.message
    elif isinstance(event, KernelPanic):
        outcome = "kernel-panic"
    else:
        outcome = event
    return BootResult(
        ready=outcome == "ready",
        outcome=outcome,
        boot_to_ready_s=round(ready_at - started, 2) if outcome == "ready" else None,
        elapsed_s=round(ready_at - started, 2),
        accel=machine.accel,
        failed_unit=failed,
        qemu_error=qemu_error if outcome == "qemu-exited" else None,
        app_state=app_state,
        compositor_error=compositor_error,
        image=str(machine.image),
        image_bytes=stat.st_size,
        image_allocated_bytes=stat.st_blocks * 512,
        timeout_s=timeout,
        screenshot=str(shot) if shot is not None else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="image/boot-test", description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True, help="the raw disk image (make image)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up (default 300)")
    parser.add_argument("--log", type=Path, help="write the serial console there")
    parser.add_argument("--screenshot", type=Path, help="save the booth's display there (PNG) as the test ends")
    parser.add_argument("--memory-mib", type=int, default=2048)
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto", help="default: kvm when usable")
    args = parser.parse_args(argv)
    if not args.image.is_file():
        parser.error(f"no image at {args.image}: run make image first")
    with tempfile.TemporaryDirectory(prefix="kiosk-boot-test-") as scratch:
        vars_file = Path(scratch) / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, vars_file)
        accel = pick_accel(args.accel)
        machine = Machine(
            image=args.image,
            vars_file=vars_file,
            memory_mib=args.memory_mib,
            accel=accel,
            qmp_socket=Path(scratch) / "qmp.sock" if args.screenshot else None,
        )
        result = asyncio.run(boot(machine, timeout=args.timeout, log=args.log, screenshot_to=args.screenshot))
    print(json.dumps(asdict(result)))
    return 0 if result.ready else 1


if __name__ == "__main__":
    sys.exit(main())
