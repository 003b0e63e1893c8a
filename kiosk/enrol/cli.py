"""``kiosk-enrol``: enrol a booth with a one-time token, renew its certificate before it expires.

    kiosk-enrol enrol --hub https://host:port --token T --booth-id booth-0042 \\
                      --fleet-ca /etc/kiosk/fleet-ca.pem --identity-dir /var/lib/kiosk/identity
    kiosk-enrol renew --hub wss://host:port/ws --fleet-ca /etc/kiosk/fleet-ca.pem \\
                      --identity-dir /var/lib/kiosk/identity [--before-days 30]

Both print one JSON object. Exit 0: done or nothing to do (``status``:
``enrolled``, ``already_enrolled``, ``renewed``, ``valid``); 1: failure
(``{"status": "error", "error": reason, "message", "hub_error"?}``); 2: usage.
``--token-file`` reads the token from a file instead of the command line
(where ``ps`` would show it); ``-`` is standard input.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .client import DEFAULT_RENEW_WINDOW, enrol, renew
from .errors import EnrolError, Reason


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk-enrol", description="Enrol this booth with the hub; renew it.")
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("enrol", help="make the booth's key and get its first certificate")
    first.add_argument("--hub", required=True, help="the hub's HTTPS address, https://host:port")
    token = first.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="the one-time enrolment token")
    token.add_argument("--token-file", type=Path, help="a file holding the token ('-': standard input)")
    first.add_argument("--booth-id", required=True, help="booth id, e.g. booth-0042")
    first.add_argument("--fleet-ca", type=Path, required=True)
    first.add_argument("--identity-dir", type=Path, required=True)
    again = commands.add_parser("renew", help="renew the certificate when it expires soon")
    again.add_argument("--hub", required=True, help="the hub's booth address, wss://host:port/ws or https://host:port")
    again.add_argument("--fleet-ca", type=Path, required=True)
    again.add_argument("--identity-dir", type=Path, required=True)
    again.add_argument(
        "--before-days",
        type=float,
        default=DEFAULT_RENEW_WINDOW.days,
        help="renew when the certificate expires within this many days (default 30)",
    )
    return parser


def _token(args: argparse.Namespace) -> str:
    if args.token is not None:
        return str(args.token)
    try:
        text = sys.stdin.read() if str(args.token_file) == "-" else Path(args.token_file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise EnrolError(Reason.USAGE, f"cannot read the token file {args.token_file}") from exc
    return text.strip()


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "enrol":
        return enrol(
            hub=args.hub,
            token=_token(args),
            booth_id=args.booth_id,
            fleet_ca=args.fleet_ca,
            identity_dir=args.identity_dir,
        )
    if not 0 <= args.before_days <= 3650:
        raise EnrolError(Reason.USAGE, "--before-days is between 0 and 3650")
    return renew(
        hub=args.hub,
        fleet_ca=args.fleet_ca,
        identity_dir=args.identity_dir,
        window=datetime.timedelta(days=args.before_days),
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kiosk-enrol``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        result = _run(args)
    except EnrolError as exc:
        print(json.dumps(exc.as_json()))
        return 2 if exc.reason is Reason.USAGE else 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
