"""Meta's Page webhook, understood: signature check and the parsing of a delivered body into the
items intake acts on. Pure code (no nameko, no database).

A body holds ``entry[]`` (one per Page, ``entry.id`` = the Page id); each entry holds Messenger
events in ``messaging[]`` and Page changes in ``changes[]``. Every item becomes exactly one of:
``MessengerMessage``, ``CommentChange``, ``Ignored`` (echoes, deliveries, reads, the Page's own
comments, fields we do not serve) or ``Problem`` (cannot be understood: quarantined with the
reason, as a one-item body that can be replayed on its own).
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from shared.core.events import parse_iso

SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_WEBHOOK_BYTES = 1024 * 1024  # Meta's own batches are far smaller; more is not Meta


def signature_valid(raw_body: bytes, header: str | None, app_secret: str | None) -> bool:
    """``sha256=<hex HMAC-SHA256(raw body, app secret)>``, compared in constant time."""
    if not header or not app_secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    given = header[len("sha256="):].strip().lower()
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))


def sign(raw_body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class MessengerMessage:
    page_id: str
    psid: str
    mid: str
    text: str
    attachments: list[dict[str, str]]
    sent_at: datetime           # Meta's ``timestamp``


@dataclass(frozen=True)
class CommentChange:
    page_id: str
    verb: str                   # add | edited | remove
    comment_id: str
    post_id: str | None
    parent_id: str | None
    author_id: str | None
    text: str
    attachments: list[dict[str, str]]
    created_at: datetime | None  # Meta's ``created_time``


@dataclass(frozen=True)
class Ignored:
    page_id: str | None
    why: str


@dataclass(frozen=True)
class Problem:
    reason: str
    body: Any                   # a replayable one-item body (or the whole body)
    page_id: str | None = None


Item = MessengerMessage | CommentChange | Ignored | Problem


@dataclass
class ParsedBody:
    """Items in delivery order, each with a one-item body it can be quarantined and replayed as."""
    items: list[tuple[Item, Any]] = field(default_factory=list)

    def add(self, item: Item, one_item_body: Any) -> None:
        self.items.append((item, one_item_body))


class NotUnderstood(ValueError):
    pass


def meta_time(value: Any) -> datetime:
    """Meta's times: Messenger ``timestamp`` in ms since the epoch, ``created_time`` in seconds
    since the epoch or ISO 8601 (``2024-05-01T03:04:05+0000``)."""
    if isinstance(value, bool) or value is None:
        raise NotUnderstood(f"not a time: {value!r}")
    if isinstance(value, str) and value.strip().lstrip("-").isascii() and value.strip().lstrip("-").isdigit():
        try:  # ASCII only: "²".isdigit() is true, yet int("²") fails
            value = int(value.strip())
        except ValueError:  # e.g. more digits than Python converts
            raise NotUnderstood(f"not a time: {value[:40]!r}") from None
    if isinstance(value, (int, float)):
        seconds = value / 1000.0 if value > 10_000_000_000 else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise NotUnderstood(f"time out of range: {value!r}") from None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():  # +0000 → +00:00
            text = f"{text[:-2]}:{text[-2:]}"
        try:
            return parse_iso(text)
        except ValueError:
            raise NotUnderstood(f"not a time: {value!r}") from None
    raise NotUnderstood(f"not a time: {value!r}")


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotUnderstood(f"{what} is not text")
    return value


def _id(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise NotUnderstood(f"{what} is missing")
    return str(value).strip()


def _attachments(raw: Any) -> list[dict[str, str]]:
    if raw in (None, []):
        return []
    if not isinstance(raw, list):
        raise NotUnderstood("attachments is not a list")
    kept = []
    for item in raw:
        if not isinstance(item, dict):
            raise NotUnderstood("an attachment is not an object")
        raw_payload = item.get("payload")
        payload: dict[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
        url = payload.get("url") or item.get("url")
        kind = str(item.get("type") or "file")
        if isinstance(url, str) and url:
            kept.append({"type": kind, "url": url})
        elif kind == "location" and isinstance(payload.get("coordinates"), dict):
            coordinates = payload["coordinates"]
            kept.append({"type": "location",
                         "url": f"geo:{coordinates.get('lat')},{coordinates.get('long')}"})
        # stickers/fallbacks without a URL carry nothing to keep
    return kept


def parse_messaging(page_id: str, event: Any) -> MessengerMessage | Ignored:
    if not isinstance(event, dict):
        raise NotUnderstood("a messaging item is not an object")
    message = event.get("message")
    if message is None:
        for kind in ("delivery", "read", "reaction", "postback", "optin", "referral",
                     "account_linking", "policy_enforcement", "message_edit"):
            if kind in event:
                return Ignored(page_id, kind)
        raise NotUnderstood("messaging item without message, delivery or read")
    if not isinstance(message, dict):
        raise NotUnderstood("message is not an object")
    if message.get("is_echo"):
        return Ignored(page_id, "echo")
    psid = _id((event.get("sender") or {}).get("id") if isinstance(event.get("sender"), dict) else None,
               "sender.id")
    raw_recipient = event.get("recipient")
    recipient: dict[str, Any] = raw_recipient if isinstance(raw_recipient, dict) else {}
    if recipient.get("id") is not None and str(recipient["id"]) != page_id:
        raise NotUnderstood("recipient.id is not the entry's Page")
    if psid == page_id:
        return Ignored(page_id, "page_itself")
    mid = _id(message.get("mid"), "message.mid")
    text = _text(message.get("text"), "message.text")
    attachments = _attachments(message.get("attachments"))
    if not text.strip() and not attachments:
        if message.get("attachments") or message.get("sticker_id"):
            return Ignored(page_id, "sticker")
        raise NotUnderstood("message without text or attachments")
    return MessengerMessage(page_id, psid, mid, text, attachments, meta_time(event.get("timestamp")))


def parse_change(page_id: str, change: Any) -> CommentChange | Ignored:
    if not isinstance(change, dict):
        raise NotUnderstood("a change is not an object")
    if change.get("field") != "feed":
        return Ignored(page_id, f"field {change.get('field')!r}")
    value = change.get("value")
    if not isinstance(value, dict):
        raise NotUnderstood("feed change without a value object")
    if value.get("item") != "comment":
        return Ignored(page_id, f"feed item {value.get('item')!r}")
    verb = value.get("verb")
    if verb not in ("add", "edited", "remove", "hide", "unhide"):
        raise NotUnderstood(f"comment verb {verb!r}")
    if verb in ("hide", "unhide"):
        return Ignored(page_id, f"comment {verb}")
    raw_author = value.get("from")
    author: dict[str, Any] = raw_author if isinstance(raw_author, dict) else {}
    author_id = str(author["id"]) if author.get("id") is not None else None
    if author_id == page_id:
        return Ignored(page_id, "page_own_comment")
    comment_id = _id(value.get("comment_id"), "value.comment_id")
    post_id = str(value["post_id"]) if value.get("post_id") is not None else None
    parent_id = str(value["parent_id"]) if value.get("parent_id") is not None else None
    if verb == "remove":
        return CommentChange(page_id, verb, comment_id, post_id, parent_id, author_id, "", [], None)
    text = _text(value.get("message"), "value.message")
    attachments: list[dict[str, str]] = []
    photo = value.get("photo")
    if isinstance(photo, str) and photo:
        attachments.append({"type": "image", "url": photo})
    if not text.strip() and not attachments:
        raise NotUnderstood("comment without message")
    if author_id is None and verb == "add":
        raise NotUnderstood("comment without from.id")
    return CommentChange(page_id, verb, comment_id, post_id, parent_id, author_id, text, attachments,
                         meta_time(value.get("created_time")))


def parse_body(body: Any, accepted_pages: Iterable[str] | None = None) -> ParsedBody:
    """Every item of every entry, in order. ``accepted_pages`` (empty/None = any Page): an item
    for another Page is a Problem, kept in quarantine until that Page is configured."""
    accepted = set(accepted_pages or ())
    parsed = ParsedBody()
    if not isinstance(body, dict) or body.get("object") != "page" or not isinstance(body.get("entry"), list):
        parsed.add(Problem("not a Page webhook (object 'page' with entry[])", body), body)
        return parsed
    for entry in body["entry"]:
        if not isinstance(entry, dict) or entry.get("id") in (None, ""):
            one = {"object": "page", "entry": [entry]}
            parsed.add(Problem("entry without Page id", one), one)
            continue
        page_id = str(entry["id"])
        lists = [(key, entry.get(key)) for key in ("messaging", "changes", "standby")]
        if not any(isinstance(items, list) for _key, items in lists):
            one = {"object": "page", "entry": [entry]}
            parsed.add(Problem("entry without messaging or changes", one, page_id), one)
            continue
        for key, items in lists:
            if not isinstance(items, list):
                continue
            for item in items:
                one = {"object": "page", "entry": [{"id": entry["id"], "time": entry.get("time"), key: [item]}]}
                if key == "standby":  # another app owns the thread (handover protocol)
                    parsed.add(Ignored(page_id, "standby"), one)
                elif accepted and page_id not in accepted:
                    parsed.add(Problem(f"page {page_id} is not configured (FACEBOOK_PAGES)", one, page_id), one)
                else:
                    try:
                        parsed.add(parse_messaging(page_id, item) if key == "messaging"
                                   else parse_change(page_id, item), one)
                    except NotUnderstood as error:
                        parsed.add(Problem(str(error), one, page_id), one)
                    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
                        # A shape this parser does not foresee must not stall the whole body in
                        # the inbox: quarantine the one item, with the error, for a replay after a fix.
                        parsed.add(Problem(f"could not parse: {type(error).__name__}: {error}"[:500], one,
                                           page_id), one)
    return parsed
