"""The agency API's HTTP plumbing: bearer-token authentication, the actor recorded with each
action, JSON bodies, and errors as status codes. Every request ends in a ``Workflow`` method —
the same ones RPC calls.

``Authorization: Bearer <token>`` names the agency (401 without a known token). The actor is the
token's agency code, or ``<agency code>:<X-Actor>`` when the client names the officer in an
``X-Actor`` header.

Abuse: wrong tokens are counted per client address (``TokenGuesses``, shared with the console's
sign-in); past ``ROUTING_TOKEN_FAILURES_PER_MINUTE`` the address gets 429 until its bucket
refills, whatever it sends. A complaint the caller may not see is answered exactly as an unknown
one (404, the same body), so a token cannot be used to learn which codes exist. Bodies must be
``application/json`` (415 otherwise).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from marshmallow import Schema, ValidationError

from shared.core.errors import Conflict, Forbidden, IllegalAction, NotFound, NotVisible, ValidationFailed
from werkzeug.wrappers import Response

from shared.core.ratelimit import Decision, TokenBucketLimiter
from shared.core.shared_budget import SharedTokenBucket, shared_limiter_from_env
from shared.glue.http import (BodyTooLarge, NotJson, client_address, json_response, read_json,
                              too_many_requests, unsupported_media_type)

log = logging.getLogger("routing")

STATUS_OF = {ValidationFailed: 400, Forbidden: 403, NotFound: 404, IllegalAction: 409, Conflict: 409}
TOKEN_FAILURES_VARIABLE = "ROUTING_TOKEN_FAILURES_PER_MINUTE"
TOKEN_FAILURES_DEFAULT = "10"
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


class TokenGuesses:
    """Failed token checks per client address, for the API and the console's sign-in: each
    address may fail ``per_minute`` times a minute (as a burst, then one more every
    60/``per_minute`` s); past that it is refused — with a correct token too, or a guesser would
    learn from the difference — until its bucket refills. Requests that never fail are never
    counted, so an agency's own use is unaffected. Given routing's database, the count is shared
    by every replica of routing (``shared.core.shared_budget``); without, it is per process."""

    def __init__(self, limiter: "Optional[TokenBucketLimiter | SharedTokenBucket]"):
        self.limiter = limiter

    @classmethod
    def from_env(cls, database=None) -> "TokenGuesses":
        return cls(shared_limiter_from_env(TOKEN_FAILURES_VARIABLE, TOKEN_FAILURES_DEFAULT, database))

    def _key(self, request) -> str:
        return f"token-guess:{client_address(request)}"

    def refusal(self, request) -> Optional[Decision]:
        """The refusal for an address that has failed too often, or None."""
        if self.limiter is None:
            return None
        decision = self.limiter.peek(self._key(request))
        return None if decision.allowed else decision

    def failed(self, request) -> None:
        if self.limiter is not None:
            self.limiter.take(self._key(request))
            log.warning("a wrong token was presented (%s)", request.path)


NO_GUESSES = TokenGuesses(None)
TOO_MANY_GUESSES = "too many wrong tokens from this address; try again later"


def _unauthorized(message: str):
    return json_response(401, {"error": message}, {"WWW-Authenticate": 'Bearer realm="ntbcare-routing"'})


def _authenticated(workflow, request, guesses: TokenGuesses):
    """The caller's agency code, or the refusal (429 for a guessing address, 401)."""
    refused = guesses.refusal(request)
    if refused is not None:
        return None, too_many_requests(refused, TOO_MANY_GUESSES)
    token = bearer_token(request)
    agency = workflow.authenticate(token)
    if agency is None:
        if token is not None:
            guesses.failed(request)
        return None, _unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")
    return agency, None


def unknown_complaint(complaint_key: Optional[str]) -> dict:
    """The body of a 404 for a complaint: the same words ``Workflow`` uses for an unknown one."""
    return {"error": f"no complaint {str(complaint_key or '').strip()!r} in routing"}


def _refusal(error: Exception, complaint_key: Optional[str]):
    if isinstance(error, NotVisible):   # not this caller's: indistinguishable from unknown
        return json_response(404, unknown_complaint(complaint_key))
    detail = error.args[0] if error.args else str(error)
    payload = {"error": detail} if isinstance(detail, str) else {"error": "invalid request", "fields": detail}
    return json_response(STATUS_OF[next(kind for kind in STATUS_OF if isinstance(error, kind))], payload)


def handle(workflow, request, action: Callable[[Caller, dict], Any],
           body_schema: Optional[type[Schema]] = None, *, complaint: Optional[str] = None,
           guesses: TokenGuesses = NO_GUESSES):
    """Authenticate, read the body, run ``action(caller, body)``, answer JSON. ``complaint``:
    the complaint the path names (for the 404 of one the caller may not see)."""
    agency, refused = _authenticated(workflow, request, guesses)
    if refused is not None:
        return refused
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
        except NotJson as error:
            return unsupported_media_type(error)
        except ValidationError as error:
            return json_response(400, {"error": "invalid request body", "fields": error.messages})
        except ValueError as error:
            return json_response(400, {"error": str(error)})
    try:
        return json_response(200, action(caller, body))
    except tuple(STATUS_OF) as error:
        return _refusal(error, complaint)


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


def handle_evidence(workflow, request, action: Callable[[Caller], Any], unavailable: type[Exception], *,
                    complaint: Optional[str] = None, guesses: TokenGuesses = NO_GUESSES):
    """Authenticate like ``handle``, then answer the evidence's bytes (or the refusal as JSON;
    ``unavailable``: intake did not hand them over → 503)."""
    agency, refused = _authenticated(workflow, request, guesses)
    if refused is not None:
        return refused
    try:
        opened = action(Caller(agency, agency))
    except tuple(STATUS_OF) as error:
        return _refusal(error, complaint)
    except unavailable as error:
        return json_response(503, {"error": str(error)}, {"Retry-After": "30"})
    return evidence_response(opened)
