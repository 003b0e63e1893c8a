"""The booth's systemd units: installed into /etc/systemd/system, their environment file, enabled.

The units come from the project's ``systemd/`` directory (``[units] source``
points elsewhere, e.g. at an installed copy). ``/etc/kiosk/kiosk.env`` is
the ``EnvironmentFile=`` of the booth's services: where the hub is, which booth
this is, where its state lives. Enabling is ``systemctl --root`` (symlinks in
the target's ``*.wants`` directories), so it works on a root filesystem with no
running systemd. The hub's unit is shipped too but belongs on the hosted side:
it is installed and enabled only when ``enable`` names it.

The services' writable directories under /var/lib/kiosk are their
``StateDirectory=`` entries: systemd creates them, owned by the service user,
when the service first starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from provisioning.config import BoothConfig, ConfigError
from provisioning.core import Change, SystemdUnitState, Target, WriteFile

DEFAULT_SOURCE: Final = Path(__file__).resolve().parents[2] / "systemd"
BOOTH_UNITS: Final = ("kiosk-app.service", "kiosk-uploader.service", "kiosk-renew.service", "kiosk-renew.timer")
"""Installed on every booth."""
HOSTED_UNITS: Final = ("kiosk-hub.service",)
"""Installed only when enabled (a hub machine provisioned with this tool)."""
DEFAULT_ENABLED: Final = ("kiosk-app.service", "kiosk-uploader.service", "kiosk-renew.timer")
"""kiosk-renew.service is started by its timer, not at boot."""
UNIT_DIR: Final = "/etc/systemd/system"
ENV_FILE: Final = "/etc/kiosk/kiosk.env"
STATE: Final = "/var/lib/kiosk"


@dataclass(frozen=True)
class UnitsSettings:
    """The ``[units]`` table."""

    enable: tuple[str, ...] = DEFAULT_ENABLED
    source: Path = DEFAULT_SOURCE

    @classmethod
    def from_config(cls, config: BoothConfig) -> UnitsSettings:
        table = config.table("units")
        known = (*BOOTH_UNITS, *HOSTED_UNITS)
        enable = table.strings("enable", DEFAULT_ENABLED)
        for unit in enable:
            if unit not in known:
                raise ConfigError(table.key("enable"), f"{unit!r} is not one of {', '.join(known)}")
        source = Path(table.string("source", str(DEFAULT_SOURCE)))
        table.done()
        if not source.is_absolute():
            raise ConfigError(table.key("source"), "must be an absolute path")
        return cls(enable=tuple(dict.fromkeys(enable)), source=source)


def environment(config: BoothConfig) -> bytes:
    """The content of /etc/kiosk/kiosk.env (no secret in it: addresses, the booth id, a path)."""
    lines = [
        "# The booth services' environment (EnvironmentFile= of kiosk-app, kiosk-uploader, kiosk-renew).",
        "# Written by kiosk-provision from the booth configuration: edit that and provision again.",
        f"KIOSK_HUB={config.hub_wss_url}",
        f"KIOSK_HUB_HTTPS={config.hub_https_url}",
        f"KIOSK_BOOTH_ID={config.booth_id}",
        f"KIOSK_STATE={STATE}",
    ]
    return ("\n".join(lines) + "\n").encode()


class UnitsStep:
    name = "units"
    description = "the booth's systemd units (sandboxed, watchdog), their environment file, enabled"

    def changes(self, config: BoothConfig, target: Target) -> list[Change]:
        settings = UnitsSettings.from_config(config)
        installed = [*BOOTH_UNITS, *(unit for unit in HOSTED_UNITS if unit in settings.enable)]
        changes: list[Change] = []
        for unit in installed:
            source = settings.source / unit
            try:
                content = source.read_bytes()
            except FileNotFoundError:
                raise ConfigError("units.source", f"{settings.source} has no {unit}") from None
            changes.append(WriteFile(f"{UNIT_DIR}/{unit}", content, mode=0o644))
        changes.append(WriteFile(ENV_FILE, environment(config), mode=0o644))
        changes += [SystemdUnitState(unit, "enabled") for unit in settings.enable]
        return changes


STEP: Final = UnitsStep()
