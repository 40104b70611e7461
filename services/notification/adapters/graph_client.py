"""Graph API client for the notification service: Messenger sends, private replies and public
comment replies, against a configurable base URL (Meta's, or the local sandbox).

Errors come back as ``GraphApiError`` with Meta's code and subcode, the HTTP status, Meta's
``is_transient``, the rate-limit usage headers of the answer (``X-Business-Use-Case-Usage``,
``X-Page-Usage``, ``X-App-Usage``: when access returns) and a ``kind``. What each error means and
what the platform does about it is one table, ``domain.policy.ERROR_TABLE``; ``classify_error``
looks an answer up in it.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Mapping, Protocol
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, TimeoutError as Urllib3Timeout

from shared.core import graph_ids
from services.notification.domain.policy import (  # noqa: F401 - the kinds, for callers of this client
    ERROR_KINDS,
    INVALID_TOKEN,
    OUTSIDE_WINDOW,
    PERMANENT,
    PERMISSION,
    RATE_LIMITED,
    TEMPORARY,
    USAGE_HEADERS,
    error_rule,
)


def classify_error(http_status: int | None, code: int | None, subcode: int | None,
                   transient: bool | None = None) -> str:
    """What kind of failure a Graph answer is: the kind of its row in Meta's error table
    (``policy.ERROR_TABLE``). Specific codes win over the HTTP status, since Meta sends most
    errors, even transient ones, with a 4xx status."""
    return error_rule(http_status, code, subcode, transient).kind


def usage_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The rate-limit usage headers of an answer (lower-case names), and nothing else."""
    if not headers:
        return {}
    return {name.lower(): str(value) for name, value in headers.items() if name.lower() in USAGE_HEADERS}


class GraphApiError(Exception):
    """A failed Graph call. Carries codes and Meta's message only: never the token, never the
    message text, never the recipient."""

    def __init__(self, code: int | None, subcode: int | None, http_status: int | None,
                 message: str, kind: str, fbtrace_id: str | None = None, *,
                 transient: bool | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(f"Graph API error kind={kind} http={http_status} code={code} "
                         f"subcode={subcode}: {message}")
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        self.message = message
        self.kind = kind
        self.fbtrace_id = fbtrace_id
        self.transient = transient  # Meta's ``is_transient``, when the body had one
        # The answer's rate-limit usage headers (lower-case names): when access returns.
        self.headers: dict[str, str] = usage_headers(headers)

    @property
    def permanent(self) -> bool:
        return self.kind == PERMANENT


@dataclass(frozen=True)
class SendResult:
    message_id: str
    recipient_id: str | None


@dataclass(frozen=True)
class CommentResult:
    comment_id: str


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def graph_path(what: str, node: tuple[str, Any], edge: str) -> str:
    """``{node}/{edge}`` for a call, refusing a node id that is not shaped like a Meta id of its
    kind (``shared.core.graph_ids``): a crafted id (``../<page-id>/feed?x=``) would make the call
    reach another object — the Page's feed. The refusal is Meta's own answer to an invalid id
    (code 100, a permanent failure) and no request is made; the segment is percent-encoded all
    the same."""
    kind, value = node
    problem = graph_ids.problem(kind, value)
    if problem:
        raise GraphApiError(100, None, None, f"{what}: refused before calling Graph: {problem}",
                            PERMANENT)
    return f"{quote(str(value), safe='')}/{edge}"


class Transport(Protocol):
    """What the client sends through: ``request(method, url, body=, headers=, timeout=,
    retries=)`` answering an object with ``status``, ``data`` and ``headers`` — ``KeptAlive`` by
    default, urllib3's ``PoolManager`` or a test's fake alike."""

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...


#: Connections kept per host: the sender's green threads (8 by default) each hold one in a call.
POOL_SIZE = 16
# No retry of a POST: a second send of a message Meta may have taken is the caller's decision
# (the retry schedule), never the transport's. A pooled connection the server closed while idle
# is noticed before it is used, and replaced.
_NO_RETRIES = urllib3.Retry(total=0, read=False, redirect=False)


@dataclass(frozen=True)
class Answer:
    status: int
    data: bytes
    headers: Mapping[str, str]


class KeptAlive:
    """The Graph API's host over ``http.client`` with connections kept alive between calls (one per
    call in flight, up to ``POOL_SIZE`` kept idle) — what urllib3's pool does, without its
    per-call URL parsing and request preparation, which cost about half as much again as the
    call itself on the sender's path (``docs/performance.md``, eleventh round). As urllib3 does, a
    kept connection the server closed while it was idle is noticed before it is used (its socket
    is readable: the server's FIN) and replaced, so a POST is never sent twice by the transport;
    an answer that says ``Connection: close`` closes it. HTTPS verifies the server's certificate
    against the system's authorities (``ssl.create_default_context``)."""

    def __init__(self, base_url: str, pool_size: int = POOL_SIZE):
        parsed = urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.base = f"{parsed.scheme}://{parsed.netloc}"
        self._host, self._port, self._https = parsed.hostname, parsed.port, parsed.scheme == "https"
        self._context = ssl.create_default_context() if self._https else None
        self._idle: list[http.client.HTTPConnection] = []
        self.pool_size = pool_size

    def request(self, method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = None, retries: Any = None) -> Answer:
        if not url.startswith(self.base):
            raise ValueError("KeptAlive only calls its own host")
        path = url[len(self.base):] or "/"
        connection = self._take(timeout)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        elif len(self._idle) < self.pool_size:
            self._idle.append(connection)
        else:
            connection.close()
        return Answer(response.status, data, {name: value for name, value in response.getheaders()})

    def _take(self, timeout: float | None) -> http.client.HTTPConnection:
        while self._idle:
            connection = self._idle.pop()
            if connection.sock is not None and not _closed_by_peer(connection.sock):
                connection.timeout = timeout
                connection.sock.settimeout(timeout)
                return connection
            connection.close()
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def clear(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle kept-alive socket that is readable was closed by the server (or has data it should
    not have): not to be used again."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class GraphClient:
    """Synchronous client over kept-alive connections (``KeptAlive``; greened by eventlet inside
    the services). ``requests`` was the client first, then urllib3's pool manager: on the sender's
    hot path their per-call work — preparing the request, parsing the URL, merging proxy settings
    from the environment, cookies, hooks — cost more than the call itself."""

    def __init__(self, base_url: str, version: str = "v23.0", timeout: float = 10.0,
                 http: Transport | None = None):
        self.base_url = base_url.rstrip("/")
        self.version = version.strip("/")
        self.timeout = timeout
        self._pool = None if http is not None else KeptAlive(self.base_url)
        self._http: Transport = http or self._pool  # type: ignore[assignment]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()

    def send_message(self, page_id: str, access_token: str, recipient: Mapping[str, Any],
                     text: str, messaging_type: str = "RESPONSE",
                     tag: str | None = None, quick_replies: list | None = None) -> SendResult:
        """Send API: ``recipient`` is ``{"id": psid}`` or, for a private reply,
        ``{"comment_id": ...}``; ``quick_replies``: Messenger's buttons under the text."""
        body: dict[str, Any] = {
            "recipient": dict(recipient),
            "messaging_type": messaging_type,
            "message": {"text": text},
        }
        if quick_replies:
            body["message"]["quick_replies"] = [dict(reply) for reply in quick_replies]
        if tag is not None:
            body["tag"] = tag
        kind = "private_reply" if "comment_id" in recipient else "messenger"
        data = self._post(graph_path(kind, ("page_id", page_id), "messages"), access_token, body,
                          secrets=(text,), what=kind)
        message_id = data.get("message_id")
        if not message_id:
            raise GraphApiError(None, None, 200, f"{kind}: answer without message_id",
                                TEMPORARY)
        recipient_id = data.get("recipient_id")
        return SendResult(str(message_id), str(recipient_id) if recipient_id else None)

    def reply_to_comment(self, comment_id: str, access_token: str, text: str) -> CommentResult:
        """Public reply under a comment."""
        data = self._post(graph_path("comment_reply", ("comment_id", comment_id), "comments"), access_token,
                          {"message": text}, secrets=(text,), what="comment_reply")
        new_id = data.get("id")
        if not new_id:
            raise GraphApiError(None, None, 200, "comment_reply: answer without id", TEMPORARY)
        return CommentResult(str(new_id))

    def _post(self, path: str, token: str, body: dict, *, secrets: tuple[str, ...],
              what: str) -> dict:
        url = f"{self.base_url}/{self.version}/{path}"
        # The token rides in a header so that it never shows up in URLs, proxies' and
        # servers' access logs, or the string of an HTTP library's exception.
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            resp = self._http.request("POST", url, body=json.dumps(body).encode(), headers=headers,
                                      timeout=self.timeout, retries=_NO_RETRIES)
        except (Urllib3Timeout, TimeoutError):
            raise GraphApiError(None, None, None, f"{what}: no answer within {self.timeout}s",
                                TEMPORARY) from None
        except (HTTPError, OSError, http.client.HTTPException) as exc:
            # ``from None``: the chained exception would carry the URL, which names the comment.
            raise GraphApiError(None, None, None,
                                f"{what}: request failed ({type(exc).__name__})",
                                TEMPORARY) from None

        ok = 200 <= resp.status < 400
        try:
            data = json.loads(resp.data)
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if ok and isinstance(data, dict) and not error:
            return data
        transient = None
        if isinstance(error, dict):
            code = _as_int(error.get("code"))
            subcode = _as_int(error.get("error_subcode"))
            message = _scrub(str(error.get("message") or ""), (token, *secrets))
            fbtrace = error.get("fbtrace_id")
            if isinstance(error.get("is_transient"), bool):
                transient = error["is_transient"]
        else:
            code = subcode = None
            fbtrace = None
            message = ("answer was not JSON" if ok
                       else f"HTTP {resp.status} without a Graph error body")
        # A 2xx we cannot read is a row of the table too: the call may or may not have happened.
        kind = classify_error(resp.status, code, subcode, transient)
        raise GraphApiError(code, subcode, resp.status, f"{what}: {message}", kind,
                            str(fbtrace) if fbtrace else None, transient=transient,
                            headers=resp.headers)


def _scrub(message: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in message:
            message = message.replace(secret, "[redacted]")
    return message[:500]
