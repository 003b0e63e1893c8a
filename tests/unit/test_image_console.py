"""The boot test's serial-console reader: systemd's console lines by hand, and hypothesis robustness."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from image.console import (
    MAX_LINE,
    READY_MARKER,
    CompositorFailed,
    ConsoleWatcher,
    KernelPanic,
    NotReady,
    Ready,
    UnitFailed,
)

# What systemd 252 prints with `quiet` (colours and carriage returns included).
FAILED_APP = b"[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mkiosk-app.service\x1b[0m - Booth app.\r\n"
DEPEND_REPORT = (
    b"[\x1b[0;1;33mDEPEND\x1b[0m] Dependency failed for \x1b[0;1;39mkiosk-ready-report.service\x1b[0m - Report.\r\n"
)
READY = READY_MARKER.encode() + b"\r\n"


def events(watcher: ConsoleWatcher) -> list[object]:
    out: list[object] = []
    while (event := watcher.next_event()) is not None:
        out.append(event)
    return out


def feed(data: bytes, chunk: int = 0) -> list[object]:
    watcher = ConsoleWatcher()
    if chunk:
        for start in range(0, len(data), chunk):
            watcher.receive_data(data[start : start + chunk])
    else:
        watcher.receive_data(data)
    return events(watcher)


def test_ready_marker() -> None:
    assert feed(b"Booting `Teleconsultation booth'\r\n\x1b[2J" + b"\r\n" + READY) == [Ready()]


def test_marker_as_journald_forwards_it_after_a_login_prompt() -> None:
    # what the serial console really showed (the getty's prompt had no newline)
    line = b"\r\nkiosk login: [  363.450177] kiosk-ready-report[356]: KIOSK-READY\r\n"
    assert feed(line) == [Ready()]
    line = b"kiosk login: [  363.450177] kiosk-ready-report[356]: KIOSK-NOT-READY inactive\r\n"
    assert feed(line) == [NotReady("inactive")]


def test_marker_from_another_identifier_is_not_ready() -> None:
    assert feed(b"[  12.0] sh[356]: KIOSK-READY\r\n") == []


def test_marker_split_across_reads() -> None:
    assert feed(b"noise\r\n" + READY, chunk=3) == [Ready()]


def test_marker_only_when_the_line_is_complete() -> None:
    watcher = ConsoleWatcher()
    watcher.receive_data(READY_MARKER.encode())
    assert events(watcher) == []
    watcher.receive_data(b"\r\n")
    assert events(watcher) == [Ready()]


def test_unterminated_last_line_counts_at_end_of_data() -> None:
    watcher = ConsoleWatcher()
    watcher.receive_data(b"x\n" + READY_MARKER.encode())
    watcher.end_of_data()
    assert events(watcher) == [Ready()]


def test_marker_inside_another_line_is_not_ready() -> None:
    # e.g. a shell echoing a command that contains the marker
    assert feed(b"# echo KIOSK-READY > /dev/console\r\n") == []


def test_app_skipped_is_not_ready() -> None:
    # kiosk-app.service's Condition failed (no certificate yet): the report runs, the app does not
    assert feed(b"KIOSK-NOT-READY inactive\r\n") == [NotReady("inactive")]


def test_watched_unit_failures() -> None:
    assert feed(FAILED_APP) == [UnitFailed("kiosk-app.service")]
    assert feed(DEPEND_REPORT) == [UnitFailed("kiosk-ready-report.service")]


def test_other_units_failing_is_not_the_booth_failing() -> None:
    line = b"[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39msystemd-timesyncd.service\x1b[0m - NTP.\r\n"
    assert feed(line + READY) == [Ready()]


def test_cage_fatal_error_as_the_first_image_boot_showed_it() -> None:
    noise = (
        b"[   36.8] cage[386]: 00:00:01.672 [ERROR] [EGL] command: eglInitialize, error: EGL_NOT_INITIALIZED\r\n"
        b"[   36.9] cage[386]: libEGL warning: NEEDS EXTENSION: falling back to kms_swrast\r\n"
    )
    fatal = (
        b"[   37.7] cage[386]: 00:00:02.545 [ERROR] [../cage.c:481] Unable to open Wayland socket: Invalid argument\r\n"
    )
    assert feed(noise) == []  # wlroots' EGL fallback is not fatal
    assert feed(noise + fatal) == [CompositorFailed("Unable to open Wayland socket: Invalid argument")]


def test_kernel_panic() -> None:
    line = b"[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n"
    assert feed(line) == [KernelPanic()]


def test_events_in_console_order() -> None:
    assert feed(FAILED_APP + DEPEND_REPORT) == [
        UnitFailed("kiosk-app.service"),
        UnitFailed("kiosk-ready-report.service"),
    ]


def test_runaway_line_is_bounded_and_the_next_line_still_counts() -> None:
    watcher = ConsoleWatcher()
    for _ in range(100):
        watcher.receive_data(b"A" * 1000)
    assert len(watcher._partial) <= MAX_LINE
    watcher.receive_data(b"\n" + READY)
    assert events(watcher) == [Ready()]


@given(st.lists(st.binary(max_size=200), max_size=30))
def test_any_bytes_never_raise(chunks: list[bytes]) -> None:
    watcher = ConsoleWatcher()
    for chunk in chunks:
        watcher.receive_data(chunk)
    watcher.end_of_data()
    for event in events(watcher):
        assert isinstance(event, Ready | NotReady | UnitFailed | CompositorFailed | KernelPanic)


@given(
    st.lists(st.binary(max_size=80).filter(lambda b: b"\n" not in b and b"KIOSK" not in b), max_size=10),
    st.integers(min_value=1, max_value=64),
)
def test_marker_found_after_any_noise_and_chunking(noise: list[bytes], chunk: int) -> None:
    data = b"".join(line + b"\r\n" for line in noise) + READY
    assert Ready() in feed(data, chunk=chunk)
