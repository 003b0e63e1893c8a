"""A private pcscd with the vpcd driver, for tests, the demo and the benchmarks.

What was checked on Debian 12 (pcsc-lite 1.9.9):

- ``pcscd`` itself ignores ``PCSCLITE_CSOCK_NAME``: its socket path
  ``/run/pcscd/pcscd.comm`` is compiled in. The *client* library does honour
  the variable (read once per process, then cached).
- pcscd is built with libsystemd and accepts a socket-activated listening
  socket (``LISTEN_FDS=1``, ``LISTEN_PID`` = its pid, fd 3). So we bind a
  Unix socket in a temp dir, pass it as fd 3 and point clients at it with
  ``PCSCLITE_CSOCK_NAME``: a private socket, no privileges needed.
- pcscd still writes ``/run/pcscd/pcscd.pid`` and deletes it (and, when not
  socket-activated, the whole ``/run/pcscd`` content) on exit, which would
  clobber a system pcscd's files. When we are root and ``unshare`` works, we
  run pcscd in its own mount namespace with a temp dir bind-mounted on
  ``/run/pcscd``, so the host's ``/run/pcscd`` is never touched. Otherwise the
  pid file caveat stands (documented in the fixture's ``isolated_run`` flag).
- ``-c DIR`` takes a private reader.conf.d; vpcd's ``DEVICENAME
  /dev/null:PORT`` makes it listen on PORT (slot ``00 00``) and PORT+1 (slot
  ``00 01``), so two free consecutive ports are picked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PCSCD = shutil.which("pcscd") or "/usr/sbin/pcscd"
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"


def available() -> str | None:
    """None when pcscd and vpcd are installed, else why not."""
    if not os.path.exists(PCSCD):
        return "pcscd is not installed"
    if not os.path.exists(VPCD_DRIVER):
        return "vsmartcard-vpcd is not installed"
    return None


def free_port_pair() -> int:
    """A port P with P and P+1 both free on localhost."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("0.0.0.0", port))
                b.bind(("0.0.0.0", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for vpcd")


@dataclass
class PrivatePcscd:
    """A running private pcscd; :meth:`start`/:meth:`stop` may be repeated."""

    workdir: Path
    """Temp directory holding the socket, config and logs."""
    port: int
    """vpcd port of slot 0 (slot 1 is port + 1)."""
    socket_path: Path
    """The private client socket (``PCSCLITE_CSOCK_NAME``)."""
    process: subprocess.Popen[bytes] | None = None
    isolated_run: bool = False
    """True when /run/pcscd was private (mount namespace)."""

    @property
    def reader_names(self) -> tuple[str, str]:
        """The two vpcd slots as pcscd names them."""
        return ("Virtual PCD 00 00", "Virtual PCD 00 01")

    @property
    def log_path(self) -> Path:
        """pcscd's foreground log."""
        return self.workdir / "pcscd.log"

    def start(self, timeout: float = 10.0) -> None:
        """Start pcscd and wait until vpcd listens."""
        conf = self.workdir / "reader.conf.d"
        conf.mkdir(exist_ok=True)
        (conf / "vpcd").write_text(
            f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{self.port:04X}\n'
            f"LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{self.port:04X}\n"
        )
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o666)
        listener.listen(32)
        fd = listener.fileno()
        # The socket comes in as stdin and is moved to fd 3 (SD_LISTEN_FDS_START);
        # dash's redirections only take one-digit fds, hence stdin.
        inner = f"exec 3<&0 </dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec {PCSCD} --foreground --info -c {conf}"
        run_dir = self.workdir / "run"
        run_dir.mkdir(exist_ok=True)
        argv = ["sh", "-c", inner]
        self.isolated_run = False
        if os.geteuid() == 0 and shutil.which("unshare") and _unshare_works():
            # Private /run/pcscd: the pid file and cleanup stay in our temp dir.
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"mkdir -p /run/pcscd && mount --bind {run_dir} /run/pcscd && {inner}",
            ]
            self.isolated_run = True
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(argv, stdin=fd, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
            listener.close()  # pcscd holds its own copy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pcscd exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            if _port_open(self.port) and _port_open(self.port + 1):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("pcscd did not open the vpcd ports in time")

    def stop(self) -> None:
        """SIGTERM pcscd (SIGKILL if it lingers)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _port_open(port: int) -> bool:
    # vpcd listens on all addresses. Probing with connect() would look like a
    # card insertion to vpcd, so check the listening table instead.
    try:
        text = Path("/proc/net/tcp").read_text()
    except OSError:
        return True
    needle = f":{port:04X} 00000000:0000 0A"
    return needle in text


_UNSHARE_OK: bool | None = None


def _unshare_works() -> bool:
    global _UNSHARE_OK
    if _UNSHARE_OK is None:
        try:
            _UNSHARE_OK = (
                subprocess.run(
                    ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, timeout=5
                ).returncode
                == 0
            )
        except (OSError, subprocess.SubprocessError):
            _UNSHARE_OK = False
    return _UNSHARE_OK


@contextlib.contextmanager
def private_pcscd(workdir: Path) -> Iterator[PrivatePcscd]:
    """Start a private pcscd, point this process's pcsc clients at it, stop it after.

    libpcsclite reads ``PCSCLITE_CSOCK_NAME`` once per process, so a test
    session should use one socket path: make this fixture session-scoped, and
    restart the daemon with :meth:`PrivatePcscd.stop` / :meth:`PrivatePcscd.start`.
    """
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    daemon = PrivatePcscd(workdir, free_port_pair(), workdir / "pcscd.comm")
    previous = os.environ.get(SOCKET_ENV)
    os.environ[SOCKET_ENV] = str(daemon.socket_path)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        if previous is None:
            os.environ.pop(SOCKET_ENV, None)
        else:
            os.environ[SOCKET_ENV] = previous
