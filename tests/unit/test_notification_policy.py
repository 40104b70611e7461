"""Unit tests for notification's delivery policy: Messenger/comment windows, channel fallback,
Graph API error handling, backoff, rate limiting and stable message ids."""

import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.notification.domain import policy
from services.notification.domain.policy import (
    COMMENT_PRIVATE,
    COMMENT_PUBLIC,
    FAIL_PERMANENT,
    HOLD_PAGE,
    HUMAN_AGENT,
    MESSAGE_TAG,
    MESSENGER,
    NEXT_CHANNEL,
    RESPONSE,
    RETRY,
    SLOW_DOWN,
    MessageKind,
    RateLimiter,
    RetryPolicy,
    decide_on_error,
    message_id_for,
    plan_delivery,
)

NOW = datetime(2020, 11, 30, 12, 0, tzinfo=timezone.utc)
PAGE = "1000000001"
MESSENGER_REPLY_TO = {"page_id": PAGE, "psid": "PSID-1"}
COMMENT_REPLY_TO = {"page_id": PAGE, "comment_id": "111_222", "post_id": "111"}


def messenger_plan(age, human_written=False, kind=MessageKind.ROUTED, human_agent_approved=True):
    return plan_delivery(
        MESSENGER_REPLY_TO, kind, human_written, NOW - age, None, False, None, NOW,
        human_agent_approved=human_agent_approved,
    )


def comment_plan(comment_age, private_reply_used=False, known_psid=None, messenger_age=None,
                 human_written=False, kind=MessageKind.ROUTED, human_agent_approved=True):
    last = None if messenger_age is None else NOW - messenger_age
    return plan_delivery(
        COMMENT_REPLY_TO, kind, human_written, last, NOW - comment_age,
        private_reply_used, known_psid, NOW, human_agent_approved=human_agent_approved,
    )


# --- Messenger window -----------------------------------------------------------------------


def test_23h59m_is_response():
    plan = messenger_plan(timedelta(hours=23, minutes=59))
    assert [(a.channel, a.messaging_type, a.tag) for a in plan.attempts] == [(MESSENGER, RESPONSE, None)]
    assert plan.attempts[0].recipient == {"id": "PSID-1"}
    assert plan.page_id == PAGE
    assert plan.skipped_reason is None


def test_exactly_24h_is_still_response():
    plan = messenger_plan(timedelta(hours=24))
    assert plan.attempts[0].messaging_type == RESPONSE
    assert plan.attempts[0].deadline == NOW


def test_24h01m_automated_is_not_sent_and_undeliverable():
    plan = messenger_plan(timedelta(hours=24, minutes=1), human_written=False)
    assert plan.attempts == ()
    assert plan.skipped_reason == policy.OUTSIDE_24H_AUTOMATED
    assert plan.undeliverable


def test_24h01m_human_answer_goes_as_human_agent_tag():
    plan = messenger_plan(timedelta(hours=24, minutes=1), human_written=True, kind=MessageKind.ANSWER)
    (attempt,) = plan.attempts
    assert (attempt.channel, attempt.messaging_type, attempt.tag) == (MESSENGER, MESSAGE_TAG, HUMAN_AGENT)


def test_without_human_agent_approval_a_late_human_answer_goes_straight_to_the_fallback():
    # FACEBOOK_HUMAN_AGENT_APPROVED off (the default): no call Meta would refuse.
    plan = messenger_plan(timedelta(hours=24, minutes=1), human_written=True, kind=MessageKind.ANSWER,
                          human_agent_approved=False)
    assert plan.attempts == () and plan.skipped_reason == policy.HUMAN_AGENT_NOT_APPROVED and plan.undeliverable
    # Inside 24 hours no tag is needed: approval changes nothing.
    inside = messenger_plan(timedelta(hours=23), human_written=True, kind=MessageKind.ANSWER,
                            human_agent_approved=False)
    assert inside.attempts[0].messaging_type == RESPONSE
    # A comment complaint falls back to its private reply, then the public reply.
    plan = plan_delivery(COMMENT_REPLY_TO, MessageKind.ANSWER, True, NOW - timedelta(days=2),
                         NOW - timedelta(days=3), False, "PSID-9", NOW)
    assert [a.channel for a in plan.attempts] == [COMMENT_PRIVATE, COMMENT_PUBLIC]
    assert plan.fallback_reasons == (policy.HUMAN_AGENT_NOT_APPROVED,)


def test_exactly_7_days_human_answer_is_still_inside():
    plan = messenger_plan(timedelta(days=7), human_written=True, kind=MessageKind.ANSWER)
    assert plan.attempts[0].tag == HUMAN_AGENT
    assert plan.attempts[0].deadline == NOW


def test_7_days_and_a_minute_closes_messenger():
    plan = messenger_plan(timedelta(days=7, minutes=1), human_written=True, kind=MessageKind.ANSWER)
    assert plan.attempts == ()
    assert plan.skipped_reason == policy.MESSENGER_WINDOW_CLOSED
    assert plan.undeliverable


def test_message_stamped_slightly_in_the_future_counts_as_fresh():
    plan = messenger_plan(-timedelta(seconds=3))
    assert plan.attempts[0].messaging_type == RESPONSE


def test_messenger_without_last_message_time_is_closed():
    plan = plan_delivery(MESSENGER_REPLY_TO, MessageKind.ROUTED, False, None, None, False, None, NOW)
    assert plan.attempts == () and plan.undeliverable


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        plan_delivery(MESSENGER_REPLY_TO, MessageKind.ROUTED, False, datetime(2020, 11, 30),
                      None, False, None, NOW)


# --- reply_to absent or broken --------------------------------------------------------------


@pytest.mark.parametrize("reply_to", [None, {}])
def test_no_reply_to_is_skipped_and_not_undeliverable(reply_to):
    plan = plan_delivery(reply_to, MessageKind.ACKNOWLEDGMENT, False, None, None, False, None, NOW)
    assert plan.attempts == ()
    assert plan.skipped_reason == "no_reply_to"
    assert not plan.undeliverable


def test_reply_to_without_recipient_is_invalid_and_listed():
    plan = plan_delivery({"page_id": PAGE}, MessageKind.ROUTED, False, NOW, None, False, None, NOW)
    assert plan.skipped_reason == policy.INVALID_REPLY_TO
    assert plan.undeliverable


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        plan_delivery(MESSENGER_REPLY_TO, "newsletter", False, NOW, None, False, None, NOW)


# --- comment complaints ---------------------------------------------------------------------


def test_fresh_comment_gets_private_reply_then_public_fallback():
    plan = comment_plan(timedelta(hours=2))
    assert [a.channel for a in plan.attempts] == [COMMENT_PRIVATE, COMMENT_PUBLIC]
    private, public = plan.attempts
    assert private.recipient == {"comment_id": "111_222"}
    assert private.deadline == NOW - timedelta(hours=2) + timedelta(days=7)
    assert public.recipient == {"comment_id": "111_222"}
    assert public.deadline is None
    assert not plan.undeliverable


def test_private_reply_already_used_leaves_public_reply():
    plan = comment_plan(timedelta(hours=2), private_reply_used=True)
    assert [a.channel for a in plan.attempts] == [COMMENT_PUBLIC]
    assert policy.PRIVATE_REPLY_USED in plan.fallback_reasons


def test_private_reply_exactly_7_days_is_inside_and_later_is_not():
    assert [a.channel for a in comment_plan(timedelta(days=7)).attempts] == [COMMENT_PRIVATE, COMMENT_PUBLIC]
    late = comment_plan(timedelta(days=7, minutes=1))
    assert [a.channel for a in late.attempts] == [COMMENT_PUBLIC]
    assert policy.PRIVATE_REPLY_WINDOW_CLOSED in late.fallback_reasons


def test_hand_over_to_messenger_once_the_citizen_wrote_there():
    plan = comment_plan(timedelta(days=2), private_reply_used=True, known_psid="PSID-9",
                        messenger_age=timedelta(hours=1))
    assert [(a.channel, a.messaging_type) for a in plan.attempts] == [
        (MESSENGER, RESPONSE), (COMMENT_PUBLIC, None)]
    assert plan.attempts[0].recipient == {"id": "PSID-9"}


def test_messenger_hand_over_respects_its_own_window():
    automated = comment_plan(timedelta(days=3), private_reply_used=True, known_psid="PSID-9",
                             messenger_age=timedelta(hours=30))
    assert [a.channel for a in automated.attempts] == [COMMENT_PUBLIC]
    assert policy.OUTSIDE_24H_AUTOMATED in automated.fallback_reasons
    human = comment_plan(timedelta(days=3), private_reply_used=True, known_psid="PSID-9",
                         messenger_age=timedelta(hours=30), human_written=True, kind=MessageKind.ANSWER)
    assert [(a.channel, a.tag) for a in human.attempts] == [(MESSENGER, HUMAN_AGENT), (COMMENT_PUBLIC, None)]


def test_psid_from_private_reply_alone_does_not_open_messenger():
    # The citizen has not written in Messenger since the comment: no Messenger attempt.
    comment_at = NOW - timedelta(hours=3)
    plan = plan_delivery(COMMENT_REPLY_TO, MessageKind.ROUTED, False, comment_at, comment_at,
                         True, "PSID-9", NOW)
    assert [a.channel for a in plan.attempts] == [COMMENT_PUBLIC]


def test_old_comment_still_has_public_reply_as_last_resort():
    plan = comment_plan(timedelta(days=40), private_reply_used=True)
    assert [a.channel for a in plan.attempts] == [COMMENT_PUBLIC]
    assert plan.skipped_reason is None


def test_plan_is_deterministic():
    assert comment_plan(timedelta(hours=5)) == comment_plan(timedelta(hours=5))


# --- window deadlines -----------------------------------------------------------------------


def fixed_policy(**kw):
    return RetryPolicy(jitter=0.0, **kw)


def test_temporary_error_retries_with_backoff():
    deadline = NOW + timedelta(hours=1)
    first = decide_on_error("temporary", 1, NOW, deadline, policy=fixed_policy())
    assert first.action == RETRY and first.at == NOW + timedelta(seconds=2)
    third = decide_on_error("temporary", 3, NOW, deadline, policy=fixed_policy())
    assert third.at == NOW + timedelta(seconds=8)


def test_temporary_error_never_retries_past_the_window():
    deadline = NOW + timedelta(seconds=20)
    # Attempt 5 would wait 32 s: beyond the window, so move on instead of retrying.
    outcome = decide_on_error("temporary", 5, NOW, deadline, policy=fixed_policy())
    assert outcome.action == NEXT_CHANNEL
    assert outcome.reason == policy.WINDOW_EXPIRED
    assert not outcome.permanent
    # With the margin, a retry landing right at the deadline is also refused.
    at_edge = decide_on_error("temporary", 1, NOW, NOW + timedelta(seconds=2), policy=fixed_policy())
    assert at_edge.action == NEXT_CHANNEL


def test_temporary_error_without_window_stops_after_max_attempts():
    p = fixed_policy(max_attempts=4)
    assert decide_on_error("temporary", 3, NOW, None, policy=p).action == RETRY
    outcome = decide_on_error("temporary", 4, NOW, None, policy=p)
    assert outcome.action == NEXT_CHANNEL and outcome.reason == policy.RETRIES_EXHAUSTED


def test_rate_limit_slows_the_sender_down():
    outcome = decide_on_error("rate_limited", 1, NOW, NOW + timedelta(hours=1), policy=fixed_policy())
    assert outcome.action == SLOW_DOWN
    assert outcome.pause_seconds >= 10.0
    later = decide_on_error("rate_limited", 8, NOW, NOW + timedelta(hours=1), policy=fixed_policy())
    assert later.pause_seconds == 256.0
    told = decide_on_error("rate_limited", 1, NOW, None, policy=fixed_policy(), retry_after_seconds=90)
    assert told.pause_seconds == 90.0


def test_rate_limit_near_window_end_moves_on_but_still_pauses():
    outcome = decide_on_error("rate_limited", 1, NOW, NOW + timedelta(seconds=5), policy=fixed_policy())
    assert outcome.action == NEXT_CHANNEL
    assert outcome.pause_seconds >= 10.0


def test_a_refused_private_reply_and_a_removed_comment_are_remembered_per_comment():
    refused = plan_delivery(COMMENT_REPLY_TO, MessageKind.ROUTED, False, None, NOW - timedelta(hours=1),
                            False, None, NOW, private_reply_closed=policy.PRIVATE_REPLY_REFUSED)
    assert [a.channel for a in refused.attempts] == [COMMENT_PUBLIC]
    assert refused.fallback_reasons == (policy.PRIVATE_REPLY_REFUSED,)
    removed = plan_delivery(COMMENT_REPLY_TO, MessageKind.ROUTED, False, None, NOW - timedelta(hours=1),
                            False, None, NOW, comment_removed=True)
    assert [a.channel for a in removed.attempts] == [COMMENT_PRIVATE]  # a private reply is still allowed
    both = plan_delivery(COMMENT_REPLY_TO, MessageKind.ROUTED, False, None, NOW - timedelta(hours=1),
                         True, None, NOW, comment_removed=True)
    assert both.attempts == () and both.fallback_reasons == (policy.PRIVATE_REPLY_USED, policy.COMMENT_REMOVED)


def test_outside_window_switches_channel():
    outcome = decide_on_error("outside_window", 1, NOW, NOW + timedelta(hours=1))
    assert outcome.action == NEXT_CHANNEL
    assert outcome.reason == "outside_window"


@pytest.mark.parametrize("code,action,reason", [(551, NEXT_CHANNEL, "person_unavailable"),
                                                (100, FAIL_PERMANENT, "bad_request"),
                                                (424242, FAIL_PERMANENT, "permanent_error")])
def test_permanent_errors_end_the_attempt_or_change_channel(code, action, reason):
    outcome = decide_on_error(policy.error_rule(400, code, None), 1, NOW, None)
    assert outcome.action == action
    assert outcome.reason == reason
    assert outcome.permanent
    assert decide_on_error("permanent", 1, NOW, None).reason == "permanent_error"


def test_invalid_token_holds_the_page():
    outcome = decide_on_error("invalid_token", 1, NOW, NOW + timedelta(hours=1))
    assert outcome.action == HOLD_PAGE
    assert outcome.reason == "invalid_token"
    assert not outcome.permanent


def test_unknown_error_kind_is_refused():
    with pytest.raises(ValueError):
        decide_on_error("weird", 1, NOW, None)


# --- backoff --------------------------------------------------------------------------------


def test_backoff_doubles_and_caps():
    p = RetryPolicy(base_seconds=2.0, cap_seconds=300.0, jitter=0.0)
    assert [p.delay(n) for n in range(1, 10)] == [2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert p.delay(1000) == 300


def test_backoff_jitter_stays_in_bounds():
    p = RetryPolicy(base_seconds=2.0, cap_seconds=300.0, jitter=0.2, rng=random.Random(7))
    for n in range(1, 15):
        raw = min(300.0, 2.0 * 2 ** (n - 1))
        values = [p.delay(n) for _ in range(200)]
        assert all(raw * 0.8 <= v <= min(raw * 1.2, 300.0) for v in values)
        assert len(set(values)) > 1  # jitter actually spreads retries


def test_backoff_is_reproducible_with_a_seeded_rng():
    a = RetryPolicy(rng=random.Random(42))
    b = RetryPolicy(rng=random.Random(42))
    assert [a.delay(n) for n in range(1, 6)] == [b.delay(n) for n in range(1, 6)]


def test_give_up_at_keeps_a_margin_before_the_deadline():
    p = RetryPolicy(deadline_margin_seconds=5)
    assert p.give_up_at(NOW) == NOW - timedelta(seconds=5)
    assert p.give_up_at(None) is None


def test_retry_policy_validates():
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ValueError):
        RetryPolicy().delay(0)


# --- rate limiter ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_limiter_spaces_calls():
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock)
    assert [limiter.acquire() for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]
    clock.now += 1.0
    assert limiter.acquire() == 0.0


def test_rate_limiter_burst():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=3, clock=clock)
    waits = [limiter.acquire() for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1)


def test_rate_zero_means_no_cap_but_penalties_still_apply():
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock)
    assert all(limiter.acquire() == 0.0 for _ in range(1000))
    limiter.penalise(30)
    assert limiter.acquire() == 30.0
    clock.now += 31
    assert limiter.acquire() == 0.0


def test_penalty_pauses_everything_and_never_shortens():
    clock = FakeClock()
    limiter = RateLimiter(300, clock=clock)
    limiter.penalise(60)
    limiter.penalise(10)
    assert limiter.acquire() == 60.0
    clock.now += 60
    assert limiter.acquire() == pytest.approx(1 / 300)  # the reserved slot above is honoured


# --- message ids ----------------------------------------------------------------------------


def test_message_ids_are_stable_and_distinct():
    event_id = "3f2b1c9e-8a7d-4c6b-9e5f-1a2b3c4d5e6f"
    a = message_id_for(event_id, MessageKind.ROUTED)
    assert a == message_id_for(event_id, MessageKind.ROUTED, 0)
    assert a == message_id_for(uuid.UUID(event_id), MessageKind.ROUTED)
    assert a == message_id_for(event_id.upper(), MessageKind.ROUTED)
    assert uuid.UUID(a).version == 5
    others = {
        message_id_for(event_id, MessageKind.ROUTED, 1),
        message_id_for(event_id, MessageKind.STATUS_REPLY),
        message_id_for("3f2b1c9e-8a7d-4c6b-9e5f-1a2b3c4d5e70", MessageKind.ROUTED),
    }
    assert a not in others and len(others) == 3


def test_message_id_known_value_never_changes():
    # Pinned: a changed namespace would resend every message after an upgrade.
    assert message_id_for("00000000-0000-0000-0000-000000000001", MessageKind.ACKNOWLEDGMENT) == \
        str(uuid.uuid5(policy.MESSAGE_NAMESPACE, "00000000-0000-0000-0000-000000000001/acknowledgment/0"))
    assert str(policy.MESSAGE_NAMESPACE) == "6f1d8c2e-4b7a-5e39-9a0c-3d2b1e8f7a64"
