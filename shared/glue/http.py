"""Small helpers for nameko ``@http`` entrypoints: JSON responses and size-limited JSON bodies."""
from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

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
    (invalid, nested too deep, a number too long, or text no database can store)."""
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
