"""The sender's decisions, pure: for one pending message, what to send on which channel (with which
``messaging_type``/``tag``) or why nothing may be sent; and after Meta answered, what becomes of
the message — sent, retried at a time, tried again on the next channel, failed for good, or
waiting while its Page's token is refused.

Meta's rules themselves (windows, channels, error kinds, backoff) are ``policy``'s; this module
applies them to one recorded message and the complaint's record. No I/O, no clock: the caller
passes ``now`` and the facts it read (``Facts``), and writes what the decision says
(``adapters/deliveries.py``); the loop that calls Meta is ``adapters/sender.py``.

One message goes through::

    plan = plan_for(message, complaint, now, comment, human_agent_approved)  # the channels allowed now
    step = decide_send(message, plan, facts)          # Send | Fold | Finish
    # Send: the caller calls Meta, then
    after_success(message, step, graph_id, recipient_id)      # Sent
    after_error(message, step, error, now, retry_policy)      # RetryLater | NextChannel | Finish | HoldPage
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional, Union

from services.notification.domain.loop import quick_replies_for
from services.notification.domain.policy import (
    APP_SCOPE,
    COMMENT_PRIVATE,
    COMMENT_PUBLIC,
    FAIL_PERMANENT,
    HOLD_PAGE,
    NEXT_CHANNEL,
    OUTSIDE_WINDOW,
    PAGE_SCOPE,
    PLATFORM_MESSENGER,
    PRIVATE_REPLY_REFUSED,
    PRIVATE_REPLY_USED,
    PRIVATE_REPLY_WINDOW_CLOSED,
    RESPONSE,
    RETRIES_EXHAUSTED,
    RETRY,
    SLOW_DOWN,
    WINDOW_EXPIRED,
    Attempt,
    DeliveryPlan,
    ErrorRule,
    MessageKind,
    RetryPolicy,
    decide_on_error,
    error_rule,
    plan_delivery,
    regain_access_seconds,
)

# Who a message is for: the complaint's citizen, reached as the complaint's record says at send
# time; or whoever sent the message that asked (a status request), reached where they asked.
TO_COMPLAINT = "complaint"
TO_ASKER = "asker"

# Where a message ends (``outgoing_messages.state``).
SENT = "sent"
FAILED = "failed"              # nothing to do for the desk
UNDELIVERABLE = "undeliverable"  # listed for the desk
FOLDED = "folded"              # a later part merged into the public reply already sent

PAGE_NOT_CONFIGURED = "page_not_configured"
UNKNOWN = "unknown"
# Failures after which Facebook might still have carried the message later.
NOT_PERMANENT = (RETRIES_EXHAUSTED, WINDOW_EXPIRED)


# -- what the decision reads ----------------------------------------------------------------------

@dataclass(frozen=True)
class PendingMessage:
    """One recorded outgoing message part, as the sender finds it (``outgoing_messages``)."""

    message_id: str
    trigger_event_id: str
    complaint_id: str
    kind: str
    audience: str = TO_COMPLAINT
    part_index: int = 0
    text: str = ""
    public_text: Optional[str] = None
    human_written: bool = False
    # For the asker: where they asked and when (Meta's time of their message).
    reply_to: Optional[Mapping[str, Any]] = None
    last_message_at: Optional[datetime] = None
    excluded_channels: frozenset[str] = frozenset()
    attempts: int = 0
    # Why an earlier channel was given up (kept when no channel is left), and Meta's code then.
    reason: Optional[str] = None
    code: Optional[int] = None


@dataclass(frozen=True)
class ComplaintRecord:
    """Notification's record of the complaint, as it stands when the message is sent."""

    reply_to: Optional[Mapping[str, Any]] = None
    last_citizen_message_at: Optional[datetime] = None  # the citizen's last Messenger message
    comment_created_at: Optional[datetime] = None
    private_reply_used: bool = False
    known_psid: Optional[str] = None


@dataclass(frozen=True)
class CommentState:
    """What is remembered of one comment (the complaint's, or the one an asker wrote): why its
    private reply may not be tried again (Meta refused it), and whether the citizen removed it."""

    private_reply_closed: Optional[str] = None
    removed: bool = False


@dataclass(frozen=True)
class Facts:
    """What the decision asks the database and the configuration, beyond the message's plan.

    ``confidential_now`` matters only when ``asks_confidentiality`` said so, and
    ``public_reply_sent`` only when ``asks_public_reply_sent`` did."""

    confidential_now: bool = False
    public_reply_sent: bool = False  # an earlier part of this message went out as the public reply
    page_configured: bool = True     # a token is configured for the plan's Page


@dataclass(frozen=True)
class CallError:
    """A failed Graph call as the decision needs it: Meta's code and subcode (None when the answer
    had no Graph error body), the HTTP status (None: no answer at all), Meta's ``is_transient`` and
    the rate-limit usage headers of the answer (``policy.USAGE_HEADERS``)."""

    code: Optional[int] = None
    subcode: Optional[int] = None
    http_status: Optional[int] = None
    transient: Optional[bool] = None
    usage: Optional[Mapping[str, str]] = None

    @property
    def rule(self) -> ErrorRule:
        """Its row of Meta's error table (``policy.ERROR_TABLE``)."""
        return error_rule(self.http_status, self.code, self.subcode, self.transient)

    @property
    def kind(self) -> str:
        return self.rule.kind


# -- what it decides --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Send:
    """Call Meta: ``text`` on ``attempt``'s channel for ``page_id``."""

    page_id: str
    attempt: Attempt
    text: str
    messaging_type: Optional[str]  # what the Send API is given (private replies: RESPONSE)
    fallback_reasons: tuple[str, ...] = ()
    # Messenger quick replies on the message (the loop's questions; ``composer.quick_replies_for``).
    quick_replies: tuple[dict[str, str], ...] = ()

    @property
    def channel(self) -> str:
        return self.attempt.channel

    @property
    def tag(self) -> Optional[str]:
        return self.attempt.tag

    @property
    def recipient(self) -> Mapping[str, Any]:
        return self.attempt.recipient


@dataclass(frozen=True)
class FailedCall:
    """What is noted on the message about a refused call."""

    last_error: str
    channel: str
    messaging_type: Optional[str]  # the attempt's own (None for comment replies)
    tag: Optional[str]


@dataclass(frozen=True)
class Fold:
    """A later part of a message whose public reply already went out: nothing more to send."""


@dataclass(frozen=True)
class Finish:
    """The message ends unsent: ``failed`` or ``undeliverable`` (listed for the desk), with
    ``CitizenNotificationFailed``."""

    state: str
    reason: str
    code: Optional[int]
    permanent: bool
    fallback_reasons: tuple[str, ...] = ()
    failed_call: Optional[FailedCall] = None
    action: str = FAIL_PERMANENT

    @property
    def listed_for_desk(self) -> bool:
        return self.state == UNDELIVERABLE


@dataclass(frozen=True)
class Sent:
    """Meta accepted the message: mark it sent and append ``CitizenNotified``."""

    channel: str
    messaging_type: Optional[str]
    tag: Optional[str]
    graph_message_id: str
    recipient_psid: Optional[str]
    attempts: int
    fallback_reasons: tuple[str, ...]
    page_id: str                      # a success proves the Page's token works: its hold ends
    private_reply_used: bool = False  # the complaint's one private reply is spent …
    known_psid: Optional[str] = None  # … and Meta told us the citizen's PSID
    replied_comment_id: Optional[str] = None  # a private reply: the comment whose reply it spent
    platform: str = PLATFORM_MESSENGER  # the app of a Send API conversation (Instagram Direct or not)


@dataclass(frozen=True)
class RetryLater:
    """Send again at ``at`` on the same plan (``slow_down``: the whole Page pauses too)."""

    action: str  # RETRY or SLOW_DOWN
    at: datetime
    attempts: int
    failed_call: FailedCall
    pause_seconds: Optional[float] = None
    pause_scope: str = PAGE_SCOPE  # whose calls pause: the Page's calls of this API, or the app's


@dataclass(frozen=True)
class NextChannel:
    """This channel cannot carry the message: plan again at ``at`` without it (with none left,
    the message ends with ``reason``)."""

    at: datetime
    attempts: int
    excluded_channels: tuple[str, ...]
    reason: Optional[str]
    code: Optional[int]
    failed_call: FailedCall
    pause_seconds: Optional[float] = None
    pause_scope: str = PAGE_SCOPE
    # Meta refused a private reply for this comment: why it is never tried again for the comment
    # (``private_reply_used`` after 10900, ``private_reply_window_closed``, ``private_reply_refused``).
    private_reply_closed: Optional[str] = None
    comment_id: Optional[str] = None
    action: str = NEXT_CHANNEL

    @property
    def private_reply_used(self) -> bool:
        """Meta said the comment's one private reply was already sent (10900)."""
        return self.private_reply_closed == PRIVATE_REPLY_USED


@dataclass(frozen=True)
class HoldPage:
    """Meta refused the Page's token: nothing is dropped, nothing counts as an attempt; every
    send for the Page waits until a probe with the token succeeds."""

    page_id: str
    reason: Optional[str]
    failed_call: FailedCall
    action: str = HOLD_PAGE


BeforeSend = Union[Send, Fold, Finish]
AfterError = Union[RetryLater, NextChannel, Finish, HoldPage]


# -- before the call ------------------------------------------------------------------------------

def comment_of(message: PendingMessage, complaint: Optional[ComplaintRecord]) -> Optional[str]:
    """The comment the message may be replied under (privately or publicly), if any: the
    complaint's comment, or the one the asker wrote."""
    reply_to = (complaint.reply_to if complaint else None) if message.audience == TO_COMPLAINT \
        else message.reply_to
    comment_id = (reply_to or {}).get("comment_id")
    return str(comment_id) if comment_id else None


def plan_for(message: PendingMessage, complaint: Optional[ComplaintRecord], now: datetime,
             comment: Optional[CommentState] = None, human_agent_approved: bool = False) -> DeliveryPlan:
    """The channels Meta allows for the message now: for the complaint's citizen from the
    complaint's current record (a citizen who wrote in Messenger meanwhile is answered there),
    for an asker from where and when they asked. ``comment``: what is remembered of the comment
    (``comment_of``); ``human_agent_approved``: whether the app may use the HUMAN_AGENT tag."""
    state = comment or CommentState()
    if message.audience == TO_COMPLAINT:
        record = complaint or ComplaintRecord()
        return plan_delivery(dict(record.reply_to) if record.reply_to else None, message.kind,
                             message.human_written, record.last_citizen_message_at,
                             record.comment_created_at, record.private_reply_used, record.known_psid, now,
                             human_agent_approved=human_agent_approved,
                             private_reply_closed=state.private_reply_closed, comment_removed=state.removed)
    reply_to = dict(message.reply_to) if message.reply_to else None
    from_comment = bool(reply_to and reply_to.get("comment_id"))
    asked_at = message.last_message_at
    return plan_delivery(reply_to, message.kind, message.human_written,
                         None if from_comment else asked_at, asked_at if from_comment else None,
                         False, None, now, human_agent_approved=human_agent_approved,
                         private_reply_closed=state.private_reply_closed, comment_removed=state.removed)


def usable_attempts(message: PendingMessage, plan: DeliveryPlan) -> tuple[Attempt, ...]:
    """The plan's channels without those this message already gave up on."""
    return tuple(attempt for attempt in plan.attempts if attempt.channel not in message.excluded_channels)


def asks_confidentiality(message: PendingMessage, attempts: tuple[Attempt, ...]) -> bool:
    """Whether a public reply is possible for an update of the complaint — then whether the
    complaint is confidential *now* decides (the comment's acknowledgment only gives the
    tracking code, so it stays)."""
    return (message.audience == TO_COMPLAINT and message.kind != MessageKind.ACKNOWLEDGMENT
            and any(attempt.channel == COMMENT_PUBLIC for attempt in attempts))


def asks_public_reply_sent(message: PendingMessage, attempts: tuple[Attempt, ...]) -> bool:
    """Whether a later part may be folded into an earlier part's public reply."""
    return message.part_index > 0 and any(attempt.channel == COMMENT_PUBLIC for attempt in attempts)


def decide_send(message: PendingMessage, plan: DeliveryPlan, facts: Facts = Facts()) -> BeforeSend:
    """What to do with the message now: send it on the first usable channel, fold it into the
    public reply already sent, or end it unsent (no channel left, no Page token, no text)."""
    attempts = usable_attempts(message, plan)
    if facts.confidential_now and asks_confidentiality(message, attempts):
        # Composed before the complaint became confidential (a message can wait long, e.g.
        # behind a held Page): no update under the comment now, only the private channels.
        attempts = tuple(attempt for attempt in attempts if attempt.channel != COMMENT_PUBLIC)
    if not attempts:
        reason = message.reason or plan.skipped_reason or \
            (plan.fallback_reasons[-1] if plan.fallback_reasons else UNKNOWN)
        # The private acknowledgment of a comment complaint: the public reply carries the
        # tracking code, so the desk has nothing to do about it.
        covered = message.public_text is None and message.audience == TO_COMPLAINT and \
            COMMENT_PUBLIC in message.excluded_channels and message.kind == MessageKind.ACKNOWLEDGMENT
        # The loop's questions are asked only where Meta's windows allow; otherwise they are
        # skipped (recorded as failed with the reason), never a task for the desk.
        covered = covered or message.kind in (MessageKind.FOLLOW_UP_QUESTION, MessageKind.RATING_QUESTION)
        return Finish(FAILED if covered else UNDELIVERABLE, reason, message.code,
                      permanent=reason not in NOT_PERMANENT, fallback_reasons=tuple(plan.fallback_reasons))
    attempt = attempts[0]
    if attempt.channel == COMMENT_PUBLIC:
        if message.part_index > 0 and facts.public_reply_sent:
            return Fold()
        text = message.public_text
    else:
        text = message.text
    page_configured = facts.page_configured and bool(plan.page_id)
    if not page_configured or not text or plan.page_id is None:
        return Finish(UNDELIVERABLE, PAGE_NOT_CONFIGURED if not page_configured else UNKNOWN, None,
                      permanent=True, fallback_reasons=tuple(plan.fallback_reasons))
    messaging_type = attempt.messaging_type or (RESPONSE if attempt.channel == COMMENT_PRIVATE else None)
    quick = quick_replies_for(message.kind, message.complaint_id) \
        if attempt.channel == "messenger" and message.audience == TO_COMPLAINT else ()
    return Send(plan.page_id, attempt, text, messaging_type, tuple(plan.fallback_reasons), quick)


# -- after the call -------------------------------------------------------------------------------

def after_success(message: PendingMessage, send: Send, graph_message_id: str,
                  recipient_id: Optional[str] = None) -> Sent:
    """Meta accepted: the message is sent. A private reply spends the complaint's one private
    reply, and the PSID Meta answered with is where the conversation can continue."""
    psid = recipient_id if send.channel == COMMENT_PRIVATE else None
    spends_private_reply = send.channel == COMMENT_PRIVATE and message.audience == TO_COMPLAINT
    return Sent(channel=send.channel, messaging_type=send.messaging_type, tag=send.tag,
                graph_message_id=graph_message_id, recipient_psid=psid, attempts=message.attempts + 1,
                fallback_reasons=send.fallback_reasons, page_id=send.page_id,
                private_reply_used=spends_private_reply,
                known_psid=psid if spends_private_reply and psid else None,
                replied_comment_id=str(send.recipient.get("comment_id")) if send.channel == COMMENT_PRIVATE
                else None, platform=send.attempt.platform)


def _closed_by(rule: ErrorRule) -> str:
    """Why a comment's private reply is never tried again after Meta refused it with ``rule``."""
    if rule.reason == PRIVATE_REPLY_USED:
        return PRIVATE_REPLY_USED
    if rule.kind == OUTSIDE_WINDOW:
        return PRIVATE_REPLY_WINDOW_CLOSED
    return PRIVATE_REPLY_REFUSED


def after_error(message: PendingMessage, send: Send, error: CallError, now: datetime,
                retry: Optional[RetryPolicy] = None) -> AfterError:
    """Meta refused (or did not answer): the error's row of Meta's error table
    (``policy.ERROR_TABLE``), through ``policy.decide_on_error`` for this attempt, as what becomes
    of the message. A refused private reply falls back to the next channel (the public reply)
    and is remembered for its comment; a rate limit pauses for as long as Meta's usage headers
    say."""
    attempt = send.attempt
    rule = error.rule
    private = attempt.channel == COMMENT_PRIVATE
    if private and rule.action == FAIL_PERMANENT:
        rule = replace(rule, action=rule.on_private_reply())
    outcome = decide_on_error(rule, message.attempts + 1, now, attempt.deadline, policy=retry,
                              retry_after_seconds=regain_access_seconds(error.usage, send.page_id))
    failed = FailedCall(f"{rule.kind}:{error.code}/{error.subcode}"[:200], attempt.channel,
                        attempt.messaging_type, attempt.tag)
    if outcome.action == HOLD_PAGE:
        return HoldPage(send.page_id, outcome.reason, failed)
    if outcome.action == FAIL_PERMANENT:
        return Finish(UNDELIVERABLE, outcome.reason or UNKNOWN, error.code, permanent=True,
                      fallback_reasons=send.fallback_reasons, failed_call=failed)
    scope = outcome.pause_scope if outcome.pause_scope == APP_SCOPE else PAGE_SCOPE
    if outcome.action == RETRY and outcome.at is not None:
        return RetryLater(RETRY, outcome.at, message.attempts + 1, failed)
    if outcome.action == SLOW_DOWN and outcome.pause_seconds is not None:
        return RetryLater(SLOW_DOWN, now + timedelta(seconds=outcome.pause_seconds), message.attempts + 1,
                          failed, pause_seconds=outcome.pause_seconds, pause_scope=scope)
    if outcome.action == NEXT_CHANNEL:
        # Meta refused the private reply for this comment (not merely failed to answer): the public
        # reply is the way back, and the private reply is never tried again for the comment.
        refused = private and outcome.reason not in (RETRIES_EXHAUSTED, WINDOW_EXPIRED) and \
            rule.closes_private_reply
        closed = _closed_by(rule) if refused else None
        reason = outcome.reason
        if closed == PRIVATE_REPLY_WINDOW_CLOSED:
            reason = PRIVATE_REPLY_WINDOW_CLOSED
        # Re-planned at once without this channel; with none left it becomes undeliverable.
        return NextChannel(now, message.attempts + 1,
                           tuple(sorted(message.excluded_channels | {attempt.channel})),
                           reason, error.code, failed, pause_seconds=outcome.pause_seconds, pause_scope=scope,
                           private_reply_closed=closed,
                           comment_id=str(attempt.recipient.get("comment_id")) if closed else None)
    raise ValueError(f"no delivery step for {outcome!r}")


# -- events ---------------------------------------------------------------------------------------

def notified_event(message: PendingMessage, sent: Sent) -> dict[str, Any]:
    """The data of ``CitizenNotified``."""
    data: dict[str, Any] = {"trigger_event_id": message.trigger_event_id, "channel": sent.channel,
                            "messaging_type": sent.messaging_type, "tag": sent.tag,
                            "graph_message_id": sent.graph_message_id, "message_id": message.message_id}
    if sent.recipient_psid:
        data["recipient_psid"] = sent.recipient_psid
    if sent.platform != PLATFORM_MESSENGER:
        data["platform"] = sent.platform  # Instagram Direct: the IGSID's thread (channel: messenger)
    return data


def failed_event(message: PendingMessage, finish: Finish) -> dict[str, Any]:
    """The data of ``CitizenNotificationFailed``."""
    return {"trigger_event_id": message.trigger_event_id, "reason": finish.reason, "code": finish.code,
            "permanent": bool(finish.permanent), "message_id": message.message_id,
            "listed_for_desk": finish.listed_for_desk}


# -- Pages on hold ---------------------------------------------------------------------------------

def probe_due(since: datetime, last_probe_at: Optional[datetime], now: datetime,
              probe_seconds: float) -> bool:
    """Whether a held Page's oldest due message should be tried again as a probe of its token."""
    return now - (last_probe_at or since) >= timedelta(seconds=probe_seconds)

