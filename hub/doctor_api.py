"""The doctor listener: console pages, login, identity-key certification, the waiting-room WebSocket.

Endpoints (JSON in and out; errors as ``{"error": code, "message": text}``):

=======================================  ==========================================================================
``POST /api/login``                      ``{username, password}`` → pending session cookie,
                                         ``{stage: "second_factor", methods, csrf, expires}``; ``methods`` is
                                         ``["webauthn", "totp"]`` with a security key registered, else ``["totp"]``
``POST /api/login/totp``                 ``{code}`` (pending cookie + CSRF header) → active cookie,
                                         ``{stage: "done", csrf, expires, username, display_name}``
``POST /api/login/webauthn/options``     ``{}`` (pending cookie + CSRF) → ``{publicKey: request options JSON}``
``POST /api/login/webauthn``             ``{credential: PublicKeyCredential.toJSON()}`` (pending cookie + CSRF)
                                         → active cookie, the same body as the TOTP step
``POST /api/webauthn/register/options``  ``{}`` (logged in + CSRF) → ``{publicKey: creation options JSON}``
``POST /api/webauthn/register``          ``{credential, name?}`` (logged in + CSRF) → ``{registered, credentials}``
``GET  /api/me``                         who is logged in, the session's CSRF token (after a reload), how many
                                         security keys the account has (``webauthn_credentials``)
``GET  /api/config``                     ``{fleet_ca: PEM, ice_servers, ice_transport_policy: "all"|"relay"}``
                                         for the console's peer connection (TURN credentials are per request)
``POST /api/identity-key``               ``{spki: base64 DER}`` → ``{chain: PEM}`` (once per login)
``POST /api/logout``                     ends the session
``GET  /api/ws``                         the waiting room and signalling (WebSocket)
=======================================  ==========================================================================

WebAuthn's relying party id is the host name of the Origin the request comes
from (one of the allowed origins); an IP-address origin gets a 400
``ip_origin`` from the options endpoints, as browsers refuse WebAuthn there.
A security-key answer that does not verify at login is a login failure like a
wrong TOTP code (401, counted towards the lockout); a credential that is not
even of the WebAuthn JSON form is a 400 ``bad_credential``.

Cross-site protection, on top of the SameSite=Strict cookie: every
state-changing request and the WebSocket upgrade must carry an allowed
``Origin`` (and ``Sec-Fetch-Site``, when sent, must say same-origin); every
state-changing request after the password step must also carry
``X-CSRF-Token`` equal to the session's token, and every POST must be
``application/json``, which a cross-site form cannot send.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from hub import pki, webauthn
from hub.accounts import Accounts, Doctor, IdentityError, Issued, LoginError, LoginReason, opaque
from hub.booth_api import FRAME_LIMIT
from hub.config import HubConfig
from hub.messages import Direction
from hub.waiting_room import CLOSE_SESSION, DoctorLink, WaitingRoom, relay_frames
from hub.wsendpoint import WsEndpoint
from kiosk.session.ice import turn_rest_credentials

logger = logging.getLogger(__name__)

COOKIE: Final = "__Host-hub_session"
"""The ``__Host-`` prefix makes browsers insist on Secure, Path=/ and no Domain."""
CSRF_HEADER: Final = "X-CSRF-Token"
MAX_BODY: Final = 16 * 1024
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    ),
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
}
_STATUS: Final = {
    LoginReason.INVALID_CREDENTIALS: 401,
    LoginReason.NO_SESSION: 401,
    LoginReason.WRONG_STAGE: 401,
    LoginReason.LOCKED: 423,
    LoginReason.RATE_LIMITED: 429,
}


class HTTPLocked(web.HTTPClientError):
    """423: the account name is locked after too many failures (aiohttp has no class for it)."""

    status_code = 423


UNSAFE: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_AUTHORISED: Final = frozenset({"/api/enrol"})
"""Endpoints a non-browser client calls with its credential in the body and no cookie (hub.enrolment): no
ambient authority for another site to ride, so no Origin check (the JSON content type is still required)."""
_ERRORS: Final[dict[int, type[web.HTTPException]]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    423: HTTPLocked,
    429: web.HTTPTooManyRequests,
}

ACCOUNTS: Final = web.AppKey("accounts", Accounts)
ROOM: Final = web.AppKey("room", WaitingRoom)
DOCTOR_CA: Final = web.AppKey("doctor_ca", pki.Issuer)
ORIGINS: Final = web.AppKey("origins", set[str])
LINKS: Final = web.AppKey("links", dict[DoctorLink, str])
HEARTBEAT: Final = web.AppKey("heartbeat", float)
STATIC_DIR: Final = web.AppKey("static_dir", Path)
FLEET_CA: Final = web.AppKey("fleet_ca", str)


def _error(status: int, code: str, message: str) -> web.HTTPException:
    body = json.dumps({"error": code, "message": message})
    return _ERRORS[status](text=body, content_type="application/json")


def _now() -> float:
    return time.time()


# -- middlewares --------------------------------------------------------------------------------
@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Strict headers on every response, errors included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
    return response


def origin_allowed(request: web.Request) -> bool:
    """Same-origin check: the browser's Origin is one of ours, and Fetch Metadata (when sent) agrees."""
    origin = request.headers.get("Origin")
    if origin is None or origin.rstrip("/") not in request.app[ORIGINS]:
        return False
    site = request.headers.get("Sec-Fetch-Site")
    return site is None or site in ("same-origin", "none")


@web.middleware
async def cross_site_guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse state-changing requests from another site before any handler runs."""
    if request.method in UNSAFE:
        if request.path not in TOKEN_AUTHORISED and not origin_allowed(request):
            request.app[ACCOUNTS].audit("cross_site_refused", {"path": request.path})
            raise _error(403, "cross_site", "cross-site request refused")
        if request.content_type != "application/json":
            raise _error(415, "content_type", "send application/json")
    return await handler(request)


# -- helpers -------------------------------------------------------------------------------------------
async def _json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (at most MAX_BODY bytes: aiohttp refuses more with a 413)."""
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise _error(400, "bad_request", "the body is not JSON") from exc
    if not isinstance(body, dict):
        raise _error(400, "bad_request", "the body must be a JSON object")
    return body


async def _json(request: web.Request, *keys: str) -> dict[str, str]:
    """A body of exactly the text fields ``keys`` (no keys: exactly ``{}``)."""
    body = await _json_object(request)
    if set(body) != set(keys) or not all(isinstance(body[k], str) for k in keys):
        raise _error(400, "bad_request", f"expected exactly the text fields {', '.join(keys)}")
    return body


async def _credential_body(request: web.Request, kind: webauthn.Kind) -> tuple[webauthn.CredentialJSON, str | None]:
    """``{"credential": PublicKeyCredential JSON}`` (registration may add a text ``name``), strictly checked."""
    body = await _json_object(request)
    allowed = {"credential", "name"} if kind == webauthn.REGISTER else {"credential"}
    name = body.get("name")
    if "credential" not in body or not set(body) <= allowed or not (name is None or isinstance(name, str)):
        optional = " and optionally the text field name" if kind == webauthn.REGISTER else ""
        raise _error(400, "bad_request", f"expected the object field credential{optional}")
    try:
        return webauthn.check_credential(body["credential"], kind), name
    except webauthn.WebAuthnError as exc:
        raise _webauthn_error(exc) from exc


def _webauthn_error(exc: webauthn.WebAuthnError) -> web.HTTPException:
    return _error(exc.status, exc.code, str(exc))


def _origin(request: web.Request) -> str:
    """The request's Origin (the cross-site guard has checked it is one of ours): WebAuthn's expected origin."""
    origin = request.headers.get("Origin", "").rstrip("/")
    if origin not in request.app[ORIGINS]:
        raise _error(403, "cross_site", "cross-site request refused")
    return origin


def _pending(request: web.Request) -> str:
    """The pending session's id, after checking it exists and the CSRF header matches it."""
    session_id = request.cookies.get(COOKIE)
    pending = request.app[ACCOUNTS].store.session(session_id) if session_id else None
    if session_id is None or pending is None:
        raise _error(401, LoginReason.NO_SESSION.value, "no session; log in")
    _check_csrf(request, pending.csrf)
    return session_id


def _logged_in(request: web.Request, issued: Issued) -> web.Response:
    """The answer to a successful second factor: the new session's cookie and who it is."""
    doctor = request.app[ACCOUNTS].authenticate(issued.session_id, now=_now(), touch=False)
    response = web.json_response(
        {
            "stage": "done",
            "csrf": issued.csrf,
            "expires": issued.expires,
            "username": doctor.username,
            "display_name": doctor.display_name,
        }
    )
    _set_cookie(response, issued.session_id)
    return response


def ice_servers(config: HubConfig, account: str, now: float) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries for a doctor's console: STUN as configured, TURN with coturn REST-API
    credentials (``"<expiry>:<pseudonym>"``, HMAC-SHA1 of the shared secret) valid ``turn_ttl`` seconds.
    The TURN server logs usernames: it gets the account's audit pseudonym, never the account name."""
    stun = [url for url in config.ice_urls if url.startswith("stun:")]
    turn = [url for url in config.ice_urls if not url.startswith("stun:")]
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn:
        credentials = turn_rest_credentials(config.turn_secret, user=opaque(account), now=now, ttl=config.turn_ttl)
        servers.append({"urls": turn, "username": credentials.username, "credential": credentials.password})
    return servers


def _login_error(exc: LoginError) -> web.HTTPException:
    return _error(_STATUS[exc.reason], exc.reason.value, str(exc))


def _check_csrf(request: web.Request, expected: str) -> None:
    given = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        request.app[ACCOUNTS].audit("csrf_refused", {"path": request.path})
        raise _error(403, "csrf", "missing or wrong CSRF token")


def _doctor(request: web.Request, *, csrf: bool) -> Doctor:
    try:
        doctor = request.app[ACCOUNTS].authenticate(request.cookies.get(COOKIE), now=_now())
    except LoginError as exc:
        raise _login_error(exc) from exc
    if csrf:
        _check_csrf(request, doctor.session.csrf)
    return doctor


def _set_cookie(response: web.StreamResponse, session_id: str) -> None:
    response.set_cookie(COOKIE, session_id, secure=True, httponly=True, samesite="Strict", path="/")


def _client(request: web.Request) -> str:
    # The peer address of the TLS connection; behind a reverse proxy this would need a trusted X-Forwarded-For.
    return request.remote or "unknown"


# -- handlers ---------------------------------------------------------------------------------------------
async def login(request: web.Request) -> web.Response:
    """Password step."""
    body = await _json(request, "username", "password")
    try:
        issued = await request.app[ACCOUNTS].password_step(
            body["username"], body["password"], client=_client(request), now=_now()
        )
    except LoginError as exc:
        raise _login_error(exc) from exc
    response = web.json_response(
        {"stage": "second_factor", "methods": list(issued.methods), "csrf": issued.csrf, "expires": issued.expires}
    )
    _set_cookie(response, issued.session_id)
    return response


async def login_totp(request: web.Request) -> web.Response:
    """TOTP step: needs the pending cookie and its CSRF token."""
    body = await _json(request, "code")
    session_id = _pending(request)
    try:
        issued = await request.app[ACCOUNTS].totp_step(session_id, body["code"], client=_client(request), now=_now())
    except LoginError as exc:
        raise _login_error(exc) from exc
    return _logged_in(request, issued)


async def login_webauthn_options(request: web.Request) -> web.Response:
    """Security-key step, first half: a challenge for the pending session, and the account's keys."""
    session_id = _pending(request)
    await _json(request)
    try:
        options = request.app[ACCOUNTS].webauthn_login_options(session_id, origin=_origin(request), now=_now())
    except LoginError as exc:
        raise _login_error(exc) from exc
    except webauthn.WebAuthnError as exc:
        raise _webauthn_error(exc) from exc
    return web.json_response({"publicKey": options})


async def login_webauthn(request: web.Request) -> web.Response:
    """Security-key step, second half: the assertion; an active session like the TOTP step."""
    session_id = _pending(request)
    credential, _ = await _credential_body(request, webauthn.LOGIN)
    try:
        issued = request.app[ACCOUNTS].webauthn_step(
            session_id, credential, origin=_origin(request), client=_client(request), now=_now()
        )
    except LoginError as exc:
        raise _login_error(exc) from exc
    except webauthn.WebAuthnError as exc:
        raise _webauthn_error(exc) from exc
    return _logged_in(request, issued)


async def webauthn_register_options(request: web.Request) -> web.Response:
    """Registration of a security key, first half (logged-in doctors only)."""
    doctor = _doctor(request, csrf=True)
    await _json(request)
    try:
        options = request.app[ACCOUNTS].webauthn_registration_options(doctor, origin=_origin(request), now=_now())
    except webauthn.WebAuthnError as exc:
        raise _webauthn_error(exc) from exc
    return web.json_response({"publicKey": options})


async def webauthn_register(request: web.Request) -> web.Response:
    """Registration of a security key, second half: the attestation (format "none" is enough)."""
    doctor = _doctor(request, csrf=True)
    credential, name = await _credential_body(request, webauthn.REGISTER)
    try:
        count = request.app[ACCOUNTS].register_webauthn(
            doctor, credential, origin=_origin(request), name=name, now=_now()
        )
    except webauthn.WebAuthnError as exc:
        raise _webauthn_error(exc) from exc
    return web.json_response({"registered": True, "credentials": count})


async def me(request: web.Request) -> web.Response:
    """Who is logged in (a GET: no CSRF token needed, and it hands the token back)."""
    doctor = _doctor(request, csrf=False)
    return web.json_response(
        {
            "username": doctor.username,
            "display_name": doctor.display_name,
            "csrf": doctor.session.csrf,
            "expires": doctor.session.expires,
            "identity_certified": doctor.session.identity_chain is not None,
            "webauthn_credentials": request.app[ACCOUNTS].store.credential_count(doctor.username),
        }
    )


async def client_config(request: web.Request) -> web.Response:
    """What the console needs for a call: the fleet CA (to verify booths) and its ICE configuration."""
    doctor = _doctor(request, csrf=False)
    config = request.app[ACCOUNTS].config
    return web.json_response(
        {
            "fleet_ca": request.app[FLEET_CA],
            "ice_servers": ice_servers(config, doctor.username, _now()),
            "ice_transport_policy": "relay" if config.relay_only else "all",
        }
    )


async def identity_key(request: web.Request) -> web.Response:
    """Certify the browser's per-login WebCrypto public key (SPKI DER, base64)."""
    doctor = _doctor(request, csrf=True)
    body = await _json(request, "spki")
    try:
        der = base64.b64decode(body["spki"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _error(400, "bad_request", "spki must be base64") from exc
    try:
        chain = request.app[ACCOUNTS].certify_identity_key(doctor, der, request.app[DOCTOR_CA], now=_now())
    except IdentityError as exc:
        already = "already" in str(exc)
        raise _error(409 if already else 400, "identity", str(exc)) from exc
    return web.json_response({"chain": chain})


async def logout(request: web.Request) -> web.Response:
    """End the session and every WebSocket riding on it."""
    doctor = _doctor(request, csrf=True)
    request.app[ACCOUNTS].logout(doctor)
    for link, session_id in list(request.app[LINKS].items()):
        if session_id == request.cookies.get(COOKIE):
            link.endpoint.close(CLOSE_SESSION, "logged out")
    response = web.json_response({"stage": "logged_out"})
    response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


async def doctor_socket(request: web.Request) -> web.StreamResponse:
    """``GET /api/ws``: queue, accept, signalling. A browser cannot add headers to a WebSocket
    upgrade, so the Origin check stands in for the CSRF token here."""
    if not origin_allowed(request):
        request.app[ACCOUNTS].audit("cross_site_refused", {"path": request.path})
        raise _error(403, "cross_site", "cross-site request refused")
    doctor = _doctor(request, csrf=False)
    session_id = request.cookies[COOKIE]
    ws = web.WebSocketResponse(max_msg_size=FRAME_LIMIT, heartbeat=request.app[HEARTBEAT], compress=False)
    await ws.prepare(request)
    room = request.app[ROOM]
    store = request.app[ACCOUNTS].store
    endpoint = WsEndpoint(ws)

    def identity_chain() -> str | None:
        record = store.session(session_id)
        return record.identity_chain if record else None

    link = DoctorLink(
        endpoint, username=doctor.username, display_name=doctor.display_name, identity_chain=identity_chain
    )
    request.app[LINKS][link] = session_id
    room.doctor_joined(link, time.monotonic())
    try:
        await relay_frames(ws, room, link, Direction.DOCTOR_TO_HUB, room.from_doctor)
    finally:
        request.app[LINKS].pop(link, None)
        room.doctor_left(link, time.monotonic())
        await endpoint.finish()
    return ws


async def index(request: web.Request) -> web.FileResponse:
    """The console's page."""
    return web.FileResponse(request.app[STATIC_DIR] / "index.html")


def check_sessions(app: web.Application) -> None:
    """Close WebSockets whose session ended (logout, absolute lifetime); a live one counts as activity."""
    accounts = app[ACCOUNTS]
    now = _now()
    for link, session_id in list(app[LINKS].items()):
        try:
            accounts.authenticate(session_id, now=now, touch=True)
        except LoginError:
            link.endpoint.close(CLOSE_SESSION, "session ended")
    accounts.store.purge_sessions(now, accounts.config.idle_timeout)


def doctor_app(
    accounts: Accounts,
    room: WaitingRoom,
    doctor_ca: pki.Issuer,
    *,
    fleet_ca: str,
    origins: set[str],
    static_dir: Path,
    heartbeat: float,
) -> web.Application:
    """The aiohttp application served on the doctor listener; ``fleet_ca`` is the fleet root CA's PEM."""
    app = web.Application(middlewares=[security_headers, cross_site_guard], client_max_size=MAX_BODY)
    app[ACCOUNTS] = accounts
    app[ROOM] = room
    app[DOCTOR_CA] = doctor_ca
    app[ORIGINS] = origins
    app[LINKS] = {}
    app[HEARTBEAT] = heartbeat
    app[STATIC_DIR] = static_dir
    app[FLEET_CA] = fleet_ca
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/login/totp", login_totp)
    app.router.add_post("/api/login/webauthn/options", login_webauthn_options)
    app.router.add_post("/api/login/webauthn", login_webauthn)
    app.router.add_post("/api/webauthn/register/options", webauthn_register_options)
    app.router.add_post("/api/webauthn/register", webauthn_register)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/config", client_config)
    app.router.add_post("/api/identity-key", identity_key)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/ws", doctor_socket)
    app.router.add_get("/", index)
    app.router.add_static("/static/", static_dir, follow_symlinks=False, show_index=False)
    return app
