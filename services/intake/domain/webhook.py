"""Meta's webhook, understood: signature check and the parsing of a delivered body into the
items intake acts on. Pure code (no nameko, no database).

A body is ``object: "page"`` (a Facebook Page: Messenger and Page comments) or ``object:
"instagram"`` (Instagram Direct through the Messenger Platform). It holds ``entry[]``; a Page
entry (``entry.id`` = the Page id) holds Messenger events in ``messaging[]`` — or in
``standby[]`` when another app owns the conversation — and Page changes in ``changes[]``; an
Instagram entry (``entry.id`` = the Instagram professional account, mapped to its Page) holds
Direct messages in ``messaging[]``. Every item becomes exactly one of:

* ``MessengerMessage`` — a citizen's text and/or media (Messenger or Instagram Direct);
* ``CitizenReaction`` — a message that is only a sticker or the like (👍) button: never a complaint;
* ``CommentChange`` — a comment on a Page post added, edited or removed;
* ``Ignored`` — what Meta sends that intake does not act on, **by name** (echoes, deliveries, reads,
  reactions, postbacks, referrals, optins, handover, message edits, the Page's own comments,
  other feed items and fields, other ``object`` values …);
* ``Problem`` — cannot be understood: quarantined with the reason, as a one-item body that can be
  replayed on its own.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from shared.core.events import parse_iso

SIGNATURE_HEADER = "X-Hub-Signature-256"
# Meta batches up to 1000 updates in one delivery. A Messenger text may hold 2,000 characters;
# written as JSON ``\uXXXX`` escapes (emoji: two of them each) that is up to ~12 KB, plus ~1 KB of
# ids, times and attachment links: 1000 × 13 KB ≈ 13 MB for the largest batch Meta can send.
# 16 MiB keeps that with room to spare and still refuses anything that is not Meta.
MAX_WEBHOOK_BYTES = 16 * 1024 * 1024

MESSENGER = "messenger"
INSTAGRAM = "instagram"
OBJECTS = {"page": MESSENGER, "instagram": INSTAGRAM}

# The like (👍) button is a sticker in three sizes (tap, hold, hold longer).
LIKE_STICKER_IDS = frozenset({"369239263222822", "369239343222814", "369239383222810"})
# Instagram's heart "sticker" arrives as an attachment of this type without a URL.
HEART_ATTACHMENT_TYPES = frozenset({"like_heart"})

# Messenger Platform events that are not a citizen's message, by the key that carries them
# (``messaging[]``/``standby[]`` items): ignored by name, never quarantined.
NOT_A_MESSAGE = (
    "delivery", "read", "reaction", "postback", "referral", "optin", "account_linking",
    "policy_enforcement", "policy-enforcement", "message_edit", "pass_thread_control",
    "take_thread_control", "request_thread_control", "app_roles", "messaging_feedback",
    "response_feedback", "game_play", "checkout_update", "payment", "pre_checkout",
    "messaging_handovers", "messaging_optins", "messaging_referrals", "messaging_postbacks",
    "message_reactions", "message_edits", "call_permission_reply", "marketing_message_echoes",
)
COMMENT_VERBS = ("add", "edited", "remove")


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
    page_id: str                # for Instagram: the Page the Instagram account belongs to
    psid: str                   # Page-scoped id (Messenger) or Instagram-scoped id (IGSID)
    mid: str
    text: str
    attachments: list[dict[str, str]]
    sent_at: datetime           # Meta's ``timestamp``
    platform: str = MESSENGER   # messenger | instagram
    # A tapped quick reply (``message.quick_reply.payload``) or one of our postbacks
    # (``postback.payload``; its ``title`` is the text): the answer to "Sudah selesai?".
    payload: str | None = None
    postback: bool = False      # the payload came with a postback, not a quick reply


@dataclass(frozen=True)
class CitizenReaction:
    """A message that is only a sticker, the like (👍) button or Instagram's heart: a reaction to
    the conversation, never a complaint or part of one."""
    page_id: str
    psid: str
    mid: str
    reaction: str               # like | sticker | heart
    sticker_id: str | None
    sent_at: datetime
    platform: str = MESSENGER


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


Item = MessengerMessage | CitizenReaction | CommentChange | Ignored | Problem


@dataclass
class ParsedBody:
    """Items in delivery order, each with a one-item body it can be quarantined and replayed as."""
    items: list[tuple[Item, Any]] = field(default_factory=list)

    def add(self, item: Item, one_item_body: Any) -> None:
        self.items.append((item, one_item_body))


@dataclass(frozen=True)
class StandbyMode:
    """What to do with ``standby[]`` messages — those Meta delivers to this app while another app
    (an inbox app, Meta's AI agent, a human-agent tool) owns the conversation: ``process`` them
    like ``messaging[]`` (the default: the complaint is filed whoever answers the chat) or
    ``ignore`` them (that other app files complaints for the Page). Per Page overrides."""
    default: str = "process"
    pages: Mapping[str, str] = field(default_factory=dict)

    def processes(self, page_id: str) -> bool:
        return self.pages.get(page_id, self.default) == "process"


STANDBY_MODES = ("process", "ignore")


def parse_standby_mode(value: str | None) -> StandbyMode:
    """``INTAKE_STANDBY_MODE``: ``process`` or ``ignore``, optionally with per-Page entries —
    ``ignore``, ``process,200000000000002:ignore``, ``100000000000001:ignore``."""
    default = "process"
    pages: dict[str, str] = {}
    for raw in (value or "").split(","):
        item = raw.strip().lower()
        if not item:
            continue
        page, sep, mode = item.rpartition(":")
        if mode not in STANDBY_MODES or (sep and not page.strip()):
            raise ValueError(f"INTAKE_STANDBY_MODE: {raw.strip()!r} is not 'process', 'ignore' or "
                             "'<page_id>:process|ignore'")
        if sep:
            pages[page.strip()] = mode
        else:
            default = mode
    return StandbyMode(default, pages)


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


def _sticker_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        return None
    return str(value).strip()


@dataclass(frozen=True)
class _Attachments:
    kept: list[dict[str, str]]          # evidence: {type, url}
    stickers: list[str | None]          # sticker ids (None: a sticker whose id is not given)
    hearts: int                         # Instagram's heart
    other: int                          # neither evidence nor a sticker (a fallback, a template …)


def _attachments(raw: Any, message_sticker: str | None = None) -> _Attachments:
    """Evidence (``{type, url}``) apart from stickers: an attachment whose payload has a
    ``sticker_id`` (Meta types the like button and stickers ``image`` as well as ``sticker``) is
    a sticker, never evidence, even with a URL; so is an ``image`` of a message whose
    ``message_sticker`` (``message.sticker_id``) is given."""
    if raw in (None, []):
        return _Attachments([], [], 0, 0)
    if not isinstance(raw, list):
        raise NotUnderstood("attachments is not a list")
    kept: list[dict[str, str]] = []
    stickers: list[str | None] = []
    hearts = other = 0
    for item in raw:
        if not isinstance(item, dict):
            raise NotUnderstood("an attachment is not an object")
        raw_payload = item.get("payload")
        payload: dict[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
        kind = str(item.get("type") or "file")
        sticker = _sticker_id(payload.get("sticker_id"))
        # A message with ``message.sticker_id`` is a sticker: Meta sends its picture as an
        # ``image`` whose payload may hold only the URL (and, since 2026-06, a ``sticker``
        # attachment beside it). That picture is the sticker, never evidence.
        if sticker is not None or kind == "sticker" or (message_sticker is not None and kind == "image"):
            stickers.append(sticker or message_sticker)
            continue
        if kind in HEART_ATTACHMENT_TYPES:
            hearts += 1
            continue
        url = payload.get("url") or item.get("url")
        if isinstance(url, str) and url:
            kept.append({"type": kind, "url": url})
        elif kind == "location" and isinstance(payload.get("coordinates"), dict):
            coordinates = payload["coordinates"]
            kept.append({"type": "location",
                         "url": f"geo:{coordinates.get('lat')},{coordinates.get('long')}"})
        else:
            other += 1          # a fallback or template without a URL carries nothing to keep
    return _Attachments(kept, stickers, hearts, other)


def _reaction_of(stickers: list[str | None]) -> tuple[str, str | None]:
    """``like`` when every sticker is the like button (in any of its sizes), else ``sticker``;
    with the first sticker id known."""
    known = [s for s in stickers if s]
    if known and all(s in LIKE_STICKER_IDS for s in known):
        return "like", known[0]
    return "sticker", known[0] if known else None


def parse_messaging(page_id: str, event: Any, platform: str = MESSENGER,
                    account_id: str | None = None) -> MessengerMessage | CitizenReaction | Ignored:
    """One ``messaging[]``/``standby[]`` item. ``account_id``: the id the citizen wrote to
    (the Page, or the Instagram account for Instagram Direct; ``page_id`` when not given)."""
    account = account_id or page_id
    if not isinstance(event, dict):
        raise NotUnderstood("a messaging item is not an object")
    message = event.get("message")
    if message is None and _our_postback(event.get("postback")):
        return _postback(page_id, event, platform, account)
    if message is None:
        for kind in NOT_A_MESSAGE:
            if kind in event:
                return Ignored(page_id, kind)
        raise NotUnderstood("messaging item without message or another known event")
    if not isinstance(message, dict):
        raise NotUnderstood("message is not an object")
    if message.get("is_echo"):
        return Ignored(page_id, "echo")
    if message.get("is_deleted"):               # Instagram: the citizen unsent a message
        return Ignored(page_id, "message_deleted")
    psid = _id((event.get("sender") or {}).get("id") if isinstance(event.get("sender"), dict) else None,
               "sender.id")
    raw_recipient = event.get("recipient")
    recipient: dict[str, Any] = raw_recipient if isinstance(raw_recipient, dict) else {}
    if recipient.get("id") is not None and str(recipient["id"]) not in (account, page_id):
        raise NotUnderstood("recipient.id is not the entry's Page or account")
    if psid in (page_id, account):
        return Ignored(page_id, "page_itself")
    mid = _id(message.get("mid"), "message.mid")
    text = _text(message.get("text"), "message.text")
    message_sticker = _sticker_id(message.get("sticker_id"))
    found = _attachments(message.get("attachments"), message_sticker)
    if not text.strip() and not found.kept:
        sent_at = meta_time(event.get("timestamp"))
        stickers = found.stickers or ([message_sticker] if message_sticker else [])
        if stickers:
            reaction, sticker = _reaction_of(stickers)
            return CitizenReaction(page_id, psid, mid, reaction, sticker, sent_at, platform)
        if found.hearts:
            return CitizenReaction(page_id, psid, mid, "heart", None, sent_at, platform)
        if found.other or message.get("is_unsupported"):
            return Ignored(page_id, "nothing_to_keep")   # e.g. a fallback or an unsupported media type
        raise NotUnderstood("message without text or attachments")
    raw_quick = message.get("quick_reply")
    quick = raw_quick.get("payload") if isinstance(raw_quick, dict) else None
    return MessengerMessage(page_id, psid, mid, text, found.kept, meta_time(event.get("timestamp")), platform,
                            payload=str(quick) if isinstance(quick, (str, int)) and not isinstance(quick, bool)
                            else None)


# Our own payloads (``services.intake.domain.followup``): other postbacks (Get Started, a
# persistent menu) stay ignored by name.
_OUR_PAYLOAD_PREFIX = "NTBCARE_"


def _our_postback(postback: Any) -> bool:
    return isinstance(postback, dict) and isinstance(postback.get("payload"), str) \
        and postback["payload"].startswith(_OUR_PAYLOAD_PREFIX)


def _postback(page_id: str, event: dict[str, Any], platform: str, account: str) -> MessengerMessage | Ignored:
    """A tap on one of our postback buttons: ``{sender, recipient, timestamp, postback: {mid,
    title, payload}}`` (Meta's ``messaging_postbacks``). Its title is the text the citizen sees."""
    raw_sender = event.get("sender")
    psid = _id(raw_sender.get("id") if isinstance(raw_sender, dict) else None, "sender.id")
    if psid in (page_id, account):
        return Ignored(page_id, "page_itself")
    postback = event["postback"]
    sent_at = meta_time(event.get("timestamp"))
    mid = postback.get("mid")
    mid = _id(mid, "postback.mid") if mid not in (None, "") else f"postback:{psid}:{int(sent_at.timestamp() * 1000)}"
    title = _text(postback.get("title"), "postback.title")
    return MessengerMessage(page_id, psid, mid, title, [], sent_at, platform, payload=postback["payload"],
                            postback=True)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _comment_media(value: dict[str, Any]) -> tuple[list[dict[str, str]], int]:
    """What a comment carries besides its text, and how many stickers: ``photo`` (a picture),
    ``video`` (a video or a GIF — Meta sends both in that key), or an ``attachment``/
    ``attachments`` object as the Graph API's comment node has it (``media.source``,
    ``media.image.src``, ``payload.url``, ``url``). A sticker is not evidence."""
    found: list[dict[str, str]] = []
    stickers = 0
    for key, kind in (("photo", "image"), ("video", "video")):
        url = value.get(key)
        if isinstance(url, str) and url:
            found.append({"type": kind, "url": url})
    raw = value.get("attachments", value.get("attachment"))
    if isinstance(raw, dict):
        raw = raw.get("data", [raw])
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("type") or "file")
        if "sticker" in kind:
            stickers += 1
            continue
        media = _object(item.get("media"))
        url = (media.get("source") or _object(media.get("image")).get("src")
               or _object(item.get("payload")).get("url") or item.get("url"))
        if isinstance(url, str) and url and not any(a["url"] == url for a in found):
            found.append({"type": "video" if ("video" in kind or "animated" in kind) else
                          "image" if ("photo" in kind or "image" in kind) else kind, "url": url})
    return found, stickers


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
    if not isinstance(verb, str) or not verb:
        raise NotUnderstood(f"comment verb {verb!r}")
    if verb not in COMMENT_VERBS:               # hide, unhide, block, unblock …
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
    attachments, stickers = _comment_media(value)
    if not text.strip() and not attachments:
        if stickers:
            return Ignored(page_id, "sticker_comment")
        raise NotUnderstood("comment without message")
    if author_id is None and verb == "add":
        raise NotUnderstood("comment without from.id")
    return CommentChange(page_id, verb, comment_id, post_id, parent_id, author_id, text, attachments,
                         meta_time(value.get("created_time")))


def _instagram_page(account_id: str, instagram_accounts: Mapping[str, str], accepted: set[str]) -> str | None:
    """The Page an Instagram professional account answers through: the configured mapping; an
    entry whose id is itself a served Page (some of Meta's examples show the Page id there); with
    nothing configured at all (a bare development run), the account id itself."""
    if account_id in instagram_accounts:
        return instagram_accounts[account_id]
    if account_id in accepted or (not accepted and not instagram_accounts):
        return account_id
    return None


def parse_body(body: Any, accepted_pages: Iterable[str] | None = None, *,
               instagram_accounts: Mapping[str, str] | None = None,
               standby: StandbyMode | None = None) -> ParsedBody:
    """Every item of every entry, in order. ``accepted_pages`` (empty/None = any Page): an item
    for another Page is a Problem, kept in quarantine until that Page is configured.
    ``instagram_accounts``: Instagram account id → its Page id. ``standby``: which Pages'
    ``standby[]`` messages are processed (all, by default)."""
    accepted = set(accepted_pages or ())
    accounts = dict(instagram_accounts or {})
    standby = standby or StandbyMode()
    parsed = ParsedBody()
    if not isinstance(body, dict):
        parsed.add(Problem("not a webhook body (a JSON object with object and entry[])", body), body)
        return parsed
    kind = body.get("object")
    if isinstance(kind, str) and kind and kind not in OBJECTS:
        # Meta's other webhook objects (user, permissions, application, whatsapp_business_account …):
        # this app serves Pages and Instagram accounts only.
        parsed.add(Ignored(None, f"object {kind!r}"), body)
        return parsed
    if not isinstance(kind, str) or kind not in OBJECTS or not isinstance(body.get("entry"), list):
        parsed.add(Problem("not a Page or Instagram webhook (object 'page'/'instagram' with entry[])", body),
                   body)
        return parsed
    platform = OBJECTS[kind]
    for entry in body["entry"]:
        if not isinstance(entry, dict) or entry.get("id") in (None, "") or isinstance(entry.get("id"), (dict, list)):
            one = {"object": kind, "entry": [entry]}
            parsed.add(Problem("entry without an id", one), one)
            continue
        entry_id = str(entry["id"])
        if platform == INSTAGRAM:
            page = _instagram_page(entry_id, accounts, accepted)
        else:
            page = entry_id
        lists = [(key, entry.get(key)) for key in ("messaging", "changes", "standby")]
        if not any(isinstance(items, list) for _key, items in lists):
            one = {"object": kind, "entry": [entry]}
            parsed.add(Problem("entry without messaging, standby or changes", one, page), one)
            continue
        for key, items in lists:
            if not isinstance(items, list):
                continue
            for item in items:
                one = {"object": kind, "entry": [{"id": entry["id"], "time": entry.get("time"), key: [item]}]}
                parsed.add(*_parse_item(platform, entry_id, page, key, item, one, accepted, standby))
    return parsed


def _parse_item(platform: str, entry_id: str, page: str | None, key: str, item: Any, one: Any,
                accepted: set[str], standby: StandbyMode) -> tuple[Item, Any]:
    if platform == INSTAGRAM and key == "changes":
        field_name = item.get("field") if isinstance(item, dict) else None
        return Ignored(page, f"instagram field {field_name!r}"), one   # comments, mentions …: not served
    if page is None:
        return Problem(f"instagram account {entry_id} is not configured (FACEBOOK_INSTAGRAM_ACCOUNTS)",
                       one, None), one
    if key == "standby" and not standby.processes(page):
        return Ignored(page, "standby"), one      # INTAKE_STANDBY_MODE: another app files them
    if accepted and page not in accepted:
        return Problem(f"page {page} is not configured (FACEBOOK_PAGES)", one, page), one
    try:
        if key == "changes":
            return parse_change(page, item), one
        return parse_messaging(page, item, platform, entry_id), one
    except NotUnderstood as error:
        return Problem(str(error), one, page), one
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
        # A shape this parser does not foresee must not stall the whole body in the inbox:
        # quarantine the one item, with the error, for a replay after a fix.
        return Problem(f"could not parse: {type(error).__name__}: {error}"[:500], one, page), one
