"""Delivery policy for citizen notifications: which Facebook channel may carry a message, and
what to do when the Graph API answers with an error.

Pure domain code: no I/O, no clock reads except through injected callables, no nameko or
SQLAlchemy. All datetimes are timezone-aware UTC; the Messenger window is measured from the time
Meta stamped on the citizen's own message, never from when we received or processed it.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Optional


# --- message kinds, channels, Send API vocabulary -------------------------------------------


class MessageKind:
    ACKNOWLEDGMENT = "acknowledgment"
    ROUTED = "routed"
    ANSWER = "answer"  # the agency's human-written answer: the only kind HUMAN_AGENT may carry
    RESOLVED = "resolved"
    DISMISSED = "dismissed"
    STATUS_REPLY = "status_reply"

    ALL = (ACKNOWLEDGMENT, ROUTED, ANSWER, RESOLVED, DISMISSED, STATUS_REPLY)

    # The public reply under a complaint's comment that gives its tracking code: a second
    # message of ComplaintFiled (next to the private acknowledgment), so it needs its own id.
    # Planned as an ACKNOWLEDGMENT restricted to the public comment channel.
    COMMENT_ACK = "comment_ack"
    IDENTIFIABLE = ALL + (COMMENT_ACK,)


MESSENGER = "messenger"
COMMENT_PRIVATE = "comment_private"
COMMENT_PUBLIC = "comment_public"
CHANNELS = (MESSENGER, COMMENT_PRIVATE, COMMENT_PUBLIC)

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


@dataclass(frozen=True)
class Attempt:
    channel: str
    messaging_type: Optional[str]  # None for comment replies: they are not Send API conversations
    tag: Optional[str]
    recipient: dict[str, Any]  # {"id": psid} or {"comment_id": ...}; for comment_public the comment replied under
    # Retries of this attempt must not be scheduled after this instant (None: no window).
    deadline: Optional[datetime] = None


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


def _messenger_attempt(psid: str, human_written: bool, last: Optional[datetime], now: datetime) -> Attempt | str:
    """The Attempt of a Messenger send to ``psid``, or the reason none may be made."""
    if last is None:
        return MESSENGER_WINDOW_CLOSED
    age = _age(now, last)
    if age <= STANDARD_WINDOW:
        return Attempt(MESSENGER, RESPONSE, None, {"id": psid}, last + STANDARD_WINDOW)
    if age <= HUMAN_AGENT_WINDOW:
        if human_written:
            return Attempt(MESSENGER, MESSAGE_TAG, HUMAN_AGENT, {"id": psid}, last + HUMAN_AGENT_WINDOW)
        return OUTSIDE_24H_AUTOMATED
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
) -> DeliveryPlan:
    """Ordered channels that may carry one message, best first.

    For a comment complaint, ``last_citizen_message_at`` is the citizen's last *Messenger* message
    (None if they never wrote there) and ``comment_created_at`` the comment's ``created_time``.
    """
    if kind not in MessageKind.ALL:
        raise ValueError(f"unknown message kind {kind!r}")
    _require_aware(now, "now")
    if not reply_to:
        return DeliveryPlan(page_id=None, skipped_reason=NO_REPLY_TO)
    page_id = reply_to.get("page_id")
    psid = reply_to.get("psid")
    comment_id = reply_to.get("comment_id")
    if not page_id or not (psid or comment_id):
        return DeliveryPlan(page_id=page_id, skipped_reason=INVALID_REPLY_TO)

    if psid:
        found = _messenger_attempt(psid, human_written, last_citizen_message_at, now)
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
        found = _messenger_attempt(known_psid, human_written, last_citizen_message_at, now)
        if isinstance(found, str):
            reasons.append(found)
        else:
            attempts.append(found)
    if private_reply_used:
        reasons.append(PRIVATE_REPLY_USED)
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
    attempts.append(Attempt(COMMENT_PUBLIC, None, None, {"comment_id": comment_id}, None))
    return DeliveryPlan(page_id=page_id, attempts=tuple(attempts), fallback_reasons=tuple(reasons))


# --- errors and retries ---------------------------------------------------------------------

# Error kinds as classified by graph_client.
TEMPORARY = "temporary"
RATE_LIMITED = "rate_limited"
OUTSIDE_WINDOW = "outside_window"
PERMANENT = "permanent"
INVALID_TOKEN = "invalid_token"
ERROR_KINDS = (TEMPORARY, RATE_LIMITED, OUTSIDE_WINDOW, PERMANENT, INVALID_TOKEN)

RETRY = "retry"
SLOW_DOWN = "slow_down"
NEXT_CHANNEL = "next_channel"
FAIL_PERMANENT = "fail_permanent"
HOLD_PAGE = "hold_page"

# Reasons carried by outcomes; also the keys of the desk texts in messages.yaml.
WINDOW_EXPIRED = "window_expired"
RETRIES_EXHAUSTED = "retries_exhausted"
PERSON_UNAVAILABLE = "person_unavailable"
BAD_REQUEST = "bad_request"
PERMANENT_ERROR = "permanent_error"
OUTSIDE_WINDOW_REASON = "outside_window"
INVALID_TOKEN_REASON = "invalid_token"

_PERMANENT_REASONS = {551: PERSON_UNAVAILABLE, 100: BAD_REQUEST}


@dataclass(frozen=True)
class Outcome:
    action: str
    at: Optional[datetime] = None  # RETRY: when to send again
    pause_seconds: Optional[float] = None  # SLOW_DOWN: how long the whole Page sender pauses
    reason: Optional[str] = None
    # For a failure that ends delivery: False when Facebook might have carried it later.
    permanent: bool = False


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
    kind: str,
    attempt_number: int,
    now: datetime,
    deadline: Optional[datetime],
    *,
    policy: Optional[RetryPolicy] = None,
    code: Optional[int] = None,
    retry_after_seconds: Optional[float] = None,
) -> Outcome:
    """What to do after attempt ``attempt_number`` (1-based) failed with error ``kind``."""
    policy = policy or RetryPolicy()
    _require_aware(now, "now")
    if kind == TEMPORARY:
        at = policy.next_retry_at(attempt_number, now, deadline)
        if at is not None:
            return Outcome(RETRY, at=at)
        exhausted = policy.max_attempts is not None and attempt_number >= policy.max_attempts
        reason = RETRIES_EXHAUSTED if exhausted else WINDOW_EXPIRED
        # Another channel (e.g. a public comment reply) may still work when this one cannot.
        return Outcome(NEXT_CHANNEL, reason=reason)
    if kind == RATE_LIMITED:
        pause = max(policy.delay(attempt_number), policy.rate_limit_min_pause_seconds)
        if retry_after_seconds is not None:
            pause = max(pause, float(retry_after_seconds))
        limit = policy.give_up_at(deadline)
        if limit is not None and now + timedelta(seconds=pause) > limit:
            # The sender still pauses (the limit is Page-wide), but this message cannot wait.
            return Outcome(NEXT_CHANNEL, pause_seconds=pause, reason=WINDOW_EXPIRED)
        return Outcome(SLOW_DOWN, pause_seconds=pause)
    if kind == OUTSIDE_WINDOW:
        return Outcome(NEXT_CHANNEL, reason=OUTSIDE_WINDOW_REASON)
    if kind == PERMANENT:
        reason = PERMANENT_ERROR if code is None else _PERMANENT_REASONS.get(code, PERMANENT_ERROR)
        return Outcome(FAIL_PERMANENT, reason=reason, permanent=True)
    if kind == INVALID_TOKEN:
        # Nothing is dropped: every send for the Page waits until a probe with the token succeeds.
        return Outcome(HOLD_PAGE, reason=INVALID_TOKEN_REASON)
    raise ValueError(f"unknown error kind {kind!r}")


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
