"""Graph API client for the notification service: Messenger sends, private replies and public
comment replies, against a configurable base URL (Meta's, or the local sandbox).

Errors come back as ``GraphApiError`` with a ``kind`` saying what the caller should do (retry,
slow down, change strategy, give up, hold the Page); ``classify_error`` is the pure rule, so
the notification domain can apply it to recorded failures too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import requests

TEMPORARY = "temporary"
RATE_LIMITED = "rate_limited"
OUTSIDE_WINDOW = "outside_window"
PERMANENT = "permanent"
INVALID_TOKEN = "invalid_token"
ERROR_KINDS = (TEMPORARY, RATE_LIMITED, OUTSIDE_WINDOW, PERMANENT, INVALID_TOKEN)

# Meta's throttling codes: 4 app, 17 user, 32 Page, 613 API-specific, 80001-80009 Business
# Use Case limits; subcode 2018022 is the Send API's own limit whatever code carries it.
_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613} | set(range(80001, 80010)))
_RATE_LIMIT_SUBCODES = frozenset({2018022})
# 1 ("unknown error") and 2 ("unexpected error, retry later") are documented as transient.
_TEMPORARY_CODES = frozenset({1, 2, 1200})
_WINDOW_CODES = frozenset({10, 10900})
_WINDOW_SUBCODES = frozenset({2018278})


def classify_error(http_status: int | None, code: int | None, subcode: int | None) -> str:
    """What kind of failure a Graph answer is. Specific codes win over the HTTP status, since
    Meta sends most errors, even transient ones, with a 4xx status."""
    if code == 190:
        return INVALID_TOKEN
    if code in _RATE_LIMIT_CODES or subcode in _RATE_LIMIT_SUBCODES:
        return RATE_LIMITED
    if code in _WINDOW_CODES or subcode in _WINDOW_SUBCODES:
        return OUTSIDE_WINDOW
    if code in _TEMPORARY_CODES:
        return TEMPORARY
    if http_status is None or http_status >= 500:
        return TEMPORARY  # no answer at all (timeout, connection) or a server-side failure
    if http_status == 429:
        return RATE_LIMITED
    return PERMANENT


class GraphApiError(Exception):
    """A failed Graph call. Carries codes and Meta's message only: never the token, never the
    message text, never the recipient."""

    def __init__(self, code: int | None, subcode: int | None, http_status: int | None,
                 message: str, kind: str, fbtrace_id: str | None = None):
        super().__init__(f"Graph API error kind={kind} http={http_status} code={code} "
                         f"subcode={subcode}: {message}")
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        self.message = message
        self.kind = kind
        self.fbtrace_id = fbtrace_id

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


class GraphClient:
    """Synchronous client (``requests``; greened by eventlet inside the services)."""

    def __init__(self, base_url: str, version: str = "v23.0", timeout: float = 10.0,
                 session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.version = version.strip("/")
        self.timeout = timeout
        self._session = session or requests.Session()
        self._owns_session = session is None

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def send_message(self, page_id: str, access_token: str, recipient: Mapping[str, Any],
                     text: str, messaging_type: str = "RESPONSE",
                     tag: str | None = None) -> SendResult:
        """Send API: ``recipient`` is ``{"id": psid}`` or, for a private reply,
        ``{"comment_id": ...}``."""
        body: dict[str, Any] = {
            "recipient": dict(recipient),
            "messaging_type": messaging_type,
            "message": {"text": text},
        }
        if tag is not None:
            body["tag"] = tag
        kind = "private_reply" if "comment_id" in recipient else "messenger"
        data = self._post(f"{page_id}/messages", access_token, body, secrets=(text,), what=kind)
        message_id = data.get("message_id")
        if not message_id:
            raise GraphApiError(None, None, 200, f"{kind}: answer without message_id",
                                TEMPORARY)
        recipient_id = data.get("recipient_id")
        return SendResult(str(message_id), str(recipient_id) if recipient_id else None)

    def reply_to_comment(self, comment_id: str, access_token: str, text: str) -> CommentResult:
        """Public reply under a comment."""
        data = self._post(f"{comment_id}/comments", access_token, {"message": text},
                          secrets=(text,), what="comment_reply")
        new_id = data.get("id")
        if not new_id:
            raise GraphApiError(None, None, 200, "comment_reply: answer without id", TEMPORARY)
        return CommentResult(str(new_id))

    def _post(self, path: str, token: str, body: dict, *, secrets: tuple[str, ...],
              what: str) -> dict:
        url = f"{self.base_url}/{self.version}/{path}"
        # The token rides in a header so that it never shows up in URLs, proxies' and
        # servers' access logs, or the string of a requests exception.
        headers = {"Authorization": f"Bearer {token}"}
        try:
            resp = self._session.post(url, json=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise GraphApiError(None, None, None, f"{what}: no answer within {self.timeout}s",
                                TEMPORARY) from None
        except requests.RequestException as exc:
            # ``from None``: the chained exception would carry the URL, which names the comment.
            raise GraphApiError(None, None, None,
                                f"{what}: request failed ({type(exc).__name__})",
                                TEMPORARY) from None

        try:
            data = resp.json()
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if resp.ok and isinstance(data, dict) and not error:
            return data
        if isinstance(error, dict):
            code = _as_int(error.get("code"))
            subcode = _as_int(error.get("error_subcode"))
            message = _scrub(str(error.get("message") or ""), (token, *secrets))
            fbtrace = error.get("fbtrace_id")
        else:
            code = subcode = None
            fbtrace = None
            message = ("answer was not JSON" if resp.ok
                       else f"HTTP {resp.status_code} without a Graph error body")
        kind = classify_error(resp.status_code, code, subcode)
        if resp.ok and error is None:
            kind = TEMPORARY  # a 2xx we cannot read: the call may or may not have happened
        raise GraphApiError(code, subcode, resp.status_code, f"{what}: {message}", kind,
                            str(fbtrace) if fbtrace else None)


def _scrub(message: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in message:
            message = message.replace(secret, "[redacted]")
    return message[:500]
