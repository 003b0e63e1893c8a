"""``kiosk.demo.hub.DevHub``: the development hub the demo, the browser tests and the benches start."""

from __future__ import annotations

import socket
import ssl
import urllib.request
from pathlib import Path

import pytest

from kiosk.demo.hub import DevHub, HubError


def get(hub: DevHub, path: str) -> int:
    context = ssl.create_default_context(cafile=str(hub.paths.fleet_ca))
    with urllib.request.urlopen(hub.origin + path, context=context, timeout=10) as response:
        return int(response.status)


def test_init_once_serve_stop_and_reuse(tmp_path: Path) -> None:
    hub = DevHub(tmp_path / "state", run_dir=tmp_path / "run")
    with hub:
        assert hub.created and hub.alive()
        assert hub.doctor_port > 0 and hub.booth_port > 0 and hub.doctor_port != hub.booth_port
        assert hub.booth_url == f"wss://localhost:{hub.booth_port}/ws"
        assert get(hub, "/") == 200  # the console, over TLS the fleet CA vouches for, on "localhost"
        assert "BEGIN CERTIFICATE" in hub.fleet_ca_pem
        doctor = hub.doctor
        assert doctor.username == hub.credentials["username"]
        assert hub.totp().isdigit() and len(hub.totp()) == 6
        assert doctor.password not in repr(doctor) and doctor.totp_secret not in repr(doctor)
        process = hub.process
        assert process is not None
    assert not hub.alive() and process.poll() is not None

    # A second run keeps the state: same PKI, same doctor.
    again = DevHub(tmp_path / "state", run_dir=tmp_path / "run")
    with again:
        assert not again.created
        assert again.fleet_ca_pem == hub.fleet_ca_pem and again.doctor == doctor
        assert get(again, "/") == 200


async def test_async_use_and_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        hub = DevHub(tmp_path / "state", doctor_port=taken.getsockname()[1], startup_timeout=20)
        with pytest.raises(HubError, match="exited"):
            async with hub:
                pass
    assert hub.process is None and hub.initialised
    async with DevHub(tmp_path / "state") as running:
        assert running.alive()
