"""Delivery policy for citizen notifications: which Facebook channel may carry a message, and
what to do when the Graph API answers with an error.

Pure domain code: no I/O, no clock reads except through injected callables, no nameko or
SQLAlchemy. All datetimes are timezone-aware UTC; the Messenger window is measured from the time
Meta stamped on the citizen's own message, never from when we received or processed it.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Optional

from shared.core import graph_ids


# --- message kinds, channels, Send API vocabulary -------------------------------------------


class MessageKind:
    ACKNOWLEDGMENT = "acknowledgment"
    ROUTED = "routed"
    ANSWER = "answer"  # the agency's human-written answer: the only kind HUMAN_AGENT may carry
    RESOLVED = "resolved"
    DISMISSED = "dismissed"
    STATUS_REPLY = "status_reply"
    # The loop with the citizen (automated: RESPONSE inside 24 h only, never HUMAN_AGENT):
    # "Sudah selesai?" with Sudah/Belum quick replies, the rating question with 1–5, and the
    # replies to the citizen's answer (reopened, refused, thanks, a stale or unclear answer).
    FOLLOW_UP_QUESTION = "follow_up_question"
    RATING_QUESTION = "rating_question"
    LOOP_REPLY = "loop_reply"

    ALL = (ACKNOWLEDGMENT, ROUTED, ANSWER, RESOLVED, DISMISSED, STATUS_REPLY,
           FOLLOW_UP_QUESTION, RATING_QUESTION, LOOP_REPLY)

    # The public reply under a complaint's comment that gives its tracking code: a second
    # message of ComplaintFiled (next to the private acknowledgment), so it needs its own id.
    # Planned as an ACKNOWLEDGMENT restricted to the public comment channel.
    COMMENT_ACK = "comment_ack"
    # "Sudah selesai?" asked once more after NOTIFICATION_FOLLOW_UP_DAYS without an answer
    # (issue 19): a second message of the same ComplaintResolved, so it needs its own id.
    FOLLOW_UP_REMINDER = "follow_up_reminder"
    IDENTIFIABLE = ALL + (COMMENT_ACK, FOLLOW_UP_REMINDER)

    # Answers to something the citizen just did — filed a complaint, asked for its status,
    # answered "Sudah selesai?" — while they may be watching the conversation. When the sender
    # has a backlog (a flood of complaints) these go out before the later notices of other
    # complaints (routed, resolved, …), which no one is waiting for at that moment; within one
    # complaint the order recorded is always kept.
    FIRST_REPLIES = (ACKNOWLEDGMENT, STATUS_REPLY, LOOP_REPLY)


MESSENGER = "messenger"  # a Send API conversation with ``reply_to.psid`` (Messenger or Instagram)
COMMENT_PRIVATE = "comment_private"
COMMENT_PUBLIC = "comment_public"
CHANNELS = (MESSENGER, COMMENT_PRIVATE, COMMENT_PUBLIC)

# Which app the Send API conversation is in (``reply_to.platform``; absent means Messenger).
# Instagram Direct is answered through the same Send API (``POST /{page-id}/messages``) of the
# Page the Instagram professional account is linked to, to the Instagram-scoped id (IGSID), under
# the same windows (24 h RESPONSE; HUMAN_AGENT, the only tag Instagram accepts, up to 7 days) —
# SOURCES["instagram"]. It has no comment channels: Instagram comments are not served.
PLATFORM_MESSENGER = "messenger"
PLATFORM_INSTAGRAM = "instagram"
PLATFORMS = (PLATFORM_MESSENGER, PLATFORM_INSTAGRAM)
# The message tags this service may send on each platform: Instagram accepts HUMAN_AGENT only (the
# other tags are "not available for Instagram Messaging API", Meta's "Message tags" page).
TAGS_BY_PLATFORM: dict[str, tuple[str, ...]] = {PLATFORM_MESSENGER: ("HUMAN_AGENT",),
                                                PLATFORM_INSTAGRAM: ("HUMAN_AGENT",)}

RESPONSE = "RESPONSE"
MESSAGE_TAG = "MESSAGE_TAG"
HUMAN_AGENT = "HUMAN_AGENT"

STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
PRIVATE_REPLY_WINDOW = timedelta(days=7)

# Reasons recorded when a channel is not used or nothing may be sent. NO_REPLY_TO is the only one
# that is not "undeliverable": web/API/import complaints simply have no Facebook conversation.
NO_REPLY_TO = "no_reply_to"
INVALID_REPLY_TO = "invalid_reply_to"
MESSENGER_WINDOW_CLOSED = "messenger_window_closed"
OUTSIDE_24H_AUTOMATED = "outside_24h_automated"
PRIVATE_REPLY_USED = "private_reply_used"
PRIVATE_REPLY_WINDOW_CLOSED = "private_reply_window_closed"
# Meta refused the private reply to this comment (10903 and others): never tried again for it.
PRIVATE_REPLY_REFUSED = "private_reply_refused"
# A human's answer 24 h–7 d after the citizen's last message, while the app's Human Agent feature
# is not approved by Meta's App Review (``FACEBOOK_HUMAN_AGENT_APPROVED`` off): no tag is sent.
HUMAN_AGENT_NOT_APPROVED = "human_agent_not_approved"
# The citizen removed the comment: nothing more is replied under it in public.
COMMENT_REMOVED = "comment_removed"


def platform_of(reply_to: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The app of a ``reply_to``'s conversation: ``messenger`` unless it says ``instagram``; None
    for a platform this service cannot answer on."""
    value = (reply_to or {}).get("platform")
    platform = str(value) if value else PLATFORM_MESSENGER
    return platform if platform in PLATFORMS else None


@dataclass(frozen=True)
class Attempt:
    channel: str
    messaging_type: Optional[str]  # None for comment replies: they are not Send API conversations
    tag: Optional[str]
    recipient: dict[str, Any]  # {"id": psid} or {"comment_id": ...}; for comment_public the comment replied under
    # Retries of this attempt must not be scheduled after this instant (None: no window).
    deadline: Optional[datetime] = None
    # The app of a Send API conversation (MESSENGER channel): Messenger or Instagram Direct.
    platform: str = PLATFORM_MESSENGER


@dataclass(frozen=True)
class DeliveryPlan:
    page_id: Optional[str]
    attempts: tuple[Attempt, ...] = ()
    skipped_reason: Optional[str] = None
    # Why better channels were left out (e.g. the 24 h window had closed) even though a later
    # channel is still possible: "fall back and record why".
    fallback_reasons: tuple[str, ...] = ()

    @property
    def undeliverable(self) -> bool:
        """True when the message must be listed for the desk (nothing may be sent)."""
        return not self.attempts and self.skipped_reason not in (None, NO_REPLY_TO)


def _age(now: datetime, since: datetime) -> timedelta:
    _require_aware(now, "now")
    _require_aware(since, "since")
    # Meta's clock may run slightly ahead of ours; a message "from the future" is simply fresh.
    return max(now - since, timedelta(0))


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _messenger_attempt(psid: str, human_written: bool, last: Optional[datetime], now: datetime,
                       human_agent_approved: bool, platform: str = PLATFORM_MESSENGER) -> Attempt | str:
    """The Attempt of a Send API message to ``psid`` in a Messenger or Instagram Direct thread
    (the same windows on both), or the reason none may be made."""
    if last is None:
        return MESSENGER_WINDOW_CLOSED
    age = _age(now, last)
    if age <= STANDARD_WINDOW:
        return Attempt(MESSENGER, RESPONSE, None, {"id": psid}, last + STANDARD_WINDOW, platform)
    if age <= HUMAN_AGENT_WINDOW:
        if not human_written or HUMAN_AGENT not in TAGS_BY_PLATFORM[platform]:
            return OUTSIDE_24H_AUTOMATED
        if not human_agent_approved:
            # Meta refuses the tag to apps whose Human Agent feature has not passed App Review:
            # go straight to the fallback instead of spending a call on a sure refusal.
            return HUMAN_AGENT_NOT_APPROVED
        return Attempt(MESSENGER, MESSAGE_TAG, HUMAN_AGENT, {"id": psid}, last + HUMAN_AGENT_WINDOW, platform)
    return MESSENGER_WINDOW_CLOSED


def plan_delivery(
    reply_to: Optional[dict[str, Any]],
    kind: str,
    human_written: bool,
    last_citizen_message_at: Optional[datetime],
    comment_created_at: Optional[datetime],
    private_reply_used: bool,
    known_psid: Optional[str],
    now: datetime,
    *,
    human_agent_approved: bool = False,
    private_reply_closed: Optional[str] = None,
    comment_removed: bool = False,
) -> DeliveryPlan:
    """Ordered channels that may carry one message, best first.

    For a comment complaint, ``last_citizen_message_at`` is the citizen's last *Messenger* message
    (None if they never wrote there) and ``comment_created_at`` the comment's ``created_time``.
    What is remembered of the comment: ``private_reply_closed`` says why its private reply may
    not be tried again (Meta refused it), ``comment_removed`` that the citizen removed it (no
    public reply under it; a private reply or Messenger may still carry the message).
    ``human_agent_approved``: whether the app may use the ``HUMAN_AGENT`` tag (App Review).
    """
    if kind not in MessageKind.ALL:
        raise ValueError(f"unknown message kind {kind!r}")
    _require_aware(now, "now")
    if not reply_to:
        return DeliveryPlan(page_id=None, skipped_reason=NO_REPLY_TO)
    page_id = reply_to.get("page_id")
    psid = reply_to.get("psid")
    comment_id = reply_to.get("comment_id")
    platform = platform_of(reply_to)
    if platform == PLATFORM_INSTAGRAM:
        comment_id = None  # Instagram Direct: its thread only, never a comment channel
    if not page_id or not (psid or comment_id) or platform is None:
        return DeliveryPlan(page_id=page_id, skipped_reason=INVALID_REPLY_TO)
    # Both become Graph URL path segments (/{page-id}/messages, /{comment-id}/comments): a crafted
    # one (``../<page-id>/feed?x=``) would reach another object. Never sent.
    if not graph_ids.is_valid("page_id", page_id):
        return DeliveryPlan(page_id=None, skipped_reason=INVALID_REPLY_TO)
    if comment_id and not graph_ids.is_valid("comment_id", comment_id):
        return DeliveryPlan(page_id=page_id, skipped_reason=INVALID_REPLY_TO)

    if psid:
        found = _messenger_attempt(psid, human_written, last_citizen_message_at, now, human_agent_approved,
                                   platform)
        if isinstance(found, str):
            return DeliveryPlan(page_id=page_id, skipped_reason=found, fallback_reasons=(found,))
        return DeliveryPlan(page_id=page_id, attempts=(found,))

    attempts: list[Attempt] = []
    reasons: list[str] = []
    # Only a Messenger message written after the comment proves the citizen opened a
    # conversation; a PSID learnt from the private reply alone does not open the window.
    wrote_in_messenger = (
        last_citizen_message_at is not None
        and (comment_created_at is None or last_citizen_message_at > comment_created_at)
    )
    if known_psid and wrote_in_messenger:
        found = _messenger_attempt(known_psid, human_written, last_citizen_message_at, now,
                                   human_agent_approved)
        if isinstance(found, str):
            reasons.append(found)
        else:
            attempts.append(found)
    if private_reply_used:
        reasons.append(PRIVATE_REPLY_USED)
    elif private_reply_closed:
        reasons.append(private_reply_closed)
    elif comment_created_at is None or _age(now, comment_created_at) > PRIVATE_REPLY_WINDOW:
        reasons.append(PRIVATE_REPLY_WINDOW_CLOSED)
    else:
        attempts.append(
            Attempt(
                COMMENT_PRIVATE,
                None,
                None,
                {"comment_id": comment_id},
                comment_created_at + PRIVATE_REPLY_WINDOW,
            )
        )
    if comment_removed:
        reasons.append(COMMENT_REMOVED)
    else:
        attempts.append(Attempt(COMMENT_PUBLIC, None, None, {"comment_id": comment_id}, None))
    return DeliveryPlan(page_id=page_id, attempts=tuple(attempts), fallback_reasons=tuple(reasons))


# --- Meta's errors: one table -----------------------------------------------------------------
#
# Every Graph answer that is not a success is looked up in ERROR_TABLE (``error_rule``): Meta's
# code and subcode, what Meta says it means, and what the platform does about it. The graph client
# classifies with it, the sender's decision step (``delivery.after_error``) acts on it, and
# docs/notification.md shows it (``render_error_table``; a unit test keeps the two identical).
#
# Where the meanings come from (Meta's documentation, read 2026):
SOURCES: dict[str, str] = {
    # Messenger Platform, "Common Error Codes"
    "messenger": "https://developers.facebook.com/docs/messenger-platform/error-codes",
    # Graph API, "Handling Errors" (codes, and the authentication subcodes of 190)
    "graph": "https://developers.facebook.com/docs/graph-api/guides/error-handling",
    # Graph API, "Rate Limits": Pages API calls with a Page token fall under Business Use Case
    # (BUC) limits; X-Business-Use-Case-Usage / X-App-Usage / X-Page-Usage headers
    "rate": "https://developers.facebook.com/docs/graph-api/overview/rate-limiting",
    # Messenger Platform, "Private Replies": one message per comment, within 7 days
    "private": "https://developers.facebook.com/docs/messenger-platform/discovery/private-replies",
    # Not in Meta's public tables; Meta's answers as reported on the Graph SDKs' trackers
    "observed-10902": "https://github.com/facebookarchive/php-graph-sdk/issues/568",
    "observed-2018292": "https://github.com/restfb/restfb/issues/1165",
    # Instagram Messaging, "Send a Message" (through the linked Page's Send API: same windows,
    # HUMAN_AGENT the only tag, text under 1,000 characters / 1,000 bytes)
    "instagram": "https://developers.facebook.com/docs/messenger-platform/instagram/features/send-message/",
    # Instagram's outside-window subcode is not in Meta's public tables; Meta's answer ("This
    # message is sent outside of allowed window.", IGApiException, code 10, subcode 2534022) as
    # reported on a client's tracker
    "observed-2534022": "https://github.com/ComposioHQ/composio/issues/3604",
    # Messenger Platform, Send API "Error Codes" (code/subcode/message table: 100/2018001,
    # 10/2018065, 10/2018108, 200/1545041, 200/2018028; checked 2026-11 against this page and an
    # archived copy of Meta's earlier "Send API Reference" table, which has the same rows)
    "send-api": "https://developers.facebook.com/docs/messenger-platform/reference/send-api/error-codes",
    # 100/33 is not in Meta's public tables; Meta's answer ("Object ... does not exist, cannot be
    # loaded due to missing permissions, or does not support this operation") as quoted by a client
    "observed-100-33": "https://github.com/Shudesu/ig-harness-oss/releases/tag/v0.4.6",
}

# What kind of failure an answer is (``GraphApiError.kind``, and the first word of ``last_error``).
TEMPORARY = "temporary"
RATE_LIMITED = "rate_limited"
OUTSIDE_WINDOW = "outside_window"
PERMANENT = "permanent"          # for this request, this recipient or this comment
PERMISSION = "permission"        # the app or the Page lacks a permission or a review
INVALID_TOKEN = "invalid_token"
ERROR_KINDS = (TEMPORARY, RATE_LIMITED, OUTSIDE_WINDOW, PERMANENT, PERMISSION, INVALID_TOKEN)

# What the platform does.
RETRY = "retry"                  # retry with backoff (inside the channel's window)
SLOW_DOWN = "slow_down"          # pause (the Page's calls of that API, or the whole app) until …
NEXT_CHANNEL = "next_channel"    # change channel: the next allowed one, else undeliverable
FAIL_PERMANENT = "fail_permanent"  # the message ends, listed for the desk
HOLD_PAGE = "hold_page"          # hold every send for the Page and alert; nothing is dropped
ACTIONS = (RETRY, SLOW_DOWN, NEXT_CHANNEL, FAIL_PERMANENT, HOLD_PAGE)

# Whose calls a rate limit pauses.
PAGE_SCOPE = "page"   # the Page's calls of the same API: the Send API (Messenger, private replies)
                      # or the Pages API (public comment replies, under Business Use Case limits)
APP_SCOPE = "app"     # every call of the app, every Page

# Reasons carried by outcomes; also the keys of the desk texts in messages.yaml.
WINDOW_EXPIRED = "window_expired"
RETRIES_EXHAUSTED = "retries_exhausted"
PERSON_UNAVAILABLE = "person_unavailable"
BAD_REQUEST = "bad_request"
PERMANENT_ERROR = "permanent_error"
OUTSIDE_WINDOW_REASON = "outside_window"
INVALID_TOKEN_REASON = "invalid_token"
PERMISSION_MISSING = "permission_missing"
OBJECT_NOT_FOUND = "object_not_found"
DUPLICATE_POST = "duplicate_post"
RATE_LIMITED_REASON = "rate_limited"
POLICY_BLOCK = "policy_block"

# Codes that may well not be temporary (2 is also how Meta answers when the person blocked the
# Page): retried a few times only, then the next channel.
_FEW_RETRIES = 8
# Meta's "temporarily blocked for policies violations": an hour before the Page tries again.
_POLICY_BLOCK_PAUSE_SECONDS = 3600.0

# Rows without a Graph error code (what came back was not a Graph error body), by ``http``.
HTTP_NO_ANSWER = "no answer"
HTTP_5XX = "HTTP 5xx"
HTTP_429 = "HTTP 429"
HTTP_2XX = "HTTP 2xx"
HTTP_4XX = "HTTP 4xx"
# Rows for codes the table does not list.
OTHER_TRANSIENT = "other code, is_transient"
OTHER_CODE = "other code"


@dataclass(frozen=True)
class ErrorRule:
    """One row of Meta's error table: the answer, Meta's meaning, and what the platform does."""

    code: Optional[int]      # None: the answer had no Graph error code (see ``http``)
    subcode: Optional[int]   # None: any subcode without a row of its own
    meaning: str             # what Meta's documentation says it means
    kind: str
    action: str
    reason: str              # recorded on the message when it moves on or ends because of it
    source: str              # key of SOURCES
    max_attempts: Optional[int] = None       # RETRY: fewer attempts than the retry policy's
    min_pause_seconds: Optional[float] = None  # SLOW_DOWN: at least this long
    pause_scope: str = PAGE_SCOPE            # SLOW_DOWN: whose calls pause
    alert: bool = False      # someone must act (a token, a permission, App Review, a policy block)
    http: Optional[str] = None  # for rows without a code: which HTTP answer
    codes_up_to: Optional[int] = None  # the row also covers codes code..codes_up_to

    @property
    def label(self) -> str:
        if self.code is None:
            return self.http or "—"
        code = f"{self.code}–{self.codes_up_to}" if self.codes_up_to else str(self.code)
        return code if self.subcode is None else f"{code} / {self.subcode}"

    @property
    def closes_private_reply(self) -> bool:
        """On a private reply: Meta refused it for this comment, so the public reply is the way
        back and the private reply is not tried again for the comment. A refusal of the app's
        permissions says nothing about the comment (it is tried again once the permission is
        back)."""
        return self.action in (NEXT_CHANNEL, FAIL_PERMANENT) and self.kind != PERMISSION

    def on_private_reply(self) -> str:
        """What the platform does when the refused call was a private reply."""
        return NEXT_CHANNEL if self.action in (NEXT_CHANNEL, FAIL_PERMANENT) else self.action


def _like(kind: str, action: str, reason: str, **more: Any) -> ErrorRule:
    return ErrorRule(None, None, "", kind, action, reason, "graph", **more)


def _rule(code: Optional[int], subcode: Optional[int], meaning: str, *, source: str, like: ErrorRule,
          **changes: Any) -> ErrorRule:
    return replace(like, code=code, subcode=subcode, meaning=meaning, source=source, **changes)


_TOKEN = _like(INVALID_TOKEN, HOLD_PAGE, INVALID_TOKEN_REASON, alert=True)
_PERMISSION = _like(PERMISSION, NEXT_CHANNEL, PERMISSION_MISSING, alert=True)
_PAGE_LIMIT = _like(RATE_LIMITED, SLOW_DOWN, RATE_LIMITED_REASON)
_APP_LIMIT = _like(RATE_LIMITED, SLOW_DOWN, RATE_LIMITED_REASON, pause_scope=APP_SCOPE)
_FLAKY = _like(TEMPORARY, RETRY, RETRIES_EXHAUSTED)
_PERSON = _like(PERMANENT, NEXT_CHANNEL, PERSON_UNAVAILABLE)
_WINDOW = _like(OUTSIDE_WINDOW, NEXT_CHANNEL, OUTSIDE_WINDOW_REASON)
_REFUSED = _like(PERMANENT, NEXT_CHANNEL, PRIVATE_REPLY_REFUSED)
_FAILED = _like(PERMANENT, FAIL_PERMANENT, BAD_REQUEST)

ERROR_TABLE: tuple[ErrorRule, ...] = (
    # -- answers without a Graph error code
    _rule(None, None, "No answer: timeout or connection failure", http=HTTP_NO_ANSWER,
          source="graph", like=_FLAKY),
    _rule(None, None, "Server-side failure (Meta's HTML error page or an empty body)", http=HTTP_5XX,
          source="graph", like=_FLAKY),
    _rule(None, None, "Too many requests, without a Graph error body", http=HTTP_429, source="rate",
          like=_PAGE_LIMIT),
    _rule(None, None, "Accepted, but no message id or an unreadable body: the call may or may not "
          "have been carried out", http=HTTP_2XX, source="graph", like=_FLAKY),
    _rule(None, None, "Refused without a Graph error body", http=HTTP_4XX, source="graph",
          like=_FAILED),
    # -- Graph API and Messenger Platform codes
    _rule(1, None, "API Unknown: possibly a temporary issue due to downtime; if it recurs, the "
          "request is at fault", source="graph", max_attempts=_FEW_RETRIES, like=_FLAKY),
    _rule(1, 99, "An unknown error occurred; missing permissions can cause this (Advanced Access, "
          "Business Verification)", source="messenger", max_attempts=_FEW_RETRIES, like=_FLAKY),
    _rule(2, None, "API Service: temporary issue due to downtime, retry later; Messenger also "
          "answers it when the person has blocked the Page", source="messenger",
          max_attempts=_FEW_RETRIES, like=_FLAKY),
    _rule(3, None, "API Method: capability or permissions issue — the app lacks what this call "
          "needs", source="graph", like=_PERMISSION),
    _rule(4, None, "API Too Many Calls: the app's request limit reached (app-level throttling)",
          source="graph", like=_APP_LIMIT),
    _rule(4, 2018022, "Too many send requests (the Send API's own limit)", source="messenger",
          like=_PAGE_LIMIT),
    _rule(10, None, "API Permission Denied: a permission was not granted or has been removed",
          source="graph", like=_PERMISSION),
    # 10/2018065, 10/2018108: Meta's Send API error table (SOURCES["send-api"])
    _rule(10, 2018065, "This message is sent outside of allowed window: it needs a permission the app "
          "does not have (News Messaging; formerly page_messaging_subscriptions)", source="send-api",
          like=_WINDOW),
    _rule(10, 2018108, "This Person Cannot Receive Messages: this person isn't receiving messages from "
          "you right now", source="send-api", like=_PERSON),
    _rule(10, 2018278, "Message sent outside of the allowed window (24 h, 7 days with HUMAN_AGENT; "
          "7 days for a private reply)", source="messenger", like=_WINDOW),
    _rule(10, 2534022, "Instagram Direct: message sent outside of the allowed window (24 h, 7 days with "
          "HUMAN_AGENT)", source="observed-2534022", like=_WINDOW),
    _rule(17, None, "API User Too Many Calls: account-level throttling", source="graph", like=_APP_LIMIT),
    _rule(32, None, "Page request limit reached: Page-level throttling of the Pages API",
          source="rate", like=_PAGE_LIMIT),
    _rule(100, None, "Invalid parameter", source="messenger", like=_FAILED),
    # 100/33: not in Meta's public tables (Graph "Handling Errors" lists no subcode 33); Meta's
    # answer text as quoted in SOURCES["observed-100-33"]
    _rule(100, 33, "Unsupported request: the object (e.g. a deleted comment) does not exist, cannot "
          "be loaded due to missing permissions, or does not support this operation",
          source="observed-100-33", like=_FAILED, reason=OBJECT_NOT_FOUND),
    _rule(100, 2018001, "No matching user found", source="send-api", like=_PERSON),
    _rule(100, 2018022, "Too many send requests (the Send API's own limit)", source="messenger",
          like=_PAGE_LIMIT),
    _rule(100, 2018292, "Invalid comment_id parameter (a private reply to a comment Meta does not "
          "know)", source="observed-2018292", like=_FAILED),
    _rule(102, None, "API Session: the login status or access token has expired, been revoked or is "
          "invalid", source="graph", like=_TOKEN),
    _rule(190, None, "Access token has expired or is invalid: get a new access token", source="graph",
          like=_TOKEN),
    _rule(190, 458, "App not installed: the token's user has not logged in to the app", source="graph",
          like=_TOKEN),
    _rule(190, 459, "User checkpointed: the user must log in at facebook.com to fix their account",
          source="graph", like=_TOKEN),
    _rule(190, 460, "Password changed: the token was invalidated", source="graph", like=_TOKEN),
    _rule(190, 463, "Expired: the access token has expired", source="graph", like=_TOKEN),
    _rule(190, 464, "Unconfirmed user: the user must confirm their account", source="graph", like=_TOKEN),
    _rule(190, 467, "Invalid access token: expired, revoked or otherwise invalid", source="graph",
          like=_TOKEN),
    _rule(190, 492, "Invalid session: the token's user no longer has a role on the Page", source="graph",
          like=_TOKEN),
    _rule(200, None, "API Permission (200–299): a permission was not granted or has been removed",
          source="graph", codes_up_to=299, like=_PERMISSION),
    # Meta's Send API table lists 1545041 under code 200 (not 551)
    _rule(200, 1545041, "Message Not Sent: this person isn't receiving messages from you right now",
          source="send-api", like=_PERSON),
    _rule(200, 2018028, "Cannot message users who are not admins, developers or testers of the app "
          "until pages_messaging permission is reviewed and the app is live", source="send-api",
          like=_PERMISSION),
    _rule(341, None, "Application limit reached: temporary issue due to downtime or throttling",
          source="graph", like=_APP_LIMIT),
    _rule(368, None, "Temporarily blocked for policies violations: wait and retry", source="graph",
          like=_PAGE_LIMIT, reason=POLICY_BLOCK, min_pause_seconds=_POLICY_BLOCK_PAUSE_SECONDS, alert=True),
    _rule(506, None, "Duplicate post: the same text cannot be posted twice in a row", source="graph", like=_FAILED,
          reason=DUPLICATE_POST),
    _rule(551, None, "This person isn't available right now (messages from the Page turned off, "
          "account deactivated)", source="messenger", like=_PERSON),
    # 551/1545041: not in Meta's public tables (they list 1545041 under 200); seen in Meta's answers
    # ("(#551) This person isn't available right now."), as sandbox/meta.py reproduces them
    _rule(551, 1545041, "This person isn't available right now (subcode not in Meta's public tables "
          "under 551; they list 1545041 under 200)", source="messenger", like=_PERSON),
    _rule(613, None, "Calls to this API have exceeded the rate limit", source="messenger", like=_PAGE_LIMIT),
    # 80001/80002/80006: Meta's "Rate Limits" page (SOURCES["rate"]) puts Page-token Pages API calls
    # under Business Use Case limits; its per-type code table (80001 Pages, 80002 Instagram, 80006
    # Messenger) could not be retrieved for this check (2026-11): unconfirmed, from memory.
    _rule(80001, None, "Unconfirmed (Meta's per-type BUC code table not retrieved): too many calls to "
          "this Page, Business Use Case limit of the Pages API (comment replies)", source="rate",
          like=_PAGE_LIMIT),
    _rule(80002, None, "Unconfirmed (Meta's per-type BUC code table not retrieved): too many calls "
          "to this Instagram account, Business Use Case limit",
          source="rate", like=_PAGE_LIMIT),
    _rule(80006, None, "Unconfirmed (Meta's per-type BUC code table not retrieved): too many "
          "Messenger calls for this Page, Business Use Case limit of the Messenger Platform", source="rate",
          like=_PAGE_LIMIT),
    _rule(80000, None, "Other Business Use Case rate limits (80000–80099)", source="rate",
          codes_up_to=80099, like=_PAGE_LIMIT),
    _rule(1200, None, "Temporary send message failure: try again later", source="messenger", like=_FLAKY),
    _rule(10900, None, "Activity already replied to: the comment's one private reply was already sent",
          source="private", like=_WINDOW, reason=PRIVATE_REPLY_USED),  # the one-message "window" is spent
    _rule(10902, None, "This is not a replyable activity (no private reply to this comment)",
          source="observed-10902", like=_REFUSED),
    # 10903 is not in Meta's public error tables (not found on the Private Replies page or the
    # Messenger/Graph error tables, checked 2026-11); it is the refusal the design names for a single
    # comment ("a private reply can be refused for a single comment (error 10903 and others)").
    _rule(10903, None, "A private reply to this comment is refused (not in Meta's public tables; no "
          "reason given, e.g. the commenter cannot be messaged)", source="private", like=_REFUSED),
    # -- codes the table does not list
    _rule(None, None, "Any other code that Meta marks is_transient: true", http=OTHER_TRANSIENT,
          source="graph", max_attempts=_FEW_RETRIES, like=_FLAKY),
    _rule(None, None, "Any other code", http=OTHER_CODE, source="graph", like=_FAILED,
          reason=PERMANENT_ERROR),
)

_BY_CODE: dict[tuple[int, Optional[int]], ErrorRule] = {
    (rule.code, rule.subcode): rule for rule in ERROR_TABLE if rule.code is not None}
_RANGES: tuple[ErrorRule, ...] = tuple(rule for rule in ERROR_TABLE if rule.codes_up_to is not None)
_BY_HTTP: dict[str, ErrorRule] = {rule.http: rule for rule in ERROR_TABLE if rule.http is not None}


def error_rule(http_status: Optional[int], code: Optional[int], subcode: Optional[int],
               transient: Optional[bool] = None) -> ErrorRule:
    """The row of ``ERROR_TABLE`` for a Graph answer. Meta's code (and subcode) win over the HTTP
    status, since Meta sends most errors, even transient ones, with a 4xx status; a code the table
    does not list is retried when Meta marks it ``is_transient``."""
    if code is not None:
        found = _BY_CODE.get((code, subcode)) or _BY_CODE.get((code, None))
        if found is None:
            found = next((rule for rule in _RANGES if rule.code is not None and rule.codes_up_to is not None
                          and rule.code <= code <= rule.codes_up_to), None)
        if found is not None:
            return found
        if transient or (http_status is not None and http_status >= 500):
            return _BY_HTTP[OTHER_TRANSIENT]
        return _BY_HTTP[OTHER_CODE]
    if http_status is None:
        return _BY_HTTP[HTTP_NO_ANSWER]
    if http_status >= 500:
        return _BY_HTTP[HTTP_5XX]
    if http_status == 429:
        return _BY_HTTP[HTTP_429]
    if 200 <= http_status < 300:
        return _BY_HTTP[HTTP_2XX]
    return _BY_HTTP[HTTP_4XX]


# The generic row of each kind, for callers that know only the kind of a failure.
_KIND_RULES: dict[str, ErrorRule] = {
    TEMPORARY: _BY_HTTP[HTTP_NO_ANSWER],
    RATE_LIMITED: _BY_CODE[(613, None)],
    OUTSIDE_WINDOW: _BY_CODE[(10, 2018278)],
    PERMANENT: _BY_HTTP[OTHER_CODE],
    PERMISSION: _BY_CODE[(10, None)],
    INVALID_TOKEN: _BY_CODE[(190, None)],
}


def rule_of_kind(kind: str) -> ErrorRule:
    """The generic row of an error kind (e.g. a failure recorded with its kind only)."""
    try:
        return _KIND_RULES[kind]
    except KeyError:
        raise ValueError(f"unknown error kind {kind!r}") from None


_ACTION_WORDS = {RETRY: "retry with backoff", SLOW_DOWN: "slow down until", NEXT_CHANNEL: "change channel",
                 FAIL_PERMANENT: "permanent", HOLD_PAGE: "hold the Page and alert"}


def describe_action(rule: ErrorRule) -> str:
    """What the platform does, in the words of the table in docs/notification.md."""
    words = _ACTION_WORDS[rule.action]
    if rule.action == RETRY:
        attempts = f"at most {rule.max_attempts} attempts" if rule.max_attempts else "inside the window"
        words += f" ({attempts}), then change channel"
    elif rule.action == SLOW_DOWN:
        whose = "every Page (the app)" if rule.pause_scope == APP_SCOPE else "the Page's calls of this API"
        floor = f"at least {rule.min_pause_seconds / 60:.0f} min" if rule.min_pause_seconds else \
            "the usage headers' time, else backoff"
        words += f" {floor}: {whose}"
    elif rule.action == FAIL_PERMANENT:
        words += ": undeliverable, listed for the desk"
    elif rule.action == NEXT_CHANNEL:
        words += " (none left: undeliverable, listed for the desk)"
    if rule.alert and rule.action != HOLD_PAGE:
        words += "; alert"
    return words


def describe_private_reply(rule: ErrorRule) -> str:
    """What changes when the refused call was a private reply."""
    if rule.on_private_reply() == rule.action and not rule.closes_private_reply:
        return "same"
    if rule.closes_private_reply:
        return "public reply instead; never tried again for this comment"
    return "public reply instead"


def render_error_table() -> str:
    """ERROR_TABLE as the Markdown table of docs/notification.md."""
    lines = ["| code / subcode | Meta's meaning | kind | what the platform does | on a private reply | "
             "reason | source |",
             "|---|---|---|---|---|---|---|"]
    for rule in ERROR_TABLE:
        label = f"`{rule.label}`" if rule.code is not None else rule.label
        lines.append(f"| {label} | {rule.meaning} | `{rule.kind}` | {describe_action(rule)} | "
                     f"{describe_private_reply(rule)} | `{rule.reason}` | [{rule.source}]({SOURCES[rule.source]}) |")
    return "\n".join(lines) + "\n"


# --- rate-limit usage headers ----------------------------------------------------------------------
# Meta describes the caller's rate-limit usage in response headers (see SOURCES["rate"]):
# ``X-Business-Use-Case-Usage`` ({business-object-id: [{type, call_count, total_cputime, total_time,
# estimated_time_to_regain_access}]}, what calls with a Page token fall under), ``X-Page-Usage`` and
# ``X-App-Usage`` ({call_count, total_cputime, total_time}, percentages; the Page's may carry
# ``estimated_time_to_regain_access`` too). ``estimated_time_to_regain_access`` is in minutes.
USAGE_HEADERS = ("x-business-use-case-usage", "x-page-usage", "x-app-usage")
# A pause never runs longer than Meta's longest window (24 hours for Page-level limits).
MAX_PAUSE_SECONDS = 24 * 3600.0


def _parsed(value: Optional[str]) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _minutes(entry: Any) -> Optional[float]:
    if not isinstance(entry, dict):
        return None
    value = entry.get("estimated_time_to_regain_access")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        minutes = float(value)
    except ValueError:
        return None
    return minutes if minutes > 0 and minutes == minutes else None  # not NaN


def regain_access_seconds(headers: Optional[Mapping[str, str]], object_id: Optional[str] = None) -> Optional[float]:
    """How long Meta says access stays throttled, in seconds, from the usage headers of an answer
    (names in any case); None when they do not say. ``object_id`` (the Page) picks its own entries
    of ``X-Business-Use-Case-Usage`` when the header has them."""
    if not headers:
        return None
    lowered = {str(name).lower(): value for name, value in headers.items()}
    found: list[float] = []
    buc = _parsed(lowered.get("x-business-use-case-usage"))
    if isinstance(buc, dict):
        groups = [buc[object_id]] if object_id is not None and object_id in buc else list(buc.values())
        for group in groups:
            for entry in (group if isinstance(group, list) else [group]):
                minutes = _minutes(entry)
                if minutes is not None:
                    found.append(minutes)
    for name in ("x-page-usage", "x-app-usage"):
        minutes = _minutes(_parsed(lowered.get(name)))
        if minutes is not None:
            found.append(minutes)
    if not found:
        return None
    return min(max(found) * 60.0, MAX_PAUSE_SECONDS)


@dataclass(frozen=True)
class Outcome:
    action: str
    at: Optional[datetime] = None  # RETRY: when to send again
    pause_seconds: Optional[float] = None  # SLOW_DOWN: how long the Page's (or app's) calls pause
    reason: Optional[str] = None
    # For a failure that ends delivery: False when Facebook might have carried it later.
    permanent: bool = False
    pause_scope: str = PAGE_SCOPE


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter, bounded by the channel's window.

    ``max_attempts`` bounds retries where there is no window (public comment replies), so a long
    Graph outage ends in a desk listing rather than an endless loop.
    """

    base_seconds: float = 2.0
    cap_seconds: float = 300.0
    jitter: float = 0.2
    rng: Optional[random.Random] = None
    max_attempts: Optional[int] = 20
    # Meta asks for real back-off after a rate limit; a 2 s pause would just hit it again.
    rate_limit_min_pause_seconds: float = 10.0
    # Leave room for the request itself to reach Meta before the window shuts.
    deadline_margin_seconds: float = 5.0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.cap_seconds <= 0:
            raise ValueError("base_seconds and cap_seconds must be positive")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self._rng = self.rng if self.rng is not None else random.Random()

    def delay(self, attempt_number: int) -> float:
        """Seconds to wait after failed attempt ``attempt_number`` (1-based)."""
        if attempt_number < 1:
            raise ValueError("attempt_number starts at 1")
        # Cap the exponent so very large attempt numbers cannot overflow the float.
        raw = min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt_number - 1, 64))
        value = raw * (1.0 + self._rng.uniform(-self.jitter, self.jitter))
        if value > self.cap_seconds:
            # Reflect below the cap instead of clamping, so retries at the cap stay spread out.
            value = 2 * self.cap_seconds - value
        return value

    def give_up_at(self, deadline: Optional[datetime]) -> Optional[datetime]:
        """Latest instant a retry may be scheduled for, given the window's deadline."""
        if deadline is None:
            return None
        return deadline - timedelta(seconds=self.deadline_margin_seconds)

    def next_retry_at(self, attempt_number: int, now: datetime, deadline: Optional[datetime]) -> Optional[datetime]:
        """When to retry after failed attempt ``attempt_number``; None when no retry is allowed."""
        if self.max_attempts is not None and attempt_number >= self.max_attempts:
            return None
        at = now + timedelta(seconds=self.delay(attempt_number))
        limit = self.give_up_at(deadline)
        if limit is not None and at > limit:
            return None
        return at


def decide_on_error(
    error: ErrorRule | str,
    attempt_number: int,
    now: datetime,
    deadline: Optional[datetime],
    *,
    policy: Optional[RetryPolicy] = None,
    retry_after_seconds: Optional[float] = None,
) -> Outcome:
    """What to do after attempt ``attempt_number`` (1-based) failed with ``error`` (its row of
    ``ERROR_TABLE``, or just an error kind). ``retry_after_seconds``: how long Meta's usage headers
    say access stays throttled (``regain_access_seconds``)."""
    rule = rule_of_kind(error) if isinstance(error, str) else error
    policy = policy or RetryPolicy()
    _require_aware(now, "now")
    if rule.action == RETRY:
        limit = policy.max_attempts
        if rule.max_attempts is not None:
            limit = rule.max_attempts if limit is None else min(limit, rule.max_attempts)
        exhausted = limit is not None and attempt_number >= limit
        at = None if exhausted else policy.next_retry_at(attempt_number, now, deadline)
        if at is not None:
            return Outcome(RETRY, at=at)
        # Another channel (e.g. a public comment reply) may still work when this one cannot.
        return Outcome(NEXT_CHANNEL, reason=RETRIES_EXHAUSTED if exhausted else WINDOW_EXPIRED)
    if rule.action == SLOW_DOWN:
        if retry_after_seconds is not None and retry_after_seconds > 0:
            pause = float(retry_after_seconds)  # Meta said when access returns
        else:
            pause = max(policy.delay(attempt_number), policy.rate_limit_min_pause_seconds)
        if rule.min_pause_seconds is not None:
            pause = max(pause, rule.min_pause_seconds)
        pause = min(pause, MAX_PAUSE_SECONDS)
        limit_at = policy.give_up_at(deadline)
        if limit_at is not None and now + timedelta(seconds=pause) > limit_at:
            # The calls still pause (the limit is not this message's), but this message cannot wait.
            return Outcome(NEXT_CHANNEL, pause_seconds=pause, reason=WINDOW_EXPIRED, pause_scope=rule.pause_scope)
        return Outcome(SLOW_DOWN, pause_seconds=pause, pause_scope=rule.pause_scope)
    if rule.action == NEXT_CHANNEL:
        return Outcome(NEXT_CHANNEL, reason=rule.reason, permanent=True)
    if rule.action == FAIL_PERMANENT:
        return Outcome(FAIL_PERMANENT, reason=rule.reason, permanent=True)
    if rule.action == HOLD_PAGE:
        # Nothing is dropped: every send for the Page waits until a probe with the token succeeds.
        return Outcome(HOLD_PAGE, reason=rule.reason)
    raise ValueError(f"unknown action {rule.action!r}")


# --- sending rate ---------------------------------------------------------------------------


class RateLimiter:
    """Token bucket (GCRA form) that says how long to wait before the next call; never sleeps.

    One instance per Page sender. ``rate_per_second=0`` means no cap; ``penalise`` pauses all
    calls after a rate-limit answer from Meta.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ):
        if rate_per_second < 0:
            raise ValueError("rate_per_second must be >= 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate_per_second)
        self.burst = burst
        self._clock = clock
        self._tat = float("-inf")  # theoretical arrival time of the next conforming call
        self._blocked_until = float("-inf")

    def acquire(self) -> float:
        """Reserve one call; return the seconds the caller must wait before making it."""
        now = self._clock()
        if self.rate == 0:
            return max(0.0, self._blocked_until - now)
        interval = 1.0 / self.rate
        tolerance = (self.burst - 1) * interval
        earliest = max(now, self._blocked_until, self._tat - tolerance)
        self._tat = max(self._tat, earliest) + interval
        return earliest - now

    def penalise(self, seconds: float) -> None:
        """Hold every call for ``seconds`` from now (extends, never shortens, a running pause)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)


# --- message identity -----------------------------------------------------------------------

# Fixed forever: changing it would give already-sent messages new ids and send them again.
MESSAGE_NAMESPACE = uuid.UUID("6f1d8c2e-4b7a-5e39-9a0c-3d2b1e8f7a64")


def message_id_for(trigger_event_id: str | uuid.UUID, kind: str, part_index: int = 0) -> str:
    """Stable id of one outgoing message part, so a redelivered event never sends it twice.

    The channel is deliberately not part of the id: a fallback carries the same message.
    """
    if kind not in MessageKind.IDENTIFIABLE:
        raise ValueError(f"unknown message kind {kind!r}")
    if part_index < 0:
        raise ValueError("part_index must be >= 0")
    try:
        event = str(uuid.UUID(str(trigger_event_id)))  # one spelling per event id
    except ValueError:
        event = str(trigger_event_id)
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{event}/{kind}/{part_index}"))
