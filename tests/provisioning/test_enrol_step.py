"""The provisioning step "enrol": its table, its files on a temporary root, and a real enrolment.

The enrolment test provisions ``/`` with every path under a temporary
directory and ``kiosk-enrol`` run by this interpreter, against a real
``kiosk-hub serve`` (DevHub): the same code path a booth takes, except that
the target is not a chroot (a temporary root has no Python to run it).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pwd
import re
import stat
import sys
import time
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hub import pki
from hub.enrolment import issue_token
from hub.store import BoothCertificate, Store
from kiosk.demo.hub import DevHub
from kiosk.enrol.files import IdentityDir, new_key
from provisioning import cli, core
from provisioning.config import BoothConfig
from provisioning.core import Target
from provisioning.errors import ApplyError, ConfigError, TargetError
from provisioning.steps import by_name
from provisioning.steps.enrol import STEP, Enrolled, certificate_problem, settings

from .conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "provisioning" / "example.toml"
BOOTH = "booth-0001"


@pytest.fixture(scope="module")
def fleet() -> pki.Issuer:
    return pki.create_fleet_ca(now=datetime.datetime.now(datetime.UTC))


@pytest.fixture
def fleet_ca(fleet: pki.Issuer, tmp_path: Path) -> Path:
    path = tmp_path / "fleet-ca.pem"
    pki.save_certificate(path, fleet.certificate)
    return path


def with_kiosk_user(root: Path) -> None:
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write("kiosk:x:998:998::/var/lib/kiosk:/usr/sbin/nologin\n")
    with (root / "etc/group").open("a") as group:
        group.write("kiosk:x:998:\n")


def test_the_step_is_registered_last() -> None:
    assert by_name(["enrol"]) == (STEP,)


def test_the_documented_table_is_valid() -> None:
    # The example keeps [enrolment] commented out (it needs a hub); uncommented, it must check out.
    text = EXAMPLE.read_text()
    block = text[text.index("# [enrolment]") :]
    uncommented = "\n".join(re.sub(r"^# ?", "", line, count=1) for line in block.splitlines())
    document = tomllib.loads(uncommented)
    config = make_config(**document)
    s = settings(config)
    assert (s.enabled, s.hub, s.fleet_ca_path, s.identity_dir, s.owner) == (
        True,
        "https://hub.example.org:8443",
        "/etc/kiosk/fleet-ca.pem",
        "/var/lib/kiosk/identity",
        "kiosk",
    )
    assert s.token_file == Path("/root/enrol-token") and s.renew_before_days == 30


def test_without_the_table_the_step_does_nothing(config: BoothConfig, target: Target) -> None:
    assert STEP.changes(config, target) == []


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({}, "enrolment.fleet_ca"),
        ({"fleet_ca": "/nonexistent/ca.pem"}, "enrolment.fleet_ca"),
        ({"fleet_ca": "FLEET", "token": "A" * 43, "token_file": "/t"}, "enrolment.token"),
        ({"fleet_ca": "FLEET", "token": "short"}, "enrolment.token"),
        ({"fleet_ca": "FLEET", "hub": "http://hub:80"}, "enrolment.hub"),
        ({"fleet_ca": "FLEET", "renew_before_days": 0}, "enrolment.renew_before_days"),
        ({"fleet_ca": "FLEET", "command": ["kiosk-enrol"]}, "enrolment.command"),
        ({"fleet_ca": "FLEET", "tokenfile": "/t"}, "enrolment.tokenfile"),
    ],
)
def test_bad_tables_name_the_key(table: dict[str, object], key: str, fleet_ca: Path, target: Target) -> None:
    table = {k: str(fleet_ca) if v == "FLEET" else v for k, v in table.items()}
    with pytest.raises(ConfigError) as caught:
        STEP.changes(make_config(enrolment=table), target)
    assert caught.value.key == key


def test_the_booth_id_must_be_one_the_hub_certifies(fleet_ca: Path, target: Target) -> None:
    config = make_config(booth={"id": "kiosk-lyon"}, enrolment={"fleet_ca": str(fleet_ca)})
    with pytest.raises(ConfigError) as caught:
        STEP.changes(config, target)
    assert caught.value.key == "booth.id"
    # Without enrolment (enrolled on first boot, say) any booth id goes.
    off = make_config(booth={"id": "kiosk-lyon"}, enrolment={"fleet_ca": str(fleet_ca), "enabled": False})
    assert len(STEP.changes(off, target)) == 2


def test_disabled_installs_the_fleet_ca_and_the_directory(fleet_ca: Path, root: Path, target: Target) -> None:
    with_kiosk_user(root)
    config = make_config(enrolment={"fleet_ca": str(fleet_ca), "enabled": False})
    applied = core.apply([STEP], config, target)
    assert [p.change.describe() for p in applied] == [
        f"write /etc/kiosk/fleet-ca.pem (0644 root:root, {len(fleet_ca.read_bytes())} bytes)",
        "directory /var/lib/kiosk/identity (0700 kiosk:kiosk)",
    ]
    assert (root / "etc/kiosk/fleet-ca.pem").read_bytes() == fleet_ca.read_bytes()
    identity = root / "var/lib/kiosk/identity"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o700 and identity.stat().st_uid == 998
    assert core.plan([STEP], config, target) == []


def test_a_missing_certificate_is_drift_and_needs_a_token(fleet_ca: Path, root: Path, target: Target) -> None:
    with_kiosk_user(root)
    config = make_config(enrolment={"fleet_ca": str(fleet_ca)})
    pending = core.plan([STEP], config, target)
    assert [p.change.describe() for p in pending][-1] == (
        "enrol booth-0001 with https://hub.example.org:8443 (certificate in /var/lib/kiosk/identity)"
    )
    with pytest.raises(ApplyError, match="gives no token"):
        core.apply([STEP], config, target)


def test_certificate_problems(fleet: pki.Issuer, tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    identity = tmp_path / "identity"
    window = datetime.timedelta(days=30)

    def problem() -> str | None:
        return certificate_problem(identity, booth_id=BOOTH, fleet_ca=fleet.certificate, window=window, now=now)

    assert problem() == "missing"
    key = new_key()
    IdentityDir(identity).install(key, pki.issue_booth_certificate(fleet, key.public_key(), BOOTH, now=now))
    assert problem() is None
    assert (
        certificate_problem(identity, booth_id="booth-0002", fleet_ca=fleet.certificate, window=window, now=now)
        == "foreign"
    )
    other = pki.create_fleet_ca(now=now, name="Other fleet")
    assert certificate_problem(identity, booth_id=BOOTH, fleet_ca=other.certificate, window=window, now=now) == (
        "foreign"
    )
    soon = now - pki.BOOTH_LIFETIME + datetime.timedelta(days=10)
    IdentityDir(identity).install(key, pki.issue_booth_certificate(fleet, key.public_key(), BOOTH, now=soon))
    assert problem() == "expiring"
    IdentityDir(identity).install(key, pki.issue_booth_certificate(fleet, key.public_key(), BOOTH, now=soon - window))
    assert problem() == "expired"
    (identity / "booth.key").write_text("junk")
    assert problem() == "unreadable"


# -- a real enrolment -----------------------------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_provisioning_enrols_once_then_renews_before_expiry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    with DevHub(tmp_path / "hub") as hub:
        store = Store(hub.paths.database)
        try:
            token = issue_token(store, BOOTH, now=time.time())
        finally:
            store.close()
        token_file = tmp_path / "enrol-token"
        token_file.write_text(token + "\n")
        identity = tmp_path / "booth" / "identity"
        table = {
            "fleet_ca": str(hub.paths.fleet_ca),
            "fleet_ca_path": str(tmp_path / "booth" / "etc" / "fleet-ca.pem"),
            "identity_dir": str(identity),
            "token_file": str(token_file),
            "owner": me,
            "hub": hub.origin,
            # This interpreter and this checkout's kiosk.enrol, as /opt/kiosk/venv/bin/kiosk-enrol on a booth.
            "command": ["/usr/bin/env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "kiosk.enrol.cli"],
        }
        config_file = tmp_path / "booth.toml"
        config_file.write_text(
            f'[booth]\nid = "{BOOTH}"\n[hub]\nhost = "localhost"\nbooth_port = {hub.booth_port}\n'
            f"https_port = {hub.doctor_port}\n[enrolment]\n"
            + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())
        )
        base = ["--config", str(config_file), "--root", "/", "--only", "enrol", "--json"]
        assert cli.main([*base, "--check"]) == 1
        drift = json.loads(capsys.readouterr().out)["changes"]
        assert [c["change"].split(" ")[0] for c in drift] == ["write", "directory", "enrol"]

        assert cli.main(base) == 0, capsys.readouterr()
        assert len(json.loads(capsys.readouterr().out)["changes"]) == 3
        first = x509.load_pem_x509_certificate((identity / "booth.pem").read_bytes())
        assert stat.S_IMODE((identity / "booth.key").stat().st_mode) == 0o600
        # Idempotent: nothing drifts, and a second run needs neither the hub nor the spent token.
        token_file.unlink()
        assert cli.main([*base, "--check"]) == 0
        capsys.readouterr()
        assert cli.main(base) == 0
        assert json.loads(capsys.readouterr().out)["changes"] == []

        # A booth enrolled nearly three years ago (the hub's record says so): ten days from expiry, drift;
        # applying renews over mutual TLS with a new key, no token needed.
        issuer = pki.load_issuer(hub.paths.fleet_ca, hub.paths.fleet_ca_key)
        key = new_key()
        soon = datetime.datetime.now(datetime.UTC) - pki.BOOTH_LIFETIME + datetime.timedelta(days=10)
        old = pki.issue_booth_certificate(issuer, key.public_key(), BOOTH, now=soon)
        IdentityDir(identity).install(key, old)
        store = Store(hub.paths.database)
        try:
            spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            record = BoothCertificate(
                BOOTH, f"{old.serial_number:x}", hashlib.sha256(spki).digest(), pki.pem(old), 0.0, soon.timestamp()
            )
            store.record_booth_certificate(record)
        finally:
            store.close()
        assert cli.main([*base, "--check"]) == 1
        assert [c["change"].split(" ")[0] for c in json.loads(capsys.readouterr().out)["changes"]] == ["enrol"]
        assert cli.main(base) == 0, capsys.readouterr()
        capsys.readouterr()
        renewed = x509.load_pem_x509_certificate((identity / "booth.pem").read_bytes())
        assert renewed.serial_number != first.serial_number
        assert renewed.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=365)
        assert cli.main([*base, "--check"]) == 0
        log = hub.log.read_text()
    assert log.count("security event enrol_ok") == 1 and log.count("security event renew_ok") == 1
    assert token not in log


def test_enrolled_change_never_puts_the_token_on_a_command_line(fleet_ca: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("A" * 43)
    config = make_config(
        enrolment={
            "fleet_ca": str(fleet_ca),
            "token_file": str(token_file),
            "identity_dir": str(tmp_path / "identity"),
            "command": ["/bin/false"],
        }
    )
    change = STEP.changes(config, Target(Path("/")))[-1]
    assert isinstance(change, Enrolled)
    with pytest.raises(TargetError) as caught:
        change.apply(Target(Path("/")))
    assert "A" * 43 not in str(caught.value)
    assert "--token-file -" in str(caught.value)
