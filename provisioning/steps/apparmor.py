"""AppArmor: the patient app confined to what it needs, in enforce mode.

The profile attaches to ``/opt/kiosk/venv/bin/kiosk-app``, the program cage
starts in ``kiosk-app.service``; cage itself stays outside it (it needs the
DRM and input devices through seatd, which the app must not have). The app
may read the project's venv and ``/etc/kiosk``, write its own state under
``/var/lib/kiosk`` and its private temporary directory, use the booth's
devices (cameras, sound, USB-serial peripherals, the pcscd socket, the GPU
and the compositor's socket), open TCP and UDP sockets (hub, TURN, media),
and notify systemd. Everything else is refused; the explicit ``deny`` rules
(home directories, shells, ptrace, mounts, capabilities) win over any
abstraction included, and document what a compromised app must never do.

AppArmor confines by path, so the systemd unit's sandbox (ProtectSystem,
ReadWritePaths, DevicePolicy) still decides what is writable at all: the two
layers are independent, and each is checked on its own (``systemd-analyze
security`` there, ``apparmor_parser -Q`` here).

Enforce mode: no ``complain`` flag, and provisioning removes any
``/etc/apparmor.d/disable`` or ``force-complain`` link for the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from provisioning.config import BoothConfig
from provisioning.core import Change, Command, EnsurePackages, RemovePath, SystemdUnitState, Target, WriteFile
from provisioning.fields import check_keys, get_bool

PROFILE_NAME: Final = "kiosk-app"
PROFILE: Final = f"/etc/apparmor.d/{PROFILE_NAME}"
KERNEL_PROFILES: Final = "/sys/kernel/security/apparmor/profiles"


@dataclass(frozen=True)
class AppArmorSettings:
    """The ``[apparmor]`` table."""

    enforce: bool = True
    """false loads the profile in complain mode (denials logged, not enforced): for bringing up new hardware only."""


@dataclass(frozen=True)
class Layout:
    """Where the app lives (the FHS layout of the issue-6 contract); tests render it elsewhere."""

    venv: str = "/opt/kiosk/venv"
    state: str = "/var/lib/kiosk"
    config: str = "/etc/kiosk"
    name: str = PROFILE_NAME

    @property
    def program(self) -> str:
        return f"{self.venv}/bin/kiosk-app"


def parse_settings(table: Mapping[str, Any]) -> AppArmorSettings:
    check_keys(table, {"enforce"}, "apparmor")
    return AppArmorSettings(enforce=get_bool(table, "enforce", "apparmor", True))


def render_profile(settings: AppArmorSettings = AppArmorSettings(), layout: Layout = Layout()) -> str:
    """The profile text, checked with ``apparmor_parser -Q -K`` in the tests."""
    install = layout.venv.rsplit("/", 1)[0]
    flags = "" if settings.enforce else " flags=(complain)"
    return f"""\
# AppArmor profile of the booth's patient app.
# Rendered by kiosk-provision (step apparmor). Do not edit: `kiosk-provision --check` reports drift.
abi <abi/3.0>,

include <tunables/global>

profile {layout.name} {layout.program}{flags} {{
  include <abstractions/base>
  include <abstractions/python>
  include <abstractions/nameservice>
  include <abstractions/ssl_certs>
  include <abstractions/openssl>
  include <abstractions/fonts>
  include <abstractions/dri-enumerate>
  include <abstractions/mesa>
  include <abstractions/vulkan>

  # The program: a console script run by the venv's interpreter; the venv is read-only.
  {layout.program} r,
  {layout.venv}/bin/python{{,3,3.[0-9]*}} mrix,
  /usr/bin/python3{{,.[0-9]*}} mrix,
  {install}/ r,
  {install}/** r,
  {install}/**.so{{,.[0-9]*}} mr,
  /usr/share/** r,
  # ctypes.util.find_library asks ldconfig where a library is.
  /{{usr/,}}sbin/ldconfig rix,

  # Configuration (read) and the app's own state (read, write, lock).
  {layout.config}/ r,
  {layout.config}/** r,
  owner {layout.state}/ r,
  owner {layout.state}/** rwk,
  # Temporary files: systemd gives the service a private /tmp.
  /tmp/ r,
  owner /tmp/** rwk,
  /var/tmp/ r,
  owner /var/tmp/** rwk,

  # Peripherals: cameras, sound cards, USB-serial bridges (locked while in use),
  # their stable names, and what the drivers read to find them.
  /dev/ r,
  /dev/video[0-9]* rw,
  /dev/media[0-9]* rw,
  /dev/v4l/{{,**}} r,
  /dev/snd/ r,
  /dev/snd/* rw,
  /dev/ttyUSB[0-9]* rwk,
  /dev/ttyACM[0-9]* rwk,
  /dev/serial/{{,**}} r,
  /dev/kiosk/{{,*}} r,
  /sys/bus/ r,
  /sys/bus/** r,
  /sys/class/ r,
  /sys/class/** r,
  /sys/devices/** r,
  /run/udev/data/* r,
  /etc/alsa/** r,
  # The card reader, through pcscd.
  /run/pcscd/pcscd.comm rw,

  # The screen: the GPU and the compositor's socket (cage; Xwayland as a fallback).
  /dev/dri/ r,
  /dev/dri/* rw,
  owner /run/user/[0-9]*/ r,
  owner /run/user/[0-9]*/wayland-[0-9]* rw,
  # cage's socket in kiosk-app.service's RuntimeDirectory (XDG_RUNTIME_DIR=/run/kiosk-app).
  owner /run/kiosk-app/ r,
  owner /run/kiosk-app/wayland-[0-9]* rw,
  /tmp/.X11-unix/X[0-9]* rw,

  # systemd: readiness and watchdog pings (sd_notify), and the journal.
  /run/systemd/notify w,

  # The process's own /proc entries (Python, OpenCV and aiortc read them).
  owner @{{PROC}}/@{{pid}}/** r,
  @{{PROC}}/sys/kernel/random/uuid r,
  @{{PROC}}/sys/net/ipv{{4,6}}/** r,

  # Hub (TLS), TURN and media (UDP, TCP), address enumeration for ICE (netlink).
  network inet stream,
  network inet6 stream,
  network inet dgram,
  network inet6 dgram,
  network netlink raw,
  network unix stream,
  network unix dgram,

  signal (receive) peer=unconfined,
  signal (send, receive) peer={layout.name},

  # Never, whatever an include above grants.
  deny /home/** rwmklx,
  deny /root/** rwmklx,
  deny /etc/shadow rwklx,
  deny /etc/gshadow rwklx,
  deny /etc/ssh/** rwklx,
  deny /var/lib/kiosk-hub/** rwmklx,
  deny /{{usr/,}}bin/{{ba,da,z,}}sh x,
  deny /{{usr/,}}bin/{{su,sudo,mount,umount}} x,
  deny capability,
  deny ptrace,
  deny mount,
  deny umount,
  deny remount,
  deny pivot_root,
  deny change_profile,
}}
"""


@dataclass(frozen=True)
class AppArmorStep:
    """The ``apparmor`` step: the profile written in enforce mode, AppArmor enabled, loaded when live."""

    name: str = "apparmor"
    description: str = "AppArmor profile for the kiosk app, enforce mode"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = parse_settings(config.section("apparmor"))
        changes: list[Change] = [
            EnsurePackages(("apparmor",)),
            WriteFile(PROFILE, render_profile(settings).encode()),
            # Either link would silently take the profile out of enforce mode.
            RemovePath(f"/etc/apparmor.d/disable/{PROFILE_NAME}"),
            RemovePath(f"/etc/apparmor.d/force-complain/{PROFILE_NAME}"),
            SystemdUnitState("apparmor.service", "enabled"),
        ]
        if not target.is_chroot and target.path(KERNEL_PROFILES).exists():
            mode = "enforce" if settings.enforce else "complain"
            changes.append(
                Command(
                    ("apparmor_parser", "--replace", "--write-cache", PROFILE),
                    ("grep", "-qxF", f"{PROFILE_NAME} ({mode})", KERNEL_PROFILES),
                    f"load the {PROFILE_NAME} profile into the kernel ({mode})",
                )
            )
        return changes


STEP = AppArmorStep()
