"""Fixtures shared by the whole suite."""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import HealthCheck, settings

# Property tests run many examples locally and a bounded number in CI, so the
# suite's time stays predictable on a 2-core machine.
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device-port",
        action="append",
        default=[],
        metavar="KIND=PATH",
        help="run the hardware tests against a real peripheral, e.g. oximeter=/dev/serial/by-id/...",
    )


@pytest.fixture
def device_ports(request: pytest.FixtureRequest) -> dict[str, str]:
    """Real peripherals given with --device-port; hardware tests skip without them."""
    ports: dict[str, str] = {}
    for item in request.config.getoption("--device-port"):
        kind, _, path = item.partition("=")
        ports[kind] = path
    return ports


@pytest.fixture(autouse=True)
def _debug_logging(caplog: pytest.LogCaptureFixture) -> None:
    # Drivers log state changes; capturing them at DEBUG in every test lets
    # privacy checks look at everything a run would have written.
    caplog.set_level(logging.DEBUG)
