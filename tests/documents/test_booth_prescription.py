"""The patient app receives a prescription: the controller has it verified, printed, and shows the fetch code.

The real intake (pyHanko verification against the fleet root) behind the
controller, a signed PDF from the hub's own code; the printer is a recorder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from hub import pki
from hub.app import StatePaths, init_dev_state
from hub.prescriptions import Prescriptions, check_request
from kiosk.documents import PRESCRIPTION_MIME
from kiosk.documents.intake import BoothPrescriptions, PrescriptionIntake
from kiosk.session.consultation import FileEvent
from kiosk.ui.controller import Controller
from tests.ui_fakes import FakeServices


class RecordingPrinter:
    def __init__(self) -> None:
        self.jobs: list[bytes] = []

    async def __call__(self, pdf: bytes, title: str) -> str:
        self.jobs.append(pdf)
        return "booth-1"


@pytest.fixture(autouse=True)
def _quiet_pyhanko(caplog: pytest.LogCaptureFixture) -> None:
    for name in ("pyhanko", "pyhanko_certvalidator"):
        caplog.set_level(logging.CRITICAL, logger=name)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, str]:
    state = tmp_path_factory.mktemp("rx") / "hub"
    init_dev_state(state)
    paths = StatePaths(state)
    prescriptions = Prescriptions(state, pki.load_issuer(paths.doctor_ca, paths.doctor_ca_key))
    issued = prescriptions.issue("dr.demo", "Dr Demo", check_request("Lou, 7 ans", "Paracétamol"), now=time.time())
    return paths.fleet_ca.read_bytes(), issued.pdf, issued.fetch_code


@pytest.fixture
async def app(signed: tuple[bytes, bytes, str]) -> AsyncIterator[tuple[Controller, FakeServices, RecordingPrinter]]:
    printer = RecordingPrinter()
    services = FakeServices()
    services.prescriptions = BoothPrescriptions(PrescriptionIntake(signed[0], printer))
    controller = Controller(services)
    runner = asyncio.create_task(controller.run())
    yield controller, services, printer
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def _until(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_verified_prescription_printed_and_code_shown(
    app: tuple[Controller, FakeServices, RecordingPrinter], signed: tuple[bytes, bytes, str]
) -> None:
    controller, services, printer = app
    _, pdf, code = signed
    services.session.emit(FileEvent("RX.pdf", PRESCRIPTION_MIME, pdf))
    await _until(lambda: controller.view.fetch_code)
    assert controller.view.fetch_code == code
    assert controller.view.prescription and not controller.view.prescription_refused
    assert printer.jobs == [pdf]
    assert code in controller.tr("end.fetch_code", code=controller.view.fetch_code)
    await controller.wipe()
    assert controller.view.fetch_code == "" and not controller.view.prescription


async def test_modified_prescription_refused_calmly_and_not_printed(
    app: tuple[Controller, FakeServices, RecordingPrinter], signed: tuple[bytes, bytes, str]
) -> None:
    controller, services, printer = app
    mutated = bytearray(signed[1])
    mutated[len(mutated) // 2] ^= 0x04
    services.session.emit(FileEvent("RX.pdf", PRESCRIPTION_MIME, bytes(mutated)))
    await _until(lambda: controller.view.prescription_refused)
    assert not controller.view.prescription and controller.view.fetch_code == ""
    assert printer.jobs == []


async def test_printer_down_still_gives_the_code(signed: tuple[bytes, bytes, str]) -> None:
    from kiosk.documents.errors import PrintError

    async def broken(pdf: bytes, title: str) -> str:
        raise PrintError("the print queue refused the job", queue="booth")

    services = FakeServices()
    services.prescriptions = BoothPrescriptions(PrescriptionIntake(signed[0], broken))
    controller = Controller(services)
    runner = asyncio.create_task(controller.run())
    try:
        services.session.emit(FileEvent("RX.pdf", PRESCRIPTION_MIME, signed[1]))
        await _until(lambda: controller.view.fetch_code)
        assert controller.view.fetch_code == signed[2]
        assert not controller.view.prescription and not controller.view.prescription_refused
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
