"""The agency API's HTTP plumbing: bearer-token authentication, the actor recorded with each
action, JSON bodies, and errors as status codes. Every request ends in a ``Workflow`` method —
the same ones RPC calls.

``Authorization: Bearer <token>`` names the agency (401 without a known token). The actor is the
token's agency code, or ``<agency code>:<X-Actor>`` when the client names the officer in an
``X-Actor`` header.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from marshmallow import Schema, ValidationError

from shared.core.errors import Conflict, Forbidden, IllegalAction, NotFound, ValidationFailed
from werkzeug.wrappers import Response

from shared.glue.http import BodyTooLarge, json_response, read_json

log = logging.getLogger("routing")

STATUS_OF = {ValidationFailed: 400, Forbidden: 403, NotFound: 404, IllegalAction: 409, Conflict: 409}
_ACTOR_NAME = re.compile(r"^[^\x00-\x1f:]{1,100}$")


@dataclass(frozen=True)
class Caller:
    agency_code: str
    actor: str


def bearer_token(request) -> Optional[str]:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(message: str):
    return json_response(401, {"error": message}, {"WWW-Authenticate": 'Bearer realm="ntbcare-routing"'})


def handle(workflow, request, action: Callable[[Caller, dict], Any],
           body_schema: Optional[type[Schema]] = None):
    """Authenticate, read the body, run ``action(caller, body)``, answer JSON."""
    agency = workflow.authenticate(bearer_token(request))
    if agency is None:
        return _unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")
    name = (request.headers.get("X-Actor") or "").strip()
    if name and not _ACTOR_NAME.match(name):
        return json_response(400, {"error": "X-Actor must be a name of at most 100 characters, without ':'"})
    caller = Caller(agency, f"{agency}:{name}" if name else agency)
    body: dict = {}
    if body_schema is not None:
        try:
            raw = read_json(request) if request.get_data(cache=True) else {}
            body = body_schema().load(raw if isinstance(raw, dict) else {})
        except BodyTooLarge as error:
            return json_response(413, {"error": str(error)})
        except ValidationError as error:
            return json_response(400, {"error": "invalid request body", "fields": error.messages})
        except ValueError as error:
            return json_response(400, {"error": str(error)})
    try:
        return json_response(200, action(caller, body))
    except tuple(STATUS_OF) as error:
        detail = error.args[0] if error.args else str(error)
        payload = {"error": detail} if isinstance(detail, str) else {"error": "invalid request",
                                                                     "fields": detail}
        return json_response(STATUS_OF[type(error)], payload)


# Served evidence: never interpreted by the browser as anything but what it is, never cached by
# a shared cache, and rendered with no script and no network of its own.
EVIDENCE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def shown_inline(content_type: str) -> bool:
    """Photos, videos and audio open in the browser; a PDF (or anything else) is saved."""
    return content_type.split("/", 1)[0] in ("image", "video", "audio")


def evidence_response(opened) -> Response:
    """The bytes of one piece of evidence (``services.routing.application.evidence.OpenedEvidence``)."""
    response = Response(opened.data, status=200, content_type=opened.content_type)
    disposition = "inline" if shown_inline(opened.content_type) else "attachment"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{opened.file_name}"'
    response.headers["ETag"] = f'"{opened.digest}"'
    for name, value in EVIDENCE_HEADERS.items():
        response.headers[name] = value
    return response


def handle_evidence(workflow, request, action: Callable[[Caller], Any], unavailable: type[Exception]):
    """Authenticate like ``handle``, then answer the evidence's bytes (or the refusal as JSON;
    ``unavailable``: intake did not hand them over → 503)."""
    agency = workflow.authenticate(bearer_token(request))
    if agency is None:
        return _unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")
    try:
        opened = action(Caller(agency, agency))
    except tuple(STATUS_OF) as error:
        detail = error.args[0] if error.args else str(error)
        return json_response(STATUS_OF[type(error)], {"error": detail if isinstance(detail, str) else str(detail)})
    except unavailable as error:
        return json_response(503, {"error": str(error)}, {"Retry-After": "30"})
    return evidence_response(opened)
