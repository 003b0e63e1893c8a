"""Prescription routes on the doctor listener.

=================================  =================================================================================
``POST /api/prescriptions``        ``{patient, text}`` (logged in + CSRF) → ``{number, fetch_code, expires, sha256,
                                   pdf: base64}``: the signed PDF, for the console to send to the booth
``GET  /rx``                       a small page where a patient types the fetch code (no script)
``GET  /rx/<code>``, ``/rx?code=``  the signed PDF for a fetch code; refusals as ``{"error", "message"}``:
                                   400 ``malformed``, 404 ``unknown_code``, 410 ``expired``, 429 ``rate_limited``
=================================  =================================================================================

``/rx`` needs no login (the patient has only the code) and is rate-limited per
client address and overall (:class:`hub.prescriptions.RateLimit`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Final

from aiohttp import web

from hub.doctor_api import _client, _doctor, _error, _json_object, _now
from hub.prescriptions import PrescriptionError, Prescriptions, check_request

PRESCRIPTIONS: Final = web.AppKey("prescriptions", Prescriptions)

_FORM: Final = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ordonnance / Prescription</title></head>
<body>
<h1>Votre ordonnance / Your prescription</h1>
<form method="get" action="/rx">
<label for="code">Code (XXXX-XXXX-XXXX)</label><br>
<input id="code" name="code" autocomplete="off" autocapitalize="characters" required><br><br>
<button type="submit">Télécharger / Download</button>
</form></body></html>
"""


_STATUS_CLASSES: Final[dict[int, type[web.HTTPException]]] = {
    400: web.HTTPBadRequest,
    404: web.HTTPNotFound,
    410: web.HTTPGone,
    429: web.HTTPTooManyRequests,
}


def _refusal(exc: PrescriptionError) -> web.HTTPException:
    """A typed refusal as the other API errors are: ``{"error": code, "message": text}``."""
    kind = _STATUS_CLASSES.get(exc.status, web.HTTPInternalServerError)
    return kind(text=json.dumps({"error": exc.code, "message": str(exc)}), content_type="application/json")


async def create(request: web.Request) -> web.Response:
    """``POST /api/prescriptions``: make, sign and keep a prescription; answer with the signed PDF."""
    doctor = _doctor(request, csrf=True)
    body = await _json_object(request)
    if set(body) != {"patient", "text"}:
        raise _error(400, "bad_request", "expected exactly the text fields patient, text")
    try:
        prescription = check_request(body["patient"], body["text"])
        issued = await asyncio.to_thread(
            request.app[PRESCRIPTIONS].issue, doctor.username, doctor.display_name, prescription, now=_now()
        )
    except PrescriptionError as exc:
        raise _refusal(exc) from None
    return web.json_response(issued.to_json())


async def fetch(request: web.Request) -> web.StreamResponse:
    """``GET /rx/<code>`` or ``GET /rx?code=``: the PDF for the patient's phone; ``GET /rx``: the form."""
    code = request.match_info.get("code") or request.query.get("code")
    if code is None:
        return web.Response(text=_FORM, content_type="text/html", headers={"Cache-Control": "no-store"})
    try:
        number, pdf = request.app[PRESCRIPTIONS].fetch(code[:64], client=_client(request), now=_now())
    except PrescriptionError as exc:
        raise _refusal(exc) from None
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{number}.pdf"', "Cache-Control": "no-store"},
    )


def add_routes(app: web.Application, prescriptions: Prescriptions) -> None:
    """Put the prescription routes on the doctor application (before it starts)."""
    app[PRESCRIPTIONS] = prescriptions
    app.router.add_post("/api/prescriptions", create)
    app.router.add_get("/rx", fetch)
    app.router.add_get("/rx/{code}", fetch)
