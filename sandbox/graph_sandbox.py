"""Local Graph API sandbox: a real HTTP server that follows Meta's documented contract for the
Send API (Messenger and Instagram messages, private replies), public comment replies and the
CDN that serves attachments, and refuses what Meta refuses.

Facebook cannot be reached from the development machines, so tests and the default local run
point the notification service here. The sandbox validates requests the way Meta does, enforces
the messaging windows for every recipient (one who never wrote to the Page gets Meta's
outside-window error), honours HUMAN_AGENT only for an app marked approved, allows one private
reply per comment within 7 days and none to a removed comment or one a Page wrote, serves media
whose links expire, records every call it receives and can inject each documented error, with
Meta's rate-limit usage headers (see design.md, "Facebook (Meta Graph API) facts", and
docs/notification.md, "The Graph API sandbox"). ``sandbox.meta`` names the page of Meta's
documentation behind each rule.

Control API (JSON, under ``/_sandbox``): ``health``, ``pages``, ``revoke``, ``restore``,
``conversations``, ``comments``, ``webhooks``, ``settings``, ``media``, ``usage``, ``clock``,
``faults``, ``calls``, ``reset``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox import meta
from sandbox.media import MediaStore
from sandbox.meta import ERROR_CATALOGUE  # noqa: F401 - re-exported for callers

log = logging.getLogger("ntbcare.sandbox.graph")

MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
ALLOWED_TAGS = meta.TAGS
SEVEN_DAY_TAGS = meta.SEVEN_DAY_TAGS
KINDS = ("messenger", "private_reply", "comment_reply")
PLATFORMS = ("messenger", "instagram")
MAX_TEXT = 2000  # Meta: message text "under 2,000 characters"
#: meta.INSTAGRAM_URL: Instagram message text "must be UTF-8 and less than 1000 characters"
#: (1000 bytes); counted here in UTF-8 bytes, refused above 1000.
INSTAGRAM_MAX_TEXT_BYTES = 1000
MAX_COMMENT = 8000
# meta.POLICY_URL: RESPONSE / UPDATE within 24 h of the person's last message.
STANDARD_WINDOW = timedelta(hours=24)
# meta.MESSAGE_TAGS_URL (HUMAN_AGENT, CUSTOMER_FEEDBACK) and meta.PRIVATE_REPLIES_URL.
EXTENDED_WINDOW = timedelta(days=7)
MAX_CALLS = 200_000
UNKNOWN_COMMENTS = ("citizen", "refuse")

_VERSION_RE = re.compile(r"^v\d+(\.\d+)?$")
_TRUE = ("1", "true", "yes", "on")

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
        # meta.ERROR_CODES_URL: {"error": {message, type, code, error_subcode, fbtrace_id}}
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


def _check_quick_replies(value: Any) -> list:
    """``message.quick_replies`` as Meta's reference has it (meta.QUICK_REPLIES_URL): a list of
    at most 13; text ones with a non-empty title of at most 20 characters and a payload (string
    or number) of at most 1000 characters. Anything else is Meta's code 100."""
    if not isinstance(value, list) or not value:
        raise _bad_request("param message[quick_replies] must be a non-empty array")
    if len(value) > meta.MAX_QUICK_REPLIES:
        raise _bad_request(f"param message[quick_replies] must have at most {meta.MAX_QUICK_REPLIES} elements")
    for index, reply in enumerate(value):
        where = f"param message[quick_replies][{index}]"
        if not isinstance(reply, dict):
            raise _bad_request(f"{where} must be an object")
        kind = reply.get("content_type")
        if kind not in meta.QUICK_REPLY_CONTENT_TYPES:
            raise _bad_request(f"{where}[content_type] must be one of "
                               f"{{{', '.join(meta.QUICK_REPLY_CONTENT_TYPES)}}}")
        if kind != "text":
            continue
        title, payload = reply.get("title"), reply.get("payload")
        if not isinstance(title, str) or not title.strip():
            raise _bad_request(f"{where}[title] is required for a text quick reply")
        if len(title) > meta.MAX_QUICK_REPLY_TITLE:
            raise _bad_request(f"{where}[title] must be at most {meta.MAX_QUICK_REPLY_TITLE} characters")
        if isinstance(payload, bool) or not isinstance(payload, (str, int, float)):
            raise _bad_request(f"{where}[payload] is required for a text quick reply")
        if str(payload) == "" and not reply.get("image_url"):
            raise _bad_request(f"{where}[payload] may be empty only with an image_url")
        if len(str(payload)) > meta.MAX_QUICK_REPLY_PAYLOAD:
            raise _bad_request(f"{where}[payload] must be at most {meta.MAX_QUICK_REPLY_PAYLOAD} characters")
    return [dict(reply) for reply in value]


def _missing_object(object_id: str, method: str = "post") -> GraphError:
    return GraphError(
        100, meta.MISSING_OBJECT_SUBCODE,
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
        error_type="GraphMethodException")


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


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


def commenter_psid(comment_id: str) -> str:
    """The PSID Meta would return for a private reply to an unregistered comment; stable so
    that tests can predict it."""
    digest = int(hashlib.sha256(f"psid:{comment_id}".encode()).hexdigest(), 16)
    return "7" + str(digest)[:15]


@dataclass
class Conversation:
    """What Meta knows of a thread: when the person last wrote, and on which platform."""
    last_message_at: datetime
    platform: str = "messenger"


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
    platform: str | None = None
    usage: dict = field(default_factory=dict)  # rate-limit header spec (sandbox.meta)

    def describe(self) -> dict:
        return {"id": self.id, "code": self.code, "subcode": self.subcode,
                "http_status": self.http_status, "times": self.times, "rate": self.rate,
                "page_id": self.page_id, "kind": self.kind, "platform": self.platform,
                "delay_seconds": self.delay_seconds, "body": self.body, "usage": self.usage}


_USAGE_KEYS = ("usage_type", "regain_minutes", "call_count", "total_cputime", "total_time",
               "headers")


def _opt_int(data: Mapping, key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{key} must be an integer")
    return int(value)


class SandboxState:
    """Everything the sandbox knows; one lock guards it all because handlers run in threads."""

    def __init__(self, *, record_file: str | None = None, max_calls: int = MAX_CALLS,
                 human_agent_approved: bool = False, app_secret: str | None = None):
        self.lock = threading.Lock()
        self.record_file = record_file
        self.pages: dict[str, dict] = {}
        self.calls: deque[dict] = deque(maxlen=max_calls)
        # seq survives reset so that a poller using since_seq never re-reads or misses calls.
        self._seq = 0
        self._fault_ids = 0
        self.faults: list[Fault] = []
        self.conversations: dict[tuple[str | None, str], Conversation] = {}
        self.comments: dict[str, dict] = {}
        self.replied_comments: set[str] = set()
        self.clock: datetime | None = None
        self.app_secret = app_secret
        self.defaults = {"human_agent_approved": bool(human_agent_approved),
                         "unknown_comments": "citizen"}
        self.settings: dict[str, Any] = dict(self.defaults)
        self.page_settings: dict[str, dict] = {}
        self.usage: list[dict] = []
        self.media = MediaStore()

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

    def register_conversation(self, page_id: str | None, psid: str, last_message_at: Any = None,
                              platform: str | None = None, *, keep_latest: bool = False) -> None:
        """The person ``psid`` wrote to ``page_id`` (any Page when None) at
        ``last_message_at`` (default now). ``keep_latest`` keeps a later time already known,
        as Meta does when webhooks arrive out of order."""
        if not psid:
            raise ValueError("psid is required")
        platform = platform or "messenger"
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {PLATFORMS}")
        at = parse_time(last_message_at) if last_message_at is not None else self.now()
        key = (str(page_id) if page_id else None, str(psid))
        with self.lock:
            known = self.conversations.get(key)
            if keep_latest and known is not None and known.last_message_at > at:
                at = known.last_message_at
            self.conversations[key] = Conversation(at, platform)

    def conversation(self, page_id: str | None, psid: str) -> Conversation | None:
        with self.lock:
            found = self.conversations.get((page_id, psid)) if page_id else None
            if found is None:
                found = self.conversations.get((None, psid))
            if found is None and page_id is None:
                # `/me/messages` in development mode (no Page registered): any Page's thread.
                found = next((c for (_, p), c in self.conversations.items() if p == psid), None)
            return found

    def list_conversations(self) -> list[dict]:
        with self.lock:
            return [{"page_id": pid, "psid": psid, "last_message_at": _iso(c.last_message_at),
                     "platform": c.platform} for (pid, psid), c in self.conversations.items()]

    def register_comment(self, comment_id: str, created_time: Any = None, psid: str | None = None,
                         page_id: str | None = None, **more: Any) -> dict:
        """Register or update a comment; only the fields given change. ``more``: ``author_id``,
        ``from_page``, ``removed``, ``private_reply_error`` ({code, subcode, message}) and
        ``platform``."""
        if not comment_id:
            raise ValueError("comment_id is required")
        unknown = set(more) - {"author_id", "from_page", "removed", "private_reply_error",
                               "platform"}
        if unknown:
            raise ValueError(f"unknown comment fields: {sorted(unknown)}")
        update: dict[str, Any] = {}
        if created_time is not None:
            update["created_time"] = parse_time(created_time)
        if psid:
            update["psid"] = str(psid)
        if page_id:
            update["page_id"] = str(page_id)
        if more.get("author_id") is not None:
            update["author_id"] = str(more["author_id"])
        for key in ("from_page", "removed"):
            if more.get(key) is not None:
                update[key] = _flag(more[key])
        if "private_reply_error" in more:
            err = more["private_reply_error"]
            if err is not None:
                if isinstance(err, int) and not isinstance(err, bool):
                    err = {"code": err}
                if not isinstance(err, dict) or _opt_int(err, "code") is None:
                    raise ValueError("private_reply_error must be a code or {code, subcode, "
                                     "message}")
                err = {"code": _opt_int(err, "code"), "subcode": _opt_int(err, "subcode"),
                       "message": err.get("message")}
            update["private_reply_error"] = err
        if more.get("platform") is not None:
            if more["platform"] not in PLATFORMS:
                raise ValueError(f"platform must be one of {PLATFORMS}")
            update["platform"] = more["platform"]
        with self.lock:
            comment = self.comments.get(str(comment_id))
            if comment is None:
                comment = {"created_time": self.now(), "psid": None, "page_id": None,
                           "author_id": None, "from_page": False, "removed": False,
                           "private_reply_error": None, "platform": "messenger"}
                self.comments[str(comment_id)] = comment
            comment.update(update)
            return dict(comment)

    def list_comments(self) -> list[dict]:
        with self.lock:
            return [{"comment_id": cid, **{k: (_iso(v) if isinstance(v, datetime) else v)
                                           for k, v in c.items()},
                     "private_reply_sent": cid in self.replied_comments}
                    for cid, c in self.comments.items()]

    def update_settings(self, data: Mapping) -> dict:
        allowed = {"human_agent_approved", "unknown_comments", "app_secret", "page_id"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        if "unknown_comments" in data and data["unknown_comments"] not in UNKNOWN_COMMENTS:
            raise ValueError(f"unknown_comments must be one of {UNKNOWN_COMMENTS}")
        with self.lock:
            if data.get("page_id"):
                page = self.page_settings.setdefault(str(data["page_id"]), {})
                if "human_agent_approved" in data:
                    page["human_agent_approved"] = _flag(data["human_agent_approved"])
            else:
                if "human_agent_approved" in data:
                    self.settings["human_agent_approved"] = _flag(data["human_agent_approved"])
                if "unknown_comments" in data:
                    self.settings["unknown_comments"] = data["unknown_comments"]
            if data.get("app_secret"):
                self.app_secret = str(data["app_secret"])
        return self.describe_settings()

    def describe_settings(self) -> dict:
        with self.lock:
            return {**self.settings, "pages": {p: dict(s) for p, s in self.page_settings.items()},
                    "app_secret_set": bool(self.app_secret)}

    def human_agent_approved(self, page_id: str | None) -> bool:
        with self.lock:
            page = self.page_settings.get(page_id or "") or {}
            return bool(page.get("human_agent_approved", self.settings["human_agent_approved"]))

    def set_usage(self, spec: Mapping) -> dict:
        """Usage headers added to every Graph answer (for a Page, or all): ``business``
        ({type, call_count, total_cputime, total_time, estimated_time_to_regain_access}) for
        X-Business-Use-Case-Usage and/or ``app`` ({call_count, total_cputime, total_time})
        for X-App-Usage."""
        if not spec.get("business") and not spec.get("app"):
            raise ValueError("usage needs business and/or app")
        entry = {"page_id": str(spec["page_id"]) if spec.get("page_id") else None,
                 "business": dict(spec["business"]) if spec.get("business") else None,
                 "app": dict(spec["app"]) if spec.get("app") else None}
        if entry["business"] is not None:
            entry["business"].setdefault("type", "messenger")
            for key in ("call_count", "total_cputime", "total_time",
                        "estimated_time_to_regain_access"):
                entry["business"][key] = int(entry["business"].get(key) or 0)
        if entry["app"] is not None:
            entry["app"] = meta.app_usage(int(entry["app"].get("call_count") or 0),
                                          int(entry["app"].get("total_cputime") or 0),
                                          int(entry["app"].get("total_time") or 0))
        with self.lock:
            self.usage = [u for u in self.usage if u["page_id"] != entry["page_id"]] + [entry]
        return entry

    def usage_headers(self, page_id: str | None) -> dict[str, str]:
        with self.lock:
            usage = [u for u in self.usage if u["page_id"] in (None, page_id)]
        headers: dict[str, str] = {}
        # A Page's own entry wins over the one for all Pages.
        for u in sorted(usage, key=lambda u: u["page_id"] is not None):
            if u["business"] is not None:
                headers["X-Business-Use-Case-Usage"] = json.dumps(
                    {str(page_id or u["page_id"] or "0"): [u["business"]]})
            if u["app"] is not None:
                headers["X-App-Usage"] = json.dumps(u["app"])
        return headers

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
        platform = spec.get("platform")
        if platform is not None and platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {PLATFORMS}")
        delay = float(spec.get("delay_seconds") or 0.0)
        if delay < 0:
            raise ValueError("delay_seconds must be >= 0")
        body = spec.get("body") or ("json" if code is not None else "html")
        if body not in ("json", "html", "empty"):
            raise ValueError("body must be json, html or empty")
        usage = {k: spec[k] for k in _USAGE_KEYS if spec.get(k) is not None}
        if "headers" in usage and not isinstance(usage["headers"], dict):
            raise ValueError("headers must be an object")
        seed = spec.get("seed", 20201130)
        with self.lock:
            self._fault_ids += 1
            fault = Fault(
                id=self._fault_ids, code=code, subcode=subcode, http_status=http_status,
                times=times, rate=rate,
                page_id=str(spec["page_id"]) if spec.get("page_id") is not None else None,
                kind=kind, delay_seconds=delay, message=spec.get("message"), body=body,
                rng=random.Random(f"{seed}:{self._fault_ids}"), platform=platform, usage=usage,
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
            self.settings = dict(self.defaults)
            self.page_settings.clear()
            self.usage.clear()
        self.media.clear()

    def get_calls(self, page_id: str | None = None, kind: str | None = None,
                  status: int | None = None, since_seq: int | None = None) -> list[dict]:
        with self.lock:
            if since_seq is None:
                calls = list(self.calls)
            else:
                # Sequence numbers grow along the deque: only the calls after ``since_seq`` are
                # copied, from the right (a watcher polling for new calls would otherwise copy
                # and filter the whole record — up to 200,000 calls — on every poll).
                calls = []
                for call in reversed(self.calls):
                    if call["seq"] <= since_seq:
                        break
                    calls.append(call)
                calls.reverse()
        return [
            c for c in calls
            if (page_id is None or c["page_id"] == page_id)
            and (kind is None or c["kind"] == kind)
            and (status is None or c["status"] == status)
        ]

    # -- what Meta saw: webhooks -----------------------------------------------------------

    def learn_webhook(self, body: Any, page_id: str | None = None) -> dict:
        """Learn from a webhook body what Meta knows because it delivered it: who wrote to
        which Page and when (messages, postbacks, reactions, referrals, opt-ins in
        ``messaging[]`` or ``standby[]``; echoes are the Page's own), and the comments of
        ``feed`` changes (``verb: remove`` marks them removed). For ``object: instagram`` the
        entry id is the Instagram account; ``page_id`` names the Page it is linked to."""
        if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
            raise ValueError("a webhook body has object and entry[]")
        instagram = body.get("object") == "instagram"
        platform = "instagram" if instagram else "messenger"
        learned = {"conversations": 0, "comments": 0, "removed": 0}
        for entry in body["entry"]:
            if not isinstance(entry, dict):
                continue
            owner = str(page_id or entry.get("id") or "") or None
            if instagram and not page_id:
                owner = None  # the Instagram account id is not a Page id: any Page
            for key in ("messaging", "standby"):
                for item in entry.get(key) or []:
                    if self._learn_event(item, owner, platform, entry.get("id")):
                        learned["conversations"] += 1
            for change in entry.get("changes") or []:
                value = (change or {}).get("value") or {}
                field_name = (change or {}).get("field")
                is_comment = (field_name == "feed" and value.get("item") == "comment") or \
                    (field_name in ("comments", "live_comments") and value.get("id"))
                if not is_comment:
                    continue
                comment_id = str(value.get("comment_id") or value.get("id"))
                author = (value.get("from") or {}).get("id")
                if value.get("verb") == "remove":
                    self.register_comment(comment_id, removed=True)
                    learned["removed"] += 1
                    continue
                created = value.get("created_time")
                self.register_comment(
                    comment_id, created if created is not None else None,
                    page_id=owner, author_id=author,
                    from_page=bool(author) and str(author) in (str(entry.get("id")), owner),
                    platform=platform)
                learned["comments"] += 1
        return learned

    def _learn_event(self, item: Any, owner: str | None, platform: str, entry_id: Any) -> bool:
        if not isinstance(item, dict):
            return False
        sender = str((item.get("sender") or {}).get("id") or "")
        message = item.get("message") or {}
        if not sender or sender == str(entry_id) or message.get("is_echo"):
            return False  # the Page's own message
        # meta.POLICY_URL: the actions of the person that open the standard window.
        if not any(k in item for k in ("message", "postback", "reaction", "referral",
                                       "optin")):
            return False
        stamp = item.get("timestamp")
        self.register_conversation(owner, sender, stamp if stamp is not None else None,
                                   platform, keep_latest=True)
        return True

    def deliver_webhook(self, raw: bytes, url: str) -> dict:
        """Deliver a webhook as Meta does: the exact bytes, signed with the app secret."""
        if not self.app_secret:
            raise ValueError("no app secret: set FACEBOOK_APP_SECRET or settings.app_secret")
        if not url.startswith(("http://", "https://")):
            raise ValueError("deliver_to must be an http(s) URL")
        signature = "sha256=" + hmac.new(self.app_secret.encode(), raw, hashlib.sha256).hexdigest()
        request = urllib.request.Request(url, data=raw, method="POST", headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": signature,
            "User-Agent": "facebookexternalua"})
        try:
            with urllib.request.urlopen(request, timeout=20) as answer:  # noqa: S310
                return {"status": answer.status, "body": answer.read(2000).decode(errors="replace")}
        except urllib.error.HTTPError as error:
            return {"status": error.code, "body": error.read(2000).decode(errors="replace")}
        except (urllib.error.URLError, OSError) as error:
            return {"status": None, "error": str(error)}

    # -- graph-side helpers (callers hold no lock) -----------------------------------------

    def take_fault(self, page_id: str | None, kind: str,
                   platform: str | None = None) -> Fault | None:
        """The first active fault that fires for this call; consumes one of its ``times``."""
        with self.lock:
            for fault in list(self.faults):
                if fault.page_id is not None and fault.page_id != page_id:
                    continue
                if fault.kind is not None and fault.kind != kind:
                    continue
                if fault.platform is not None and fault.platform != (platform or "messenger"):
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
        elif request.path.startswith("/cdn/") and request.method in ("GET", "HEAD"):
            response = self._cdn(request)
        else:
            response = self._graph(request)
        return response(environ, start_response)

    # -- the CDN ---------------------------------------------------------------------------

    def _cdn(self, request: Request) -> Response:
        status, body, ctype, headers = self.state.media.serve(request.path, request.args,
                                                              self.state.now())
        log.info("GET /cdn/v/{media} status=%s", status)
        return Response(body, status=status, content_type=ctype, headers=headers)

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
            "page_id": None, "kind": "unknown", "platform": None, "recipient": None,
            "comment_id": None, "messaging_type": None, "tag": None, "text": None,
            "token_ok": False,
        }
        status, body, raw, ctype = 400, None, None, "application/json"
        headers: dict[str, str] = {}
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
                raise _missing_object(parts[0] if parts else "", request.method.lower())
        except _FaultAnswer as fa:
            status, body, raw, ctype = fa.status, fa.body, fa.raw, fa.ctype
            headers.update(fa.headers)
        except GraphError as err:
            status, body = err.http_status, err.body()
        headers = {**state.usage_headers(entry["page_id"]), **headers}
        entry["status"] = status
        entry["response"] = body
        recorded = state.record(entry)
        error = (body or {}).get("error") if isinstance(body, dict) else None
        # Ids (PSID, comment id) and texts are personal data: the log line names neither.
        log.info("seq=%s %s %s kind=%s page=%s status=%s code=%s", recorded["seq"],
                 request.method, _path_template(parts), entry["kind"], entry["page_id"],
                 status, error.get("code") if error else "-")
        if raw is not None:
            return Response(raw, status=status, content_type=ctype, headers=headers)
        return Response(json.dumps(body), status=status, content_type="application/json",
                        headers=headers)

    def _apply_fault(self, page_id: str | None, kind: str, platform: str | None = None) -> None:
        fault = self.state.take_fault(page_id, kind, platform)
        if fault is None:
            return
        if fault.delay_seconds:
            time.sleep(fault.delay_seconds)
        if fault.code is None and fault.http_status < 300:
            return  # a delay-only fault: the call then proceeds normally
        headers = meta.rate_limit_headers(fault.code, page_id, fault.usage) \
            if fault.code in meta.RATE_LIMIT_CODES or fault.usage else {}
        if fault.body == "json" and fault.code is not None:
            err = GraphError(fault.code, fault.subcode, fault.message, fault.http_status)
            raise _FaultAnswer(fault.http_status, err.body(), None, "application/json", headers)
        if fault.body == "html":
            raise _FaultAnswer(fault.http_status, None, _HTML_5XX, "text/html; charset=utf-8",
                               headers)
        raise _FaultAnswer(fault.http_status, None, "", "text/plain", headers)

    def _messages(self, node: str, params: dict | None, token: str | None, entry: dict) -> dict:
        state = self.state
        token_ok, page_id = state.check_page_token(node, token)
        entry["token_ok"] = token_ok
        entry["page_id"] = page_id
        entry["kind"] = "messenger"
        recipient = None
        conversation = None
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
                elif isinstance(recipient.get("id"), (str, int)):
                    conversation = state.conversation(page_id, str(recipient["id"]))
            entry["messaging_type"] = params.get("messaging_type")
            entry["tag"] = params.get("tag")
            try:
                message = _json_param(params.get("message"), "message")
            except GraphError:
                message = None
            if isinstance(message, dict) and isinstance(message.get("text"), str):
                entry["text"] = message["text"]
        if entry["kind"] == "private_reply":
            with state.lock:
                comment = state.comments.get(entry["comment_id"]) or {}
            entry["platform"] = comment.get("platform") or "messenger"
        else:
            entry["platform"] = conversation.platform if conversation else "messenger"

        # Meta throttles and fails before it looks at the payload.
        self._apply_fault(page_id, entry["kind"], entry["platform"])
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
            self._check_tag(tag)

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
            if entry["platform"] == "instagram" \
                    and len(text.encode("utf-8")) > INSTAGRAM_MAX_TEXT_BYTES:
                raise _bad_request("Message text is too long: an Instagram message must be at "
                                   f"most {INSTAGRAM_MAX_TEXT_BYTES} bytes (UTF-8)")
        if "quick_replies" in message:
            entry["quick_replies"] = message["quick_replies"]  # recorded as sent, checked below
            _check_quick_replies(message["quick_replies"])

        if private:
            psid = self._private_reply(str(recipient["comment_id"]))
        else:
            psid = str(recipient["id"])
            self._check_window(page_id, psid, mtype, tag)
        return {"recipient_id": psid, "message_id": "m_" + secrets.token_urlsafe(24)}

    @staticmethod
    def _check_tag(tag: Any) -> None:
        """meta.MESSAGE_TAGS_URL, meta.TAGS_RETIRED_URL, meta.LEGACY_TAGS_URL: code 100."""
        if not tag:
            raise _bad_request("Tag is required for MESSAGE_TAG messaging type")
        if tag in meta.RETIRED_2026_TAGS:
            raise GraphError(100, meta.RETIRED_TAG_SUBCODE,
                             f"(#100) The message tag {tag} is no longer supported. Use "
                             "HUMAN_AGENT for a person's reply within 7 days.")
        if tag not in ALLOWED_TAGS:
            raise _bad_request("Param tag must be one of {" + ", ".join(ALLOWED_TAGS)
                               + "} - got \"" + str(tag)[:40] + "\"")

    def _check_window(self, page_id: str | None, psid: str, mtype: str, tag: Any) -> None:
        """The messaging windows, for every recipient. meta.POLICY_URL (24 h standard
        messaging), meta.MESSAGE_TAGS_URL and meta.HUMAN_AGENT_URL (HUMAN_AGENT: 7 days, an
        approved app), meta.INSTAGRAM_URL (same windows through the Page; HUMAN_AGENT only)."""
        state = self.state
        conversation = state.conversation(page_id, psid)
        platform = conversation.platform if conversation else "messenger"
        window = meta.INSTAGRAM_WINDOW_SUBCODE if platform == "instagram" \
            else meta.MESSENGER_WINDOW_SUBCODE
        if mtype == "MESSAGE_TAG":
            if platform == "instagram" and tag not in meta.INSTAGRAM_TAGS:
                raise _bad_request(f"Message tag {tag} is not available for Instagram "
                                   "Messaging API")
            if tag == "HUMAN_AGENT" and not state.human_agent_approved(page_id):
                # meta.GRAPH_ERRORS_URL: code 10, "API Permission Denied" (no window subcode).
                raise GraphError(10)
        if conversation is None:
            raise GraphError(10, window)  # never wrote to this Page: no window is open
        age = state.now() - conversation.last_message_at
        limit = EXTENDED_WINDOW if mtype == "MESSAGE_TAG" and tag in SEVEN_DAY_TAGS \
            else STANDARD_WINDOW
        if age > limit:
            raise GraphError(10, window)

    def _private_reply(self, comment_id: str) -> str:
        """meta.PRIVATE_REPLIES_URL: one message per comment, within 7 days of its creation,
        never to a Page's comment; a removed comment is gone (100/2018292)."""
        state = self.state
        now = state.now()
        with state.lock:
            info = state.comments.get(comment_id)
            if info is None:
                if state.settings["unknown_comments"] == "refuse":
                    raise GraphError(100, meta.INVALID_COMMENT_SUBCODE)
                info = {}
            if info.get("removed"):
                raise GraphError(100, meta.INVALID_COMMENT_SUBCODE)
            author = info.get("author_id")
            if info.get("from_page") or (author is not None and author in state.pages):
                raise GraphError(10903)
            refusal = info.get("private_reply_error")
            if refusal:
                raise GraphError(refusal["code"], refusal.get("subcode"), refusal.get("message"))
            if comment_id in state.replied_comments:
                raise GraphError(10900)
            created = info.get("created_time")
            if created is not None and now - created > EXTENDED_WINDOW:
                raise GraphError(10, meta.MESSENGER_WINDOW_SUBCODE)
            # Marked inside the same critical section so that two racing replies cannot
            # both succeed. A private reply opens no window (meta.PRIVATE_REPLIES_URL): only
            # the person's answer in Messenger does.
            state.replied_comments.add(comment_id)
            return info.get("psid") or commenter_psid(comment_id)

    def _comment_reply(self, comment_id: str, params: dict | None, token: str | None,
                       entry: dict) -> dict:
        state = self.state
        token_ok, page_id = state.check_comment_token(comment_id, token)
        entry.update(token_ok=token_ok, page_id=page_id, kind="comment_reply",
                     comment_id=comment_id, platform="messenger")
        if params is not None and isinstance(params.get("message"), str):
            entry["text"] = params["message"]
        self._apply_fault(page_id, "comment_reply", "messenger")
        if not token_ok:
            raise GraphError(190)
        if params is None:
            raise _bad_request("Invalid JSON in request body")
        with state.lock:
            info = state.comments.get(comment_id)
            refuse_unknown = state.settings["unknown_comments"] == "refuse"
        # meta.FEED_WEBHOOK_URL: a removed comment no longer exists; Graph answers as for any
        # missing object.
        if (info is None and refuse_unknown) or (info or {}).get("removed"):
            raise _missing_object(comment_id)
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
        args = request.args
        try:
            data: Any = {}
            if method in ("POST", "PUT"):
                raw = request.get_data(cache=True)
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
                                            data.get("last_message_at"), data.get("platform"))
                return _json({"ok": True})
            if route == "conversations" and method == "GET":
                return _json({"conversations": state.list_conversations()})
            if route == "comments" and method == "POST":
                more = {k: data[k] for k in ("author_id", "from_page", "removed",
                                             "private_reply_error", "platform") if k in data}
                comment = state.register_comment(data.get("comment_id"), data.get("created_time"),
                                                 data.get("psid"), data.get("page_id"), **more)
                return _json({"ok": True, "comment": {
                    k: (_iso(v) if isinstance(v, datetime) else v) for k, v in comment.items()}})
            if route == "comments" and method == "GET":
                return _json({"comments": state.list_comments()})
            if route == "webhooks" and method == "POST":
                learned = state.learn_webhook(data, args.get("page_id"))
                answer: dict[str, Any] = {"learned": learned}
                if args.get("deliver_to"):
                    answer["delivered"] = state.deliver_webhook(request.get_data(cache=True),
                                                                args["deliver_to"])
                return _json(answer)
            if route == "settings" and method == "POST":
                return _json(state.update_settings(data))
            if route == "settings" and method == "GET":
                return _json(state.describe_settings())
            if route == "media" and method == "POST":
                return _json({"media": state.media.add(data, state.now(), request.host_url)})
            if route == "media" and method == "GET":
                return _json({"media": state.media.list(request.host_url)})
            if route.startswith("media/") and method == "POST":
                _, media_id, action = (route.split("/") + [""])[:3]
                if action not in ("expire", "remove"):
                    raise KeyError(route)
                return _json({"media": state.media.update(
                    int(media_id), expire=action == "expire", remove=action == "remove",
                    now=state.now(), base_url=request.host_url)})
            if route == "usage" and method == "POST":
                return _json({"usage": state.set_usage(data)})
            if route == "usage" and method == "DELETE":
                with state.lock:
                    state.usage.clear()
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
    def __init__(self, status: int, body: dict | None, raw: str | None, ctype: str,
                 headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.raw, self.ctype = status, body, raw, ctype
        self.headers = headers or {}


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _path_template(parts: list[str]) -> str:
    if len(parts) == 2 and parts[1] == "messages":
        return "/{page}/messages" if parts[0] != "me" else "/me/messages"
    if len(parts) == 2 and parts[1] == "comments":
        return "/{comment}/comments"
    return "/{unsupported}"


# A body up to this size is read before the app runs, so that the connection can carry the next
# call whatever the app read of it; a larger or chunked one closes the connection after its answer.
_KEEP_ALIVE_BODY_LIMIT = 1 << 20


class _QuietHandler(WSGIRequestHandler):
    # Keep-alive, as graph.facebook.com: a client's pooled connection carries many calls, and a
    # connect (and here a thread) per call is not what a sender pays against Meta. werkzeug
    # announces "Connection: close" on every answer, because http.server cannot drain a body the
    # app left unread before it parses the next request line; reading the body first removes
    # that reason.
    protocol_version = "HTTP/1.1"
    # An idle kept connection is closed after this, as servers do (urllib3 then reconnects).
    timeout = 120
    _body_read_first = False

    def setup(self) -> None:
        super().setup()
        # The status line and headers go out in one write and the body in the next: with Nagle's
        # algorithm on, a kept connection held the body back until the client's delayed ACK of the
        # headers, 40 ms a call (a closed connection flushed it at once).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run_wsgi(self) -> None:
        length = (self.headers.get("Content-Length") or "0").strip()
        self._body_read_first = (not self.headers.get("Transfer-Encoding") and length.isdigit()
                                 and int(length) <= _KEEP_ALIVE_BODY_LIMIT)
        if not self._body_read_first:
            super().run_wsgi()
            return
        connection_stream = self.rfile
        self.rfile = io.BytesIO(connection_stream.read(int(length)))
        try:
            super().run_wsgi()
        finally:
            self.rfile = connection_stream

    def send_header(self, keyword: str, value: str) -> None:
        if (keyword.lower() == "connection" and value.lower() == "close"
                and self._body_read_first and not self.close_connection):
            return  # the client did not ask to close, and nothing of this request is left unread
        super().send_header(keyword, value)

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
               env: Mapping[str, str] | None = None,
               human_agent_approved: bool | None = None) -> GraphSandboxApp:
    """A WSGI app; ``env`` (default ``os.environ``) supplies preloaded Pages,
    ``GRAPH_SANDBOX_RECORD_FILE``, ``FACEBOOK_APP_SECRET`` (to sign delivered webhooks) and
    ``FACEBOOK_HUMAN_AGENT_APPROVED`` (whether the app passed Human Agent review, default
    not); explicit arguments win."""
    env = os.environ if env is None else env
    if human_agent_approved is None:
        human_agent_approved = _flag(env.get("FACEBOOK_HUMAN_AGENT_APPROVED") or "")
    state = SandboxState(record_file=record_file or env.get("GRAPH_SANDBOX_RECORD_FILE") or None,
                         human_agent_approved=human_agent_approved,
                         app_secret=env.get("FACEBOOK_APP_SECRET") or None)
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
                  env: Mapping[str, str] | None = None,
                  human_agent_approved: bool | None = None) -> SandboxServer:
    """Start the sandbox on a daemon thread (port 0 = a free port) and return it running."""
    app = create_app(pages=pages, record_file=record_file, env=env,
                     human_agent_approved=human_agent_approved)
    return SandboxServer(app, host, port).start()
