"""Small helpers for nameko ``@http`` entrypoints: JSON responses and size-limited JSON bodies."""
from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

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
    body = read_body(request, limit)
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"body is not JSON: {error}") from None
