"""What real Pages and Instagram accounts send, copied *in shape* from Meta's documentation (and,
where Meta documents a shape only in prose, from open-source clients that record what Meta really
delivers). Only ids, times and texts are filled in; keys, nesting and value types are Meta's.

Sources (each builder names its own):
* messages / stickers — Messenger Platform changelog, "Sticker API for Messenger Platform"
  (https://developers.facebook.com/documentation/business-messaging/messenger-platform/changelog/):
  sticker messages carry a ``type: "sticker"`` attachment with ``sticker_id`` *alongside* the
  existing ``type: "image"`` one during the transition (until 2026-08-30), then only ``sticker``;
  the like button as Meta sends it (``message.sticker_id`` and ``payload.url`` + ``payload.sticker_id``
  typed ``image``): github.com/uniericuni/Facebook-Chatbot-Blueprint test/curl-tests/testThumbUpMessage.sh;
  the three sizes of the like sticker (369239263222822, 369239343222814, 369239383222810) as
  Messenger's own web client lists them.
* standby — https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events/standby
  and the standby echo of .../webhook-events/message-echoes ("Example 2").
* handover — .../webhook-events/messaging_handovers (pass_thread_control, take_thread_control,
  request_thread_control, app_roles).
* reactions — .../webhook-events/message-reactions; edits — .../webhook-events/message-edits;
  postbacks — .../webhook-events/messaging_postbacks; referrals — .../webhook-events/messaging_referrals;
  optins — .../webhook-events/messaging_optins; policy enforcement — .../webhook-events/messaging_policy_enforcement;
  reads — .../webhook-events/message-reads.
* Instagram Direct — https://developers.facebook.com/docs/instagram-platform/webhooks/examples/
  (``object: "instagram"``, ``entry.id`` = the Instagram professional account, ``messaging[]`` with
  the IGSID as ``sender.id`` and the account as ``recipient.id``; ``is_deleted`` for an unsent
  message, ``read.mid``, ``reaction``), https://developers.facebook.com/docs/instagram-messaging/webhooks
  and the "Instagram Post Shares" transition page (https://developers.facebook.com/docs/instagram-platform/webhooks/new).
* Page feed comments with a photo, a video or a GIF (``value.photo``; ``value.video`` for both
  videos and GIFs) — github.com/sarrtle/fbtools fbtools/official/models/listener/page/feeds/feed.py
  (models written from observed ``feed`` webhooks; Meta's Webhooks reference documents ``feed``
  only in prose: https://developers.facebook.com/docs/graph-api/webhooks/reference/page/#feed).
* other webhook objects — https://developers.facebook.com/docs/graph-api/webhooks/reference/user/
  (``object: "user"`` with ``changed_fields``).
"""
from __future__ import annotations

import time
import uuid

from tests.support.facebook import new_mid, now_ms

LIKE_SMALL, LIKE_MEDIUM, LIKE_LARGE = 369239263222822, 369239343222814, 369239383222810
A_STICKER = 767226160478561           # a first-party sticker (the changelog's example)
APP_ID, INBOX_APP_ID = "1517776481860111", "263902037430900"   # this app, Meta's Page Inbox


def _cdn(name: str) -> str:
    return f"https://scontent.xx.fbcdn.net/v/t39.1997-6/{name}.png?_nc_sid=ac3552&oh={uuid.uuid4().hex[:16]}"


def _event(page_id: str, psid: str, timestamp_ms: int | None = None, **body) -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": timestamp_ms or now_ms(), **body}


# -- stickers and the like button (messaging[] items) ----------------------------------------------

def like_button(page_id: str, psid: str, size: int = LIKE_SMALL, mid: str | None = None,
                timestamp_ms: int | None = None) -> dict:
    """The 👍 as Meta has always sent it: ``sticker_id`` on the message, an ``image`` attachment
    whose payload has both the sticker's picture URL and its ``sticker_id``."""
    return _event(page_id, psid, timestamp_ms, message={
        "mid": mid or new_mid(), "sticker_id": size,
        "attachments": [{"type": "image", "payload": {"url": _cdn("like"), "sticker_id": size}}]})


def sticker_transition(page_id: str, psid: str, sticker_id: int = A_STICKER, mid: str | None = None,
                       timestamp_ms: int | None = None) -> dict:
    """During the 90-day transition: both the ``image`` and the new ``sticker`` attachment."""
    url = _cdn(f"sticker{sticker_id}")
    return _event(page_id, psid, timestamp_ms, message={
        "mid": mid or new_mid(), "sticker_id": sticker_id,
        "attachments": [{"type": "image", "payload": {"url": url, "sticker_id": sticker_id}},
                        {"type": "sticker", "payload": {"url": url, "sticker_id": sticker_id}}]})


def sticker_only(page_id: str, psid: str, sticker_id: int = A_STICKER, mid: str | None = None) -> dict:
    """After the transition: only the ``sticker`` attachment."""
    return _event(page_id, psid, message={
        "mid": mid or new_mid(),
        "attachments": [{"type": "sticker", "payload": {"url": _cdn(f"s{sticker_id}"), "sticker_id": sticker_id}}]})


def text_with_like(page_id: str, psid: str, text: str, mid: str | None = None) -> dict:
    return _event(page_id, psid, message={
        "mid": mid or new_mid(), "text": text,
        "attachments": [{"type": "image", "payload": {"url": _cdn("like"), "sticker_id": LIKE_SMALL}}]})


# -- standby (Conversation Routing / handover: another app owns the thread) -----------------------

def standby_entry(page_id: str, *items) -> dict:
    return {"id": page_id, "time": now_ms(), "standby": list(items)}


def standby_echo(page_id: str, psid: str, text: str) -> dict:
    """What the owning app (or a human in the Page inbox) answered, echoed in standby."""
    return {"sender": {"id": page_id}, "recipient": {"id": psid}, "timestamp": now_ms(),
            "message": {"mid": new_mid(), "is_echo": True, "app_id": int(INBOX_APP_ID), "text": text}}


# -- handover protocol (messaging_handovers) --------------------------------------------------------

def pass_thread_control(page_id: str, psid: str) -> dict:
    return _event(page_id, psid, pass_thread_control={
        "previous_owner_app_id": INBOX_APP_ID, "new_owner_app_id": APP_ID,
        "metadata": "Additional content that the caller wants to set"})


def take_thread_control(page_id: str, psid: str) -> dict:
    return _event(page_id, psid, take_thread_control={
        "previous_owner_app_id": APP_ID, "new_owner_app_id": INBOX_APP_ID,
        "metadata": "additional content that the caller wants to set"})


def request_thread_control(page_id: str, psid: str) -> dict:
    return _event(page_id, psid, request_thread_control={
        "requested_owner_app_id": INBOX_APP_ID, "metadata": "additional content that the caller wants to set"})


def app_roles(page_id: str) -> dict:
    return {"recipient": {"id": page_id}, "timestamp": now_ms(), "app_roles": {APP_ID: ["primary_receiver"]}}


# -- other Messenger events ---------------------------------------------------------------------------

def reaction(page_id: str, psid: str, reacted_mid: str, kind: str = "like", emoji: str = "\U0001F44D",
             action: str = "react") -> dict:
    return _event(page_id, psid, reaction={"reaction": kind, "emoji": emoji, "action": action, "mid": reacted_mid})


def message_edit(page_id: str, psid: str, mid: str, text: str, num_edit: int = 1) -> dict:
    return _event(page_id, psid, message_edit={"mid": mid, "text": text, "num_edit": num_edit})


def postback(page_id: str, psid: str, payload: str = "GET_STARTED") -> dict:
    # Checked 2026-11 against https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events/messaging_postbacks
    # (postback.mid, .title, .payload, .referral{ref, source, type}); ``source`` is "SHORTLINK" for
    # an m.me link, as the messaging_referrals page gives it (that page's sample has a placeholder).
    return _event(page_id, psid, postback={
        "mid": new_mid(), "title": "Mulai", "payload": payload,
        "referral": {"ref": "aduan", "source": "SHORTLINK", "type": "OPEN_THREAD"}})


def quick_reply_tap(page_id: str, psid: str, title: str, payload: str, mid: str | None = None,
                    timestamp_ms: int | None = None) -> dict:
    """A tapped quick reply: a ``messages`` event whose ``message.text`` is the button's title and
    ``message.quick_reply.payload`` its payload — the example of
    https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/messages
    (``"quick_reply": {"payload": "<DEVELOPER_DEFINED_PAYLOAD>"}``)."""
    return _event(page_id, psid, timestamp_ms, message={
        "mid": mid or new_mid(), "text": title, "quick_reply": {"payload": payload}})


def button_postback(page_id: str, psid: str, title: str, payload: str, mid: str | None = None) -> dict:
    """A postback button tapped (messaging_postbacks: ``postback.mid``, ``.title``, ``.payload``),
    without the referral a Get Started tap may carry."""
    return _event(page_id, psid, postback={"mid": mid or new_mid(), "title": title, "payload": payload})


def referral(page_id: str, psid: str) -> dict:
    # The "m.me Link" example of https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events/messaging_referrals
    # (checked 2026-11): referral{ref, source: "SHORTLINK", type: "OPEN_THREAD"} beside sender/recipient.
    return _event(page_id, psid, referral={"ref": "aduan-jalan", "source": "SHORTLINK", "type": "OPEN_THREAD"})


def optin(page_id: str) -> dict:
    """A checkbox-plugin optin: no sender yet, only a ``user_ref``.

    Meta's current page (https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events/messaging_optins,
    checked 2026-11) shows only the notification_messages optin (with ``sender.id``) and the Send to
    Messenger ``optin.ref``; the checkbox-plugin shape (no ``sender``, ``optin.ref`` + ``optin.user_ref``)
    is from Meta's earlier version of that page, as github.com/howdyai/botkit/issues/834 reports it."""
    return {"recipient": {"id": page_id}, "timestamp": now_ms(),
            "optin": {"ref": "PASS_THROUGH_PARAM", "user_ref": "UNIQUE_REF_PARAM"}}


def policy_enforcement(page_id: str) -> dict:
    return {"recipient": {"id": page_id}, "timestamp": now_ms(),
            "policy_enforcement": {"action": "block", "reason": "The bot violated our Platform Policies."}}


# -- Instagram Direct (object "instagram") --------------------------------------------------------------

def instagram_body(*entries) -> dict:
    return {"object": "instagram", "entry": list(entries)}


def instagram_entry(account_id: str, *items) -> dict:
    return {"id": account_id, "time": now_ms(), "messaging": list(items)}


def instagram_text(account_id: str, igsid: str, text: str, mid: str | None = None,
                   timestamp_ms: int | None = None) -> dict:
    return {"sender": {"id": igsid}, "recipient": {"id": account_id}, "timestamp": timestamp_ms or now_ms(),
            "message": {"mid": mid or f"aWdfZAG1faXRlbTox{uuid.uuid4().hex}", "text": text}}


def instagram_image(account_id: str, igsid: str, url: str | None = None) -> dict:
    url = url or f"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id={uuid.uuid4().int % 10**17}&signature=x"
    return {"sender": {"id": igsid}, "recipient": {"id": account_id}, "timestamp": now_ms(),
            "message": {"mid": f"aWdfZAG1faXRlbTox{uuid.uuid4().hex}",
                        "attachments": [{"type": "image", "payload": {"url": url}}]}}


def instagram_heart(account_id: str, igsid: str) -> dict:
    return {"sender": {"id": igsid}, "recipient": {"id": account_id}, "timestamp": now_ms(),
            "message": {"mid": f"aWdfZAG1faXRlbTox{uuid.uuid4().hex}", "attachments": [{"type": "like_heart"}]}}


def instagram_unsend(account_id: str, igsid: str, mid: str) -> dict:
    return {"sender": {"id": igsid}, "recipient": {"id": account_id}, "timestamp": now_ms(),
            "message": {"mid": mid, "is_deleted": True}}


def instagram_read(account_id: str, igsid: str, mid: str) -> dict:
    return {"sender": {"id": igsid}, "recipient": {"id": account_id}, "timestamp": now_ms(), "read": {"mid": mid}}


def instagram_reaction(account_id: str, igsid: str, mid: str) -> dict:
    return {"sender": {"id": igsid}, "recipient": {"id": account_id}, "timestamp": now_ms(),
            "reaction": {"mid": mid, "action": "react", "reaction": "love", "emoji": "\u2764\ufe0f"}}


def instagram_comment_entry(account_id: str, text: str) -> dict:
    """An Instagram comment (field ``comments``): not served by intake."""
    return {"id": account_id, "time": int(time.time()), "changes": [{"field": "comments", "value": {
        "id": str(uuid.uuid4().int % 10**17), "from": {"id": "6000000000001", "username": "warga.ntb"},
        "text": text, "media": {"id": "18000000000000001", "media_product_type": "FEED"}}}]}


# -- Page feed comments with media ----------------------------------------------------------------------

def _comment_value(page_id: str, verb: str, post_id: str | None, comment_id: str | None,
                   author_id: str, message: str | None, status_type: str) -> dict:
    post_id = post_id or f"{page_id}_{uuid.uuid4().int % 10**15}"
    comment_id = comment_id or f"{post_id.split('_')[-1]}_{uuid.uuid4().int % 10**15}"
    value = {"from": {"id": author_id, "name": "Warga NTB"},
             "post": {"status_type": status_type, "is_published": True, "updated_time": "2026-05-01T03:04:05+0000",
                      "permalink_url": f"https://www.facebook.com/{post_id}", "promotion_status": "inactive",
                      "id": post_id},
             "post_id": post_id, "comment_id": comment_id, "created_time": int(time.time()), "item": "comment",
             "parent_id": post_id, "verb": verb}
    if message is not None:
        value["message"] = message
    return value


def video_comment(page_id: str, url: str | None = None, message: str | None = None, author_id: str = "5550101",
                  post_id: str | None = None, comment_id: str | None = None) -> dict:
    """A comment that is a video (or a GIF: Meta sends both in ``value.video``), no text."""
    value = _comment_value(page_id, "add", post_id, comment_id, author_id, message, "added_video")
    value["video"] = url or f"https://video.xx.fbcdn.net/v/t42.3356-2/{uuid.uuid4().hex}.mp4"
    return {"field": "feed", "value": value}


def gif_comment(page_id: str, author_id: str = "5550102") -> dict:
    value = _comment_value(page_id, "add", None, None, author_id, None, "mobile_status_update")
    value["video"] = f"https://video.xx.fbcdn.net/v/t42.3356-2/{uuid.uuid4().hex}.gif"
    return {"field": "feed", "value": value}


def photo_comment(page_id: str, message: str | None = None, author_id: str = "5550103") -> dict:
    value = _comment_value(page_id, "add", None, None, author_id, message, "added_photos")
    value["photo"] = f"https://scontent.xx.fbcdn.net/v/t39.30808-6/{uuid.uuid4().hex}.jpg"
    return {"field": "feed", "value": value}


def comment_with_verb(page_id: str, verb: str, author_id: str = "5550104") -> dict:
    return {"field": "feed", "value": _comment_value(page_id, verb, None, None, author_id, "Komentar",
                                                     "mobile_status_update")}


# -- other webhook objects ----------------------------------------------------------------------------

def user_object_body() -> dict:
    return {"object": "user", "entry": [{"uid": "1000000001", "id": "1000000001", "time": int(time.time()),
                                         "changed_fields": ["email"]}]}


def permissions_object_body() -> dict:
    return {"object": "permissions", "entry": [{"id": "1000000001", "time": int(time.time()),
                                                "changed_fields": ["pages_messaging"]}]}
