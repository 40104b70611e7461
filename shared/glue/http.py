"""Small helpers for nameko ``@http`` entrypoints: JSON responses, size-limited JSON bodies that
must say they are JSON, and the client address per-address limits count."""
from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

from shared.core.ratelimit import trusted_proxies_from_env
from shared.core.text import check_unicode

MAX_BODY_BYTES = 256 * 1024


def json_response(status: int, body: Any, headers: dict | None = None) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False, default=str), status=status,
                        mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


class BodyTooLarge(ValueError):
    pass


class NotJson(ValueError):
    """The body is not declared as ``application/json``: answer 415 (``unsupported_media_type``)."""


def declares_json(request) -> bool:
    """``Content-Type: application/json`` (any parameters, e.g. ``; charset=utf-8``).

    Why it matters: a browser sends a cross-site POST without asking first (no CORS preflight)
    only with ``text/plain``, ``application/x-www-form-urlencoded`` or ``multipart/form-data``;
    refusing those on JSON endpoints means no other web page can make its visitors' browsers
    file complaints or act with them."""
    return (request.mimetype or "").lower() == "application/json"


def read_body(request, limit: int = MAX_BODY_BYTES) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(f"body over {limit} bytes")
    body = request.get_data(cache=True)
    if len(body) > limit:
        raise BodyTooLarge(f"body over {limit} bytes")
    return body


def read_json(request, limit: int = MAX_BODY_BYTES) -> Any:
    """The body as JSON; ``ValueError`` with a message fit for a 400 when it is not usable JSON
    (invalid, nested too deep, a number too long, or text no database can store); ``NotJson``
    when the request does not declare ``Content-Type: application/json``."""
    if not declares_json(request):
        raise NotJson("Content-Type must be application/json")
    body = read_body(request, limit)
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"body is not JSON: {error}") from None
    except (ValueError, RecursionError) as error:
        raise ValueError(f"body is not usable JSON: {str(error)[:200]}") from None
    check_unicode(value)
    return value


def too_many_requests(decision, message: str) -> Response:
    """429 for a client over its rate limit, saying when to come back."""
    return json_response(429, {"error": message, "retry_after_seconds": decision.retry_after_seconds},
                         {"Retry-After": str(decision.retry_after_seconds)})


def unsupported_media_type(error: NotJson) -> Response:
    return json_response(415, {"error": str(error)})


def client_address(request) -> str:
    """The address per-client limits count: the TCP peer, or the client a trusted proxy names
    in ``X-Forwarded-For`` (``NTBCARE_TRUSTED_PROXIES``, see ``shared.core.ratelimit.TrustedProxies``)."""
    return trusted_proxies_from_env().client_address(request.remote_addr,
                                                     request.headers.getlist("X-Forwarded-For"))
