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
