"""Local Graph API sandbox: a real HTTP server that follows Meta's documented contract for the
Send API (Messenger messages, private replies) and public comment replies.

Facebook cannot be reached from the development machines, so tests and the default local run
point the notification service here. The sandbox validates requests the way Meta does, enforces
the messaging windows when told about a conversation, records every call it receives and can
inject each documented error (see design.md, "Facebook (Meta Graph API) facts").

Control API (JSON, under ``/_sandbox``): ``health``, ``pages``, ``revoke``, ``restore``,
``conversations``, ``comments``, ``clock``, ``faults``, ``calls``, ``reset``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

log = logging.getLogger("ntbcare.sandbox.graph")

MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
ALLOWED_TAGS = (
    "HUMAN_AGENT",
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "ACCOUNT_UPDATE",
    "CUSTOMER_FEEDBACK",
)
KINDS = ("messenger", "private_reply", "comment_reply")
MAX_TEXT = 2000  # Meta: message text "under 2,000 characters"
MAX_COMMENT = 8000
STANDARD_WINDOW = timedelta(hours=24)
EXTENDED_WINDOW = timedelta(days=7)
# Tags Meta only honours within 7 days of the citizen's last message.
SEVEN_DAY_TAGS = ("HUMAN_AGENT", "CUSTOMER_FEEDBACK")
MAX_CALLS = 200_000

_VERSION_RE = re.compile(r"^v\d+(\.\d+)?$")
_WINDOW_MSG = (
    "(#10) This message is sent outside of allowed window. Learn more about the new policy "
    "here: https://developers.facebook.com/docs/messenger-platform/policy-overview"
)

# (code, subcode) -> (message, type, is_transient). Lookup falls back to (code, None).
ERROR_CATALOGUE: dict[tuple[int, int | None], tuple[str, str, bool]] = {
    (1, None): ("An unknown error has occurred.", "OAuthException", True),
    (2, None): ("An unexpected error has occurred. Please retry your request later.",
                "OAuthException", True),
    (2, 2018344): ("Service temporarily unavailable", "OAuthException", True),
    (4, None): ("(#4) Application request limit reached", "OAuthException", True),
    (4, 2018022): ("(#4) Too many send requests to phone numbers", "OAuthException", True),
    (100, 2018022): ("(#100) Too many send requests to phone numbers", "OAuthException", True),
    (10, None): ("(#10) Application does not have permission for this action",
                 "OAuthException", False),
    (10, 2018278): (_WINDOW_MSG, "OAuthException", False),
    (100, None): ("(#100) Invalid parameter", "OAuthException", False),
    (100, 2018001): ("(#100) No matching user found", "OAuthException", False),
    (190, None): ("Invalid OAuth access token.", "OAuthException", False),
    (551, None): ("(#551) This person isn't available right now.", "OAuthException", False),
    (551, 1545041): ("(#551) This person isn't available right now.", "OAuthException", False),
    (613, None): ("(#613) Calls to this api have exceeded the rate limit.",
                  "OAuthException", True),
    (1200, None): ("(#1200) Temporary send message failure. Please try again later",
                   "OAuthException", True),
    (10900, None): ("(#10900) Activity already replied to", "OAuthException", False),
}

_HTML_5XX = (
    "<!DOCTYPE html><html><head><title>Facebook | Error</title></head>"
    "<body><h1>Sorry, something went wrong.</h1><p>We're working on it.</p></body></html>"
)


class GraphError(Exception):
    """An error answer in Meta's shape; raised inside request handling only."""

    def __init__(self, code: int, subcode: int | None = None, message: str | None = None,
                 http_status: int = 400, error_type: str | None = None):
        super().__init__(code)
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        cat = ERROR_CATALOGUE.get((code, subcode)) or ERROR_CATALOGUE.get((code, None))
        self.message = message or (cat[0] if cat else f"(#{code}) An error occurred")
        self.error_type = error_type or (cat[1] if cat else "OAuthException")
        self.transient = cat[2] if cat else False

    def body(self) -> dict:
        err: dict[str, Any] = {"message": self.message, "type": self.error_type,
                               "code": self.code}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        if self.transient:
            err["is_transient"] = True
        err["fbtrace_id"] = _fbtrace_id()
        return {"error": err}


def _fbtrace_id() -> str:
    return secrets.token_urlsafe(8)[:11]


def _bad_request(message: str, subcode: int | None = None) -> GraphError:
    return GraphError(100, subcode, f"(#100) {message}")


def parse_time(value: Any) -> datetime:
    """ISO 8601 (naive means UTC) or a Unix timestamp in seconds or, like Meta's webhook
    ``timestamp``, milliseconds."""
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if isinstance(value, str) and value.strip():
        s = value.strip()
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        # Meta's created_time looks like 2024-01-02T03:04:05+0000
        s = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", s)
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc)
    raise ValueError("not a time")


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def commenter_psid(comment_id: str) -> str:
    """The PSID Meta would return for a private reply to an unregistered comment; stable so
    that tests can predict it."""
    digest = int(hashlib.sha256(f"psid:{comment_id}".encode()).hexdigest(), 16)
    return "7" + str(digest)[:15]


@dataclass
class Fault:
    id: int
    code: int | None
    subcode: int | None
    http_status: int
    times: int | None
    rate: float | None
    page_id: str | None
    kind: str | None
    delay_seconds: float
    message: str | None
    body: str  # "json" | "html" | "empty"
    rng: random.Random = field(repr=False)

    def describe(self) -> dict:
        return {"id": self.id, "code": self.code, "subcode": self.subcode,
                "http_status": self.http_status, "times": self.times, "rate": self.rate,
                "page_id": self.page_id, "kind": self.kind,
                "delay_seconds": self.delay_seconds, "body": self.body}


def _opt_int(data: Mapping, key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{key} must be an integer")
    return int(value)


class SandboxState:
    """Everything the sandbox knows; one lock guards it all because handlers run in threads."""

    def __init__(self, *, record_file: str | None = None, max_calls: int = MAX_CALLS):
        self.lock = threading.Lock()
        self.record_file = record_file
        self.pages: dict[str, dict] = {}
        self.calls: deque[dict] = deque(maxlen=max_calls)
        # seq survives reset so that a poller using since_seq never re-reads or misses calls.
        self._seq = 0
        self._fault_ids = 0
        self.faults: list[Fault] = []
        self.conversations: dict[tuple[str | None, str], datetime] = {}
        self.comments: dict[str, dict] = {}
        self.replied_comments: set[str] = set()
        self.clock: datetime | None = None

    # -- control ---------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock or datetime.now(timezone.utc)

    def register_page(self, page_id: str, token: str) -> None:
        if not page_id or not token:
            raise ValueError("page_id and token are required")
        with self.lock:
            self.pages[str(page_id)] = {"token": str(token), "revoked": False}

    def set_revoked(self, page_id: str, revoked: bool) -> None:
        with self.lock:
            page = self.pages.get(str(page_id))
            if page is None:
                raise KeyError(page_id)
            page["revoked"] = revoked

    def list_pages(self) -> list[dict]:
        with self.lock:
            return [{"page_id": pid, "revoked": p["revoked"]} for pid, p in self.pages.items()]

    def register_conversation(self, page_id: str | None, psid: str, last_message_at: Any) -> None:
        if not psid:
            raise ValueError("psid is required")
        at = parse_time(last_message_at)
        with self.lock:
            self.conversations[(str(page_id) if page_id else None, str(psid))] = at

    def register_comment(self, comment_id: str, created_time: Any = None, psid: str | None = None,
                         page_id: str | None = None) -> None:
        if not comment_id:
            raise ValueError("comment_id is required")
        created = parse_time(created_time) if created_time is not None else None
        with self.lock:
            self.comments[str(comment_id)] = {
                "created_time": created,
                "psid": str(psid) if psid else None,
                "page_id": str(page_id) if page_id else None,
            }

    def set_clock(self, now: Any) -> None:
        value = parse_time(now) if now is not None else None
        with self.lock:
            self.clock = value

    def add_fault(self, spec: Mapping) -> Fault:
        code = _opt_int(spec, "code")
        subcode = _opt_int(spec, "subcode")
        http_status = _opt_int(spec, "http_status")
        if http_status is None:
            http_status = 400 if code is not None else 200
        if not 200 <= http_status <= 599:
            raise ValueError("http_status must be an HTTP status")
        if code is None and 200 < http_status < 500:
            raise ValueError("a 4xx fault needs a code")
        times = _opt_int(spec, "times")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1")
        rate = spec.get("rate")
        if rate is not None:
            rate = float(rate)
            if not 0.0 <= rate <= 1.0:
                raise ValueError("rate must be within 0..1")
        kind = spec.get("kind")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        delay = float(spec.get("delay_seconds") or 0.0)
        if delay < 0:
            raise ValueError("delay_seconds must be >= 0")
        body = spec.get("body") or ("json" if code is not None else "html")
        if body not in ("json", "html", "empty"):
            raise ValueError("body must be json, html or empty")
        seed = spec.get("seed", 20201130)
        with self.lock:
            self._fault_ids += 1
            fault = Fault(
                id=self._fault_ids, code=code, subcode=subcode, http_status=http_status,
                times=times, rate=rate,
                page_id=str(spec["page_id"]) if spec.get("page_id") is not None else None,
                kind=kind, delay_seconds=delay, message=spec.get("message"), body=body,
                rng=random.Random(f"{seed}:{self._fault_ids}"),
            )
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def list_faults(self) -> list[dict]:
        with self.lock:
            return [f.describe() for f in self.faults]

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.faults.clear()
            self.conversations.clear()
            self.comments.clear()
            self.replied_comments.clear()
            self.clock = None

    def get_calls(self, page_id: str | None = None, kind: str | None = None,
                  status: int | None = None, since_seq: int | None = None) -> list[dict]:
        with self.lock:
            calls = list(self.calls)
        return [
            c for c in calls
            if (page_id is None or c["page_id"] == page_id)
            and (kind is None or c["kind"] == kind)
            and (status is None or c["status"] == status)
            and (since_seq is None or c["seq"] > since_seq)
        ]

    # -- graph-side helpers (callers hold no lock) -----------------------------------------

    def take_fault(self, page_id: str | None, kind: str) -> Fault | None:
        """The first active fault that fires for this call; consumes one of its ``times``."""
        with self.lock:
            for fault in list(self.faults):
                if fault.page_id is not None and fault.page_id != page_id:
                    continue
                if fault.kind is not None and fault.kind != kind:
                    continue
                if fault.rate is not None and fault.rng.random() >= fault.rate:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def check_page_token(self, node: str, token: str | None) -> tuple[bool, str | None]:
        """Whether ``token`` may act for the Page named in the path (``me`` = the token's
        Page); returns the Page id it resolved to."""
        with self.lock:
            if node == "me":
                if not self.pages:
                    return bool(token), None
                for pid, page in self.pages.items():
                    if token and page["token"] == token:
                        return not page["revoked"], pid
                return False, None
            if not self.pages:
                return bool(token), node
            page = self.pages.get(node)
            ok = bool(token) and page is not None and not page["revoked"] \
                and page["token"] == token
            return ok, node

    def check_comment_token(self, comment_id: str, token: str | None) -> tuple[bool, str | None]:
        with self.lock:
            owner = (self.comments.get(comment_id) or {}).get("page_id")
            if not self.pages:
                return bool(token), owner
            for pid, page in self.pages.items():
                if token and page["token"] == token:
                    ok = not page["revoked"] and (owner is None or owner == pid)
                    return ok, pid
            return False, owner

    def record(self, entry: dict) -> dict:
        with self.lock:
            self._seq += 1
            entry = {"seq": self._seq, **entry}
            self.calls.append(entry)
            if self.record_file:
                # Appended under the lock so that lines from concurrent calls never interleave.
                with open(self.record_file, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return entry


def _json_param(value: Any, name: str) -> Any:
    """Meta accepts structured params either as objects (JSON body) or as JSON-encoded
    strings (form or query)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad_request(f"param {name} must be a JSON object") from None
    return value


class GraphSandboxApp:
    """The WSGI application."""

    def __init__(self, state: SandboxState):
        self.state = state

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith("/_sandbox"):
            response = self._control(request)
        else:
            response = self._graph(request)
        return response(environ, start_response)

    # -- Graph endpoints -------------------------------------------------------------------

    def _params(self, request: Request) -> dict:
        params: dict[str, Any] = dict(request.args.items())
        raw = request.get_data(cache=True)
        ctype = request.mimetype or ""
        if ctype == "application/json" or (not ctype and raw[:1] in (b"{", b"[")):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise _bad_request("Invalid JSON in request body") from None
            if not isinstance(body, dict):
                raise _bad_request("Request body must be a JSON object")
            params.update(body)
        else:
            params.update(request.form.items())
        return params

    @staticmethod
    def _token(request: Request, params: Mapping) -> str | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value.strip():
            return value.strip()
        token = params.get("access_token")
        return str(token) if token else None

    def _graph(self, request: Request) -> Response:
        state = self.state
        parts = [p for p in request.path.split("/") if p]
        if parts and _VERSION_RE.match(parts[0]):
            parts = parts[1:]
        entry: dict[str, Any] = {
            "at": _iso(state.now()), "method": request.method, "path": request.path,
            "page_id": None, "kind": "unknown", "recipient": None, "comment_id": None,
            "messaging_type": None, "tag": None, "text": None, "token_ok": False,
        }
        status, body, raw, ctype = 400, None, None, "application/json"
        try:
            try:
                params = self._params(request)
            except GraphError:
                params = None
            token = self._token(request, params or {})
            is_post = request.method == "POST"
            if is_post and len(parts) == 2 and parts[1] == "messages":
                body = self._messages(parts[0], params, token, entry)
                status = 200
            elif is_post and len(parts) == 2 and parts[1] == "comments":
                body = self._comment_reply(parts[0], params, token, entry)
                status = 200
            else:
                entry["token_ok"] = bool(token)
                target = parts[0] if parts else ""
                raise GraphError(
                    100, 33,
                    f"Unsupported {request.method.lower()} request. Object with ID '{target}' "
                    "does not exist, cannot be loaded due to missing permissions, or does not "
                    "support this operation.",
                    error_type="GraphMethodException")
        except _FaultAnswer as fa:
            status, body, raw, ctype = fa.status, fa.body, fa.raw, fa.ctype
        except GraphError as err:
            status, body = err.http_status, err.body()
        entry["status"] = status
        entry["response"] = body
        recorded = state.record(entry)
        error = (body or {}).get("error") if isinstance(body, dict) else None
        # Ids (PSID, comment id) and texts are personal data: the log line names neither.
        log.info("seq=%s %s %s kind=%s page=%s status=%s code=%s", recorded["seq"],
                 request.method, _path_template(parts), entry["kind"], entry["page_id"],
                 status, error.get("code") if error else "-")
        if raw is not None:
            return Response(raw, status=status, content_type=ctype)
        return Response(json.dumps(body), status=status, content_type="application/json")

    def _apply_fault(self, page_id: str | None, kind: str) -> None:
        fault = self.state.take_fault(page_id, kind)
        if fault is None:
            return
        if fault.delay_seconds:
            time.sleep(fault.delay_seconds)
        if fault.code is None and fault.http_status < 300:
            return  # a delay-only fault: the call then proceeds normally
        if fault.body == "json" and fault.code is not None:
            err = GraphError(fault.code, fault.subcode, fault.message, fault.http_status)
            raise _FaultAnswer(fault.http_status, err.body(), None, "application/json")
        if fault.body == "html":
            raise _FaultAnswer(fault.http_status, None, _HTML_5XX, "text/html; charset=utf-8")
        raise _FaultAnswer(fault.http_status, None, "", "text/plain")

    def _messages(self, node: str, params: dict | None, token: str | None, entry: dict) -> dict:
        state = self.state
        token_ok, page_id = state.check_page_token(node, token)
        entry["token_ok"] = token_ok
        entry["page_id"] = page_id
        entry["kind"] = "messenger"
        recipient = None
        if params is not None:
            try:
                recipient = _json_param(params.get("recipient"), "recipient")
            except GraphError:
                recipient = None
            if isinstance(recipient, dict):
                entry["recipient"] = recipient
                if recipient.get("comment_id") is not None:
                    entry["kind"] = "private_reply"
                    entry["comment_id"] = str(recipient["comment_id"])
            entry["messaging_type"] = params.get("messaging_type")
            entry["tag"] = params.get("tag")
            try:
                message = _json_param(params.get("message"), "message")
            except GraphError:
                message = None
            if isinstance(message, dict) and isinstance(message.get("text"), str):
                entry["text"] = message["text"]

        # Meta throttles and fails before it looks at the payload.
        self._apply_fault(page_id, entry["kind"])
        if not token_ok:
            raise GraphError(190)
        if params is None:
            raise _bad_request("Invalid JSON in request body")

        recipient = _json_param(params.get("recipient"), "recipient")
        if not isinstance(recipient, dict) or not recipient:
            raise _bad_request("The parameter recipient is required")
        keys = [k for k in ("id", "comment_id") if recipient.get(k) not in (None, "")]
        others = set(recipient) - {"id", "comment_id"}
        if others:
            raise _bad_request(f"param recipient has unsupported field(s): {sorted(others)}")
        if len(keys) != 1:
            raise _bad_request("Exactly one of recipient[id] or recipient[comment_id] "
                               "must be specified")
        for k in keys:
            if not isinstance(recipient[k], (str, int)) or isinstance(recipient[k], bool):
                raise _bad_request(f"param recipient[{k}] must be a string")
        private = keys[0] == "comment_id"

        mtype = params.get("messaging_type")
        if mtype is None and private:
            mtype = "RESPONSE"  # Meta's private-reply examples omit it
        if mtype is None:
            raise _bad_request("The parameter messaging_type is required")
        if mtype not in MESSAGING_TYPES:
            raise _bad_request("Param messaging_type must be one of {RESPONSE, UPDATE, "
                               "MESSAGE_TAG} - got \"" + str(mtype)[:40] + "\"")
        tag = params.get("tag")
        if mtype == "MESSAGE_TAG":
            if not tag:
                raise _bad_request("Tag is required for MESSAGE_TAG messaging type")
            if tag not in ALLOWED_TAGS:
                raise _bad_request("Param tag must be one of {" + ", ".join(ALLOWED_TAGS)
                                   + "} - got \"" + str(tag)[:40] + "\"")

        message = _json_param(params.get("message"), "message")
        if not isinstance(message, dict):
            raise _bad_request("The parameter message is required")
        if "attachment" in message:
            if "text" in message:
                raise _bad_request("Only one of text or attachment may be specified in "
                                   "param message")
            att = message["attachment"]
            if not isinstance(att, dict) or not att.get("type") \
                    or not isinstance(att.get("payload"), dict):
                raise _bad_request("param message[attachment] must have type and payload")
        else:
            text = message.get("text")
            if not isinstance(text, str) or not text.strip():
                raise _bad_request("param message must have non-empty text or an attachment")
            if len(text) >= MAX_TEXT:
                raise _bad_request(f"Length of param message[text] must be less than "
                                   f"{MAX_TEXT} characters")

        now = state.now()
        if private:
            comment_id = str(recipient["comment_id"])
            with state.lock:
                if comment_id in state.replied_comments:
                    raise GraphError(10900)
                info = state.comments.get(comment_id) or {}
                created = info.get("created_time")
                if created is not None and now - created > EXTENDED_WINDOW:
                    raise GraphError(10, 2018278)
                # Marked inside the same critical section so that two racing replies cannot
                # both succeed.
                state.replied_comments.add(comment_id)
                psid = info.get("psid") or commenter_psid(comment_id)
        else:
            psid = str(recipient["id"])
            with state.lock:
                last = state.conversations.get((page_id, psid))
            if last is not None:
                if mtype in ("RESPONSE", "UPDATE") and now - last > STANDARD_WINDOW:
                    raise GraphError(10, 2018278)
                if mtype == "MESSAGE_TAG" and tag in SEVEN_DAY_TAGS \
                        and now - last > EXTENDED_WINDOW:
                    raise GraphError(10, 2018278)
        return {"recipient_id": psid, "message_id": "m_" + secrets.token_urlsafe(24)}

    def _comment_reply(self, comment_id: str, params: dict | None, token: str | None,
                       entry: dict) -> dict:
        state = self.state
        token_ok, page_id = state.check_comment_token(comment_id, token)
        entry.update(token_ok=token_ok, page_id=page_id, kind="comment_reply",
                     comment_id=comment_id)
        if params is not None and isinstance(params.get("message"), str):
            entry["text"] = params["message"]
        self._apply_fault(page_id, "comment_reply")
        if not token_ok:
            raise GraphError(190)
        if params is None:
            raise _bad_request("Invalid JSON in request body")
        text = params.get("message")
        has_attachment = bool(params.get("attachment_url") or params.get("attachment_id"))
        if (not isinstance(text, str) or not text.strip()) and not has_attachment:
            raise _bad_request("Missing message or attachment")
        if isinstance(text, str) and len(text) > MAX_COMMENT:
            raise _bad_request(f"Length of param message must be at most {MAX_COMMENT} "
                               "characters")
        return {"id": f"{comment_id}_{secrets.randbelow(10**15):015d}"}

    # -- control API -----------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        state = self.state
        route = request.path[len("/_sandbox"):].strip("/")
        method = request.method
        try:
            data: dict = {}
            if method in ("POST", "PUT"):
                raw = request.get_data()
                if raw.strip():
                    data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError("body must be a JSON object")
            if route == "health" and method == "GET":
                return _json({"status": "ok"})
            if route == "pages" and method == "POST":
                state.register_page(str(data.get("page_id") or ""), str(data.get("token") or ""))
                return _json({"ok": True})
            if route == "pages" and method == "GET":
                return _json({"pages": state.list_pages()})
            if route in ("revoke", "restore") and method == "POST":
                state.set_revoked(str(data.get("page_id")), route == "revoke")
                return _json({"ok": True})
            if route == "conversations" and method == "POST":
                state.register_conversation(data.get("page_id"), data.get("psid"),
                                            data.get("last_message_at"))
                return _json({"ok": True})
            if route == "comments" and method == "POST":
                state.register_comment(data.get("comment_id"), data.get("created_time"),
                                       data.get("psid"), data.get("page_id"))
                return _json({"ok": True})
            if route == "clock" and method == "POST":
                state.set_clock(data.get("now"))
                return _json({"now": _iso(state.now()), "overridden": state.clock is not None})
            if route == "clock" and method == "GET":
                return _json({"now": _iso(state.now()), "overridden": state.clock is not None})
            if route == "faults" and method == "POST":
                return _json({"fault": state.add_fault(data).describe()})
            if route == "faults" and method == "GET":
                return _json({"faults": state.list_faults()})
            if route == "faults" and method == "DELETE":
                state.clear_faults()
                return _json({"ok": True})
            if route == "calls" and method == "GET":
                args = request.args
                calls = state.get_calls(
                    page_id=args.get("page_id"), kind=args.get("kind"),
                    status=int(args["status"]) if args.get("status") else None,
                    since_seq=int(args["since_seq"]) if args.get("since_seq") else None)
                return _json({"calls": calls})
            if route == "reset" and method == "POST":
                state.reset()
                return _json({"ok": True})
            return _json({"error": f"no such control endpoint: {method} /_sandbox/{route}"}, 404)
        except KeyError as exc:
            return _json({"error": f"unknown: {exc.args[0]}"}, 404)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)


class _FaultAnswer(Exception):
    def __init__(self, status: int, body: dict | None, raw: str | None, ctype: str):
        super().__init__(status)
        self.status, self.body, self.raw, self.ctype = status, body, raw, ctype


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _path_template(parts: list[str]) -> str:
    if len(parts) == 2 and parts[1] == "messages":
        return "/{page}/messages" if parts[0] != "me" else "/me/messages"
    if len(parts) == 2 and parts[1] == "comments":
        return "/{comment}/comments"
    return "/{unsupported}"


class _QuietHandler(WSGIRequestHandler):
    # werkzeug's access log prints the full URL, and a client may put access_token in the
    # query string; the app logs its own token- and text-free line instead.
    def log_request(self, code="-", size="-"):
        pass


def pages_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """``FACEBOOK_PAGES=page_id:token,page_id:token`` or ``FACEBOOK_PAGE_ID`` +
    ``FACEBOOK_PAGE_ACCESS_TOKEN``."""
    pages: dict[str, str] = {}
    for item in (env.get("FACEBOOK_PAGES") or "").split(","):
        page_id, sep, token = item.strip().partition(":")
        if sep and page_id.strip() and token.strip():
            pages[page_id.strip()] = token.strip()
    single_id = (env.get("FACEBOOK_PAGE_ID") or "").strip()
    single_token = (env.get("FACEBOOK_PAGE_ACCESS_TOKEN") or "").strip()
    if single_id and single_token:
        pages.setdefault(single_id, single_token)
    return pages


def create_app(pages: Mapping[str, str] | None = None, record_file: str | None = None,
               env: Mapping[str, str] | None = None) -> GraphSandboxApp:
    """A WSGI app; ``env`` (default ``os.environ``) supplies preloaded Pages and
    ``GRAPH_SANDBOX_RECORD_FILE``; explicit arguments win."""
    env = os.environ if env is None else env
    state = SandboxState(record_file=record_file or env.get("GRAPH_SANDBOX_RECORD_FILE") or None)
    all_pages = {**pages_from_env(env), **(pages or {})}
    for page_id, token in all_pages.items():
        state.register_page(page_id, token)
    return GraphSandboxApp(state)


class SandboxServer:
    """A running sandbox: ``url``, ``state`` (for in-process inspection) and ``stop()``."""

    def __init__(self, app: GraphSandboxApp, host: str, port: int):
        self.app = app
        self.state = app.state
        self._server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self.host = host
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"graph-sandbox-{self.port}", daemon=True)

    def start(self) -> "SandboxServer":
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread (``python -m sandbox``) until ``shutdown()``."""
        try:
            self._server.serve_forever(poll_interval=0.5)
        finally:
            self._server.server_close()

    def shutdown(self) -> None:
        """Ask a ``serve_forever()`` loop to end; call it from another thread."""
        self._server.shutdown()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> "SandboxServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_sandbox(host: str = "127.0.0.1", port: int = 0, *,
                  pages: Mapping[str, str] | None = None, record_file: str | None = None,
                  env: Mapping[str, str] | None = None) -> SandboxServer:
    """Start the sandbox on a daemon thread (port 0 = a free port) and return it running."""
    app = create_app(pages=pages, record_file=record_file, env=env)
    return SandboxServer(app, host, port).start()
