"""The sender's decisions, pure: for one pending message, what to send on which channel (with which
``messaging_type``/``tag``) or why nothing may be sent; and after Meta answered, what becomes of
the message — sent, retried at a time, tried again on the next channel, failed for good, or
waiting while its Page's token is refused.

Meta's rules themselves (windows, channels, error kinds, backoff) are ``policy``'s; this module
applies them to one recorded message and the complaint's record. No I/O, no clock: the caller
passes ``now`` and the facts it read (``Facts``), and writes what the decision says
(``adapters/deliveries.py``); the loop that calls Meta is ``adapters/sender.py``.

One message goes through::

    plan = plan_for(message, complaint, now)          # the channels Meta allows now
    step = decide_send(message, plan, facts)          # Send | Fold | Finish
    # Send: the caller calls Meta, then
    after_success(message, step, graph_id, recipient_id)      # Sent
    after_error(message, step, error, now, retry_policy)      # RetryLater | NextChannel | Finish | HoldPage
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional, Union

from services.notification.domain.policy import (
    COMMENT_PRIVATE,
    COMMENT_PUBLIC,
    FAIL_PERMANENT,
    HOLD_PAGE,
    NEXT_CHANNEL,
    RESPONSE,
    RETRIES_EXHAUSTED,
    RETRY,
    SLOW_DOWN,
    WINDOW_EXPIRED,
    Attempt,
    DeliveryPlan,
    MessageKind,
    RetryPolicy,
    decide_on_error,
    plan_delivery,
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
class Facts:
    """What the decision asks the database and the configuration, beyond the message's plan.

    ``confidential_now`` matters only when ``asks_confidentiality`` said so, and
    ``public_reply_sent`` only when ``asks_public_reply_sent`` did."""

    confidential_now: bool = False
    public_reply_sent: bool = False  # an earlier part of this message went out as the public reply
    page_configured: bool = True     # a token is configured for the plan's Page


@dataclass(frozen=True)
class CallError:
    """A failed Graph call as the decision needs it: ``policy``'s error kind and Meta's codes."""

    kind: str
    code: Optional[int] = None
    subcode: Optional[int] = None


# -- what it decides --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Send:
    """Call Meta: ``text`` on ``attempt``'s channel for ``page_id``."""

    page_id: str
    attempt: Attempt
    text: str
    messaging_type: Optional[str]  # what the Send API is given (private replies: RESPONSE)
    fallback_reasons: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class RetryLater:
    """Send again at ``at`` on the same plan (``slow_down``: the whole Page pauses too)."""

    action: str  # RETRY or SLOW_DOWN
    at: datetime
    attempts: int
    failed_call: FailedCall
    pause_seconds: Optional[float] = None
    private_reply_used: bool = False


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
    private_reply_used: bool = False  # Meta said the private reply was already used (10900)
    action: str = NEXT_CHANNEL


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

def plan_for(message: PendingMessage, complaint: Optional[ComplaintRecord], now: datetime) -> DeliveryPlan:
    """The channels Meta allows for the message now: for the complaint's citizen from the
    complaint's current record (a citizen who wrote in Messenger meanwhile is answered there),
    for an asker from where and when they asked."""
    if message.audience == TO_COMPLAINT:
        record = complaint or ComplaintRecord()
        return plan_delivery(dict(record.reply_to) if record.reply_to else None, message.kind,
                             message.human_written, record.last_citizen_message_at,
                             record.comment_created_at, record.private_reply_used, record.known_psid, now)
    reply_to = dict(message.reply_to) if message.reply_to else None
    from_comment = bool(reply_to and reply_to.get("comment_id"))
    asked_at = message.last_message_at
    return plan_delivery(reply_to, message.kind, message.human_written,
                         None if from_comment else asked_at, asked_at if from_comment else None,
                         False, None, now)


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
    return Send(plan.page_id, attempt, text, messaging_type, tuple(plan.fallback_reasons))


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
                known_psid=psid if spends_private_reply and psid else None)


def after_error(message: PendingMessage, send: Send, error: CallError, now: datetime,
                retry: Optional[RetryPolicy] = None) -> AfterError:
    """Meta refused (or did not answer): ``policy.decide_on_error`` for this attempt, as what
    becomes of the message."""
    attempt = send.attempt
    outcome = decide_on_error(error.kind, message.attempts + 1, now, attempt.deadline, policy=retry,
                              code=error.code)
    failed = FailedCall(f"{error.kind}:{error.code}/{error.subcode}"[:200], attempt.channel,
                        attempt.messaging_type, attempt.tag)
    if outcome.action == HOLD_PAGE:
        return HoldPage(send.page_id, outcome.reason, failed)
    if outcome.action == FAIL_PERMANENT:
        return Finish(UNDELIVERABLE, outcome.reason or UNKNOWN, error.code, permanent=True,
                      fallback_reasons=send.fallback_reasons, failed_call=failed)
    # Meta says the complaint's one private reply was already used.
    private_reply_used = attempt.channel == COMMENT_PRIVATE and error.code == 10900 and \
        message.audience == TO_COMPLAINT
    if outcome.action == RETRY and outcome.at is not None:
        return RetryLater(RETRY, outcome.at, message.attempts + 1, failed,
                          private_reply_used=private_reply_used)
    if outcome.action == SLOW_DOWN and outcome.pause_seconds is not None:
        return RetryLater(SLOW_DOWN, now + timedelta(seconds=outcome.pause_seconds), message.attempts + 1,
                          failed, pause_seconds=outcome.pause_seconds, private_reply_used=private_reply_used)
    if outcome.action == NEXT_CHANNEL:
        # Re-planned at once without this channel; with none left it becomes undeliverable.
        return NextChannel(now, message.attempts + 1,
                           tuple(sorted(message.excluded_channels | {attempt.channel})),
                           outcome.reason, error.code, failed, pause_seconds=outcome.pause_seconds,
                           private_reply_used=private_reply_used)
    raise ValueError(f"no delivery step for {outcome!r}")


# -- events ---------------------------------------------------------------------------------------

def notified_event(message: PendingMessage, sent: Sent) -> dict[str, Any]:
    """The data of ``CitizenNotified``."""
    data: dict[str, Any] = {"trigger_event_id": message.trigger_event_id, "channel": sent.channel,
                            "messaging_type": sent.messaging_type, "tag": sent.tag,
                            "graph_message_id": sent.graph_message_id, "message_id": message.message_id}
    if sent.recipient_psid:
        data["recipient_psid"] = sent.recipient_psid
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

