"""The sender's pure decision step (``services.notification.domain.delivery``): given a pending
message, the complaint's record, the clock and Meta's answer, what is sent on which channel with
which messaging_type/tag — and after the answer: sent, retried at a time, the next channel, a
permanent failure, or the Page held for its token. No database, no eventlet, no Graph API."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from services.notification.domain import delivery
from services.notification.domain.delivery import (CallError, CommentState, ComplaintRecord, Facts, Finish, Fold,
                                                   HoldPage, NextChannel, PendingMessage, RetryLater, Send)
from services.notification.domain.policy import (APP_SCOPE, COMMENT_PRIVATE, COMMENT_PUBLIC, HUMAN_AGENT,
                                                 MESSAGE_TAG, MESSENGER, PAGE_SCOPE, RESPONSE, MessageKind,
                                                 RetryPolicy)

NOW = datetime(2024, 5, 6, 9, 0, tzinfo=timezone.utc)
PAGE = "100000000000001"
PSID = "7000000000000001"
COMMENT = "1_2345"


def message(kind=MessageKind.ROUTED, **fields) -> PendingMessage:
    values = dict(message_id="m-1", trigger_event_id="e-1", complaint_id="c-1", kind=kind,
                  text="Pengaduan Anda diteruskan.", public_text="Status: disetujui.")
    values.update(fields)
    return PendingMessage(**values)


def messenger(last=NOW - timedelta(hours=1)) -> ComplaintRecord:
    return ComplaintRecord(reply_to={"page_id": PAGE, "psid": PSID}, last_citizen_message_at=last)


def comment(created=NOW - timedelta(hours=2), **fields) -> ComplaintRecord:
    return ComplaintRecord(reply_to={"page_id": PAGE, "comment_id": COMMENT, "post_id": "1"},
                           comment_created_at=created, **fields)


def decide(msg, complaint, facts=Facts(), now=NOW, comment=None, human_agent_approved=True):
    return delivery.decide_send(msg, delivery.plan_for(msg, complaint, now, comment, human_agent_approved), facts)


def no_jitter(**kwargs) -> RetryPolicy:
    return RetryPolicy(jitter=0.0, **kwargs)


# -- what is sent, where ------------------------------------------------------------------------------

def test_a_messenger_complaint_inside_24_hours_is_answered_as_a_response():
    step = decide(message(), messenger())
    assert step == Send(PAGE, step.attempt, "Pengaduan Anda diteruskan.", RESPONSE, ())
    assert (step.channel, step.tag, step.recipient) == (MESSENGER, None, {"id": PSID})
    assert step.attempt.deadline == NOW - timedelta(hours=1) + timedelta(hours=24)


def test_after_24_hours_only_a_human_answer_goes_out_with_the_human_agent_tag():
    three_days = messenger(NOW - timedelta(days=3))
    answer = decide(message(MessageKind.ANSWER, human_written=True), three_days)
    assert isinstance(answer, Send) and (answer.messaging_type, answer.tag) == (MESSAGE_TAG, HUMAN_AGENT)
    automated = decide(message(MessageKind.RESOLVED), three_days)
    assert automated == Finish("undeliverable", "outside_24h_automated", None, permanent=True,
                               fallback_reasons=("outside_24h_automated",))
    assert automated.listed_for_desk
    # Without Meta's approval of the Human Agent feature the tag is never sent: straight to the
    # fallback (none for a Messenger complaint: listed for the desk).
    refused = decide(message(MessageKind.ANSWER, human_written=True), three_days, human_agent_approved=False)
    assert refused == Finish("undeliverable", "human_agent_not_approved", None, permanent=True,
                             fallback_reasons=("human_agent_not_approved",))


def test_a_comment_complaint_gets_one_private_reply_as_a_response_then_public_replies():
    step = decide(message(), comment())
    assert isinstance(step, Send) and step.channel == COMMENT_PRIVATE
    # The Send API is given RESPONSE for a private reply, though the attempt itself has none.
    assert step.messaging_type == RESPONSE and step.attempt.messaging_type is None
    assert step.recipient == {"comment_id": COMMENT} and step.text == "Pengaduan Anda diteruskan."

    used = decide(message(), comment(private_reply_used=True))
    assert isinstance(used, Send) and used.channel == COMMENT_PUBLIC and used.messaging_type is None
    assert used.text == "Status: disetujui." and used.fallback_reasons == ("private_reply_used",)


def test_a_citizen_who_wrote_in_messenger_after_the_comment_is_answered_there():
    record = comment(private_reply_used=True, known_psid=PSID,
                     last_citizen_message_at=NOW - timedelta(minutes=5))
    step = decide(message(), record)
    assert isinstance(step, Send) and step.channel == MESSENGER and step.recipient == {"id": PSID}


def test_channels_the_message_gave_up_on_are_skipped():
    step = decide(message(excluded_channels=frozenset({COMMENT_PRIVATE})), comment())
    assert isinstance(step, Send) and step.channel == COMMENT_PUBLIC


def test_an_asker_is_answered_where_and_when_they_asked():
    asked = NOW - timedelta(minutes=3)
    by_messenger = message(MessageKind.STATUS_REPLY, audience="asker", reply_to={"page_id": PAGE, "psid": PSID},
                           last_message_at=asked)
    step = decide(by_messenger, None)
    assert isinstance(step, Send) and step.channel == MESSENGER and step.attempt.deadline == asked + timedelta(days=1)
    from_comment = message(MessageKind.STATUS_REPLY, audience="asker", last_message_at=asked,
                           reply_to={"page_id": PAGE, "comment_id": COMMENT})
    step = decide(from_comment, None)
    assert isinstance(step, Send) and step.channel == COMMENT_PRIVATE  # the asking comment's own window
    # An asker's message ignores the complaint's record entirely.
    assert delivery.plan_for(by_messenger, comment(), NOW) == delivery.plan_for(by_messenger, None, NOW)


# -- confidentiality, folding, configuration ---------------------------------------------------------

def test_an_update_composed_before_the_complaint_became_confidential_gets_no_public_reply():
    msg = message()
    used = comment(private_reply_used=True)
    attempts = delivery.usable_attempts(msg, delivery.plan_for(msg, used, NOW))
    assert delivery.asks_confidentiality(msg, attempts)
    step = decide(msg, used, Facts(confidential_now=True))
    assert step == Finish("undeliverable", "private_reply_used", None, permanent=True,
                          fallback_reasons=("private_reply_used",))
    # Still confidential but the private reply is free: it goes privately.
    assert decide(msg, comment(), Facts(confidential_now=True)).channel == COMMENT_PRIVATE


def test_the_comment_acknowledgment_and_messenger_messages_never_ask_about_confidentiality():
    ack = message(MessageKind.ACKNOWLEDGMENT)
    plan = delivery.plan_for(ack, comment(), NOW)
    assert not delivery.asks_confidentiality(ack, delivery.usable_attempts(ack, plan))
    # Answering as if confidential changes nothing for it.
    assert decide(ack, comment(private_reply_used=True), Facts(confidential_now=True)).channel == COMMENT_PUBLIC
    routed = message()
    assert not delivery.asks_confidentiality(routed, delivery.plan_for(routed, messenger(), NOW).attempts)
    assert not delivery.asks_confidentiality(message(audience="asker"), (delivery.plan_for(
        routed, comment(), NOW).attempts))


def test_a_later_part_folds_into_the_public_reply_already_sent():
    second = message(part_index=1)
    used = comment(private_reply_used=True)
    attempts = delivery.usable_attempts(second, delivery.plan_for(second, used, NOW))
    assert delivery.asks_public_reply_sent(second, attempts)
    assert not delivery.asks_public_reply_sent(message(), attempts)
    assert decide(second, used, Facts(public_reply_sent=True)) == Fold()
    assert isinstance(decide(second, used, Facts(public_reply_sent=False)), Send)
    # Privately every part goes out.
    assert decide(second, comment(), Facts(public_reply_sent=True)).channel == COMMENT_PRIVATE


def test_a_page_without_a_token_or_a_message_without_text_is_undeliverable_without_a_call():
    assert decide(message(), messenger(), Facts(page_configured=False)) == Finish(
        "undeliverable", "page_not_configured", None, permanent=True)
    no_public_text = message(public_text=None)
    assert decide(no_public_text, comment(private_reply_used=True)) == Finish(
        "undeliverable", "unknown", None, permanent=True, fallback_reasons=("private_reply_used",))


def test_no_channel_left_ends_with_the_reason_the_last_channel_was_given_up():
    gave_up = message(excluded_channels=frozenset({COMMENT_PRIVATE, COMMENT_PUBLIC}), reason="window_expired",
                      code=2)
    step = decide(gave_up, comment())
    assert step == Finish("undeliverable", "window_expired", 2, permanent=False)  # Facebook might have, later
    refused = message(excluded_channels=frozenset({MESSENGER}), reason="outside_window", code=10)
    assert decide(refused, messenger()) == Finish("undeliverable", "outside_window", 10, permanent=True)


def test_the_private_acknowledgment_of_a_comment_complaint_fails_without_troubling_the_desk():
    private_ack = message(MessageKind.ACKNOWLEDGMENT, public_text=None,
                          excluded_channels=frozenset({COMMENT_PUBLIC}))
    step = decide(private_ack, comment(private_reply_used=True))
    assert step == Finish("failed", "private_reply_used", None, permanent=True,
                          fallback_reasons=("private_reply_used",))
    assert not step.listed_for_desk


def test_complaints_without_a_facebook_conversation_send_nothing():
    step = decide(message(), ComplaintRecord())
    assert isinstance(step, Finish) and step.reason == "no_reply_to"
    assert decide(message(), None).reason == "no_reply_to"


# -- after Meta answered --------------------------------------------------------------------------

def test_a_private_reply_accepted_spends_it_and_teaches_the_psid():
    msg = message(attempts=2)
    send = decide(msg, comment())
    sent = delivery.after_success(msg, send, "m_1", "7999")
    assert (sent.channel, sent.messaging_type, sent.graph_message_id, sent.attempts) == (COMMENT_PRIVATE, RESPONSE,
                                                                                          "m_1", 3)
    assert sent.recipient_psid == "7999" and sent.private_reply_used and sent.known_psid == "7999"
    assert sent.page_id == PAGE  # lifts the Page's hold
    assert delivery.notified_event(msg, sent) == {
        "trigger_event_id": "e-1", "channel": COMMENT_PRIVATE, "messaging_type": RESPONSE, "tag": None,
        "graph_message_id": "m_1", "message_id": "m-1", "recipient_psid": "7999"}


def test_messenger_and_public_replies_teach_nothing_and_an_asker_spends_no_private_reply():
    msg = message()
    sent = delivery.after_success(msg, decide(msg, messenger()), "m_2", PSID)
    assert sent.recipient_psid is None and not sent.private_reply_used and sent.known_psid is None
    assert "recipient_psid" not in delivery.notified_event(msg, sent)
    asker = message(MessageKind.STATUS_REPLY, audience="asker", last_message_at=NOW,
                    reply_to={"page_id": PAGE, "comment_id": COMMENT})
    sent = delivery.after_success(asker, decide(asker, None), "m_3", "7999")
    assert sent.recipient_psid == "7999" and not sent.private_reply_used


def test_a_temporary_error_is_retried_with_backoff_inside_the_window():
    msg = message(attempts=1)
    send = decide(msg, messenger())
    step = delivery.after_error(msg, send, CallError(1200, http_status=400), NOW, no_jitter(base_seconds=2))
    assert step == RetryLater("retry", NOW + timedelta(seconds=4), 2, step.failed_call)
    assert step.failed_call == delivery.FailedCall("temporary:1200/None", MESSENGER, RESPONSE, None)
    assert step.pause_seconds is None


def test_a_retry_past_the_window_or_the_last_attempt_tries_the_next_channel():
    near_end = messenger(NOW - timedelta(hours=23, minutes=59, seconds=58))
    msg = message()
    step = delivery.after_error(msg, decide(msg, near_end), CallError(), NOW, no_jitter())
    assert isinstance(step, NextChannel) and step.reason == "window_expired" and step.at == NOW
    assert step.excluded_channels == (MESSENGER,) and step.attempts == 1
    public = message(attempts=19, excluded_channels=frozenset({COMMENT_PRIVATE}))
    step = delivery.after_error(public, decide(public, comment()), CallError(1200), NOW, no_jitter())
    assert isinstance(step, NextChannel) and step.reason == "retries_exhausted"
    assert step.excluded_channels == (COMMENT_PRIVATE, COMMENT_PUBLIC) and step.code == 1200


def test_codes_that_may_not_be_temporary_are_retried_a_few_times_only():
    # 2 is also Meta's answer when the person blocked the Page: 8 attempts, then the next channel.
    msg = message(attempts=6)
    assert isinstance(delivery.after_error(msg, decide(msg, messenger()), CallError(2), NOW, no_jitter()), RetryLater)
    last = message(attempts=7)
    step = delivery.after_error(last, decide(last, messenger()), CallError(2), NOW, no_jitter())
    assert isinstance(step, NextChannel) and step.reason == "retries_exhausted"


def test_a_rate_limit_pauses_the_page_and_retries_after_the_pause():
    msg = message()
    step = delivery.after_error(msg, decide(msg, messenger()), CallError(613), NOW,
                                no_jitter(rate_limit_min_pause_seconds=10))
    assert step == RetryLater("slow_down", NOW + timedelta(seconds=10), 1, step.failed_call, pause_seconds=10,
                              pause_scope=PAGE_SCOPE)
    # Too close to the window's end: the calls still pause, the message moves on.
    late = messenger(NOW - timedelta(hours=23, minutes=59, seconds=50))
    step = delivery.after_error(msg, decide(msg, late), CallError(4), NOW, no_jitter(rate_limit_min_pause_seconds=10))
    assert isinstance(step, NextChannel) and step.pause_seconds == 10 and step.reason == "window_expired"
    assert step.pause_scope == APP_SCOPE  # 4 is the app's limit: every Page pauses


def test_a_rate_limit_pauses_as_long_as_meta_s_usage_headers_say():
    msg = message()
    usage = {"X-Business-Use-Case-Usage": json.dumps({PAGE: [{"type": "messenger", "call_count": 100,
                                                              "total_cputime": 20, "total_time": 30,
                                                              "estimated_time_to_regain_access": 7}]})}
    step = delivery.after_error(msg, decide(msg, messenger()), CallError(80006, usage=usage), NOW,
                                no_jitter(rate_limit_min_pause_seconds=10))
    assert isinstance(step, RetryLater) and step.pause_seconds == 7 * 60
    assert step.at == NOW + timedelta(minutes=7) and step.failed_call.last_error == "rate_limited:80006/None"
    # A public reply under Business Use Case limits: X-Page-Usage says it too.
    public = message(excluded_channels=frozenset({COMMENT_PRIVATE}))
    step = delivery.after_error(public, decide(public, comment()), CallError(
        32, usage={"x-page-usage": '{"call_count": 100, "estimated_time_to_regain_access": 3}'}), NOW, no_jitter())
    assert step.pause_seconds == 180 and step.failed_call.channel == COMMENT_PUBLIC


def test_outside_the_window_moves_on_and_10900_spends_the_private_reply():
    msg = message()
    step = delivery.after_error(msg, decide(msg, comment()), CallError(10900), NOW)
    assert isinstance(step, NextChannel)
    assert (step.reason, step.code, step.excluded_channels) == ("private_reply_used", 10900, (COMMENT_PRIVATE,))
    assert step.private_reply_used and step.comment_id == COMMENT and step.failed_call.messaging_type is None
    step = delivery.after_error(msg, decide(msg, messenger()), CallError(10, 2018278), NOW)
    assert isinstance(step, NextChannel) and not step.private_reply_used and step.private_reply_closed is None
    assert step.failed_call.last_error == "outside_window:10/2018278" and step.reason == "outside_window"
    # An asker's comment is remembered too (its own private reply is spent).
    asker = message(MessageKind.STATUS_REPLY, audience="asker", last_message_at=NOW,
                    reply_to={"page_id": PAGE, "comment_id": "9_9"})
    step = delivery.after_error(asker, decide(asker, None), CallError(10900), NOW)
    assert step.private_reply_closed == "private_reply_used" and step.comment_id == "9_9"


@pytest.mark.parametrize("code, subcode, reason, closed", [
    (10903, None, "private_reply_refused", "private_reply_refused"),
    (10902, None, "private_reply_refused", "private_reply_refused"),
    (551, None, "person_unavailable", "private_reply_refused"),
    (100, None, "bad_request", "private_reply_refused"),           # permanent elsewhere: here a fallback
    (10, 2018278, "private_reply_window_closed", "private_reply_window_closed"),
])
def test_a_refused_private_reply_falls_back_to_the_public_reply_and_is_remembered(code, subcode, reason, closed):
    msg = message()
    step = delivery.after_error(msg, decide(msg, comment()), CallError(code, subcode), NOW)
    assert isinstance(step, NextChannel) and step.excluded_channels == (COMMENT_PRIVATE,)
    assert (step.reason, step.code, step.private_reply_closed, step.comment_id) == (reason, code, closed, COMMENT)
    # Planned again: the public reply, and the private reply is never tried again for the comment.
    again = message(excluded_channels=frozenset(step.excluded_channels), reason=step.reason, code=step.code)
    public = decide(again, comment(), comment=CommentState(private_reply_closed=closed))
    assert isinstance(public, Send) and public.channel == COMMENT_PUBLIC
    later = decide(message(), comment(), comment=CommentState(private_reply_closed=closed))
    assert isinstance(later, Send) and later.channel == COMMENT_PUBLIC and later.fallback_reasons == (closed,)


def test_a_refused_private_reply_of_a_confidential_update_is_listed_for_the_desk():
    update = message(public_text=None, excluded_channels=frozenset({COMMENT_PUBLIC}))
    step = delivery.after_error(update, decide(update, comment()), CallError(10903), NOW)
    assert isinstance(step, NextChannel) and step.private_reply_closed == "private_reply_refused"
    again = message(public_text=None, excluded_channels=frozenset(step.excluded_channels), reason=step.reason,
                    code=step.code)
    finish = decide(again, comment(), comment=CommentState(private_reply_closed="private_reply_refused"))
    assert finish == Finish("undeliverable", "private_reply_refused", 10903, permanent=True,
                            fallback_reasons=("private_reply_refused",))
    assert finish.listed_for_desk


def test_a_missing_permission_changes_channel_but_says_nothing_about_the_comment():
    msg = message()
    step = delivery.after_error(msg, decide(msg, comment()), CallError(10), NOW)
    assert isinstance(step, NextChannel) and step.reason == "permission_missing"
    assert step.private_reply_closed is None  # tried again once the permission is back


def test_a_removed_comment_gets_no_public_reply_but_a_private_one_still_goes():
    removed = CommentState(removed=True)
    step = decide(message(), comment(), comment=removed)
    assert isinstance(step, Send) and step.channel == COMMENT_PRIVATE
    public_only = message(excluded_channels=frozenset({COMMENT_PRIVATE}))
    assert decide(public_only, comment(), comment=removed) == Finish(
        "undeliverable", "comment_removed", None, permanent=True, fallback_reasons=("comment_removed",))
    # The comment's public acknowledgment too.
    ack = message(MessageKind.ACKNOWLEDGMENT, excluded_channels=frozenset({MESSENGER, COMMENT_PRIVATE}))
    assert decide(ack, comment(), comment=removed).reason == "comment_removed"


@pytest.mark.parametrize("code, action, reason", [(551, NextChannel, "person_unavailable"),
                                                  (100, Finish, "bad_request"),
                                                  (200, NextChannel, "permission_missing"),
                                                  (424242, Finish, "permanent_error")])
def test_a_permanent_error_ends_the_message_or_changes_channel(code, action, reason):
    msg = message()
    send = decide(msg, messenger())
    step = delivery.after_error(msg, send, CallError(code, http_status=400), NOW)
    assert isinstance(step, action) and step.reason == reason and step.failed_call.channel == MESSENGER
    if action is Finish:
        assert step == Finish("undeliverable", reason, code, permanent=True, failed_call=step.failed_call)
        assert step.listed_for_desk
        assert delivery.failed_event(msg, step) == {"trigger_event_id": "e-1", "reason": reason, "code": code,
                                                    "permanent": True, "message_id": "m-1",
                                                    "listed_for_desk": True}
    else:
        # No other channel for a Messenger complaint: planned again, it ends for the desk.
        again = message(excluded_channels=frozenset(step.excluded_channels), reason=step.reason, code=step.code)
        assert decide(again, messenger()) == Finish("undeliverable", reason, code, permanent=True)


def test_an_invalid_token_holds_the_page_without_counting_an_attempt():
    msg = message(attempts=3)
    step = delivery.after_error(msg, decide(msg, messenger()), CallError(190, 460), NOW)
    assert step == HoldPage(PAGE, "invalid_token", delivery.FailedCall("invalid_token:190/460", MESSENGER,
                                                                        RESPONSE, None))


def test_backoff_doubles_with_jitter_from_the_attempts_already_made():
    policy = RetryPolicy(base_seconds=2, rng=random.Random(7))
    msg = message(attempts=3)
    step = delivery.after_error(msg, decide(msg, messenger()), CallError(1200), NOW, policy)
    assert isinstance(step, RetryLater) and step.attempts == 4
    assert timedelta(seconds=16 * 0.8) <= step.at - NOW <= timedelta(seconds=16 * 1.2)


def test_a_code_meta_marks_transient_is_retried_and_an_unknown_one_is_permanent():
    msg = message()
    assert isinstance(delivery.after_error(msg, decide(msg, messenger()), CallError(4242, transient=True), NOW),
                      RetryLater)
    assert isinstance(delivery.after_error(msg, decide(msg, messenger()), CallError(4242), NOW), Finish)
    assert isinstance(delivery.after_error(msg, decide(msg, messenger()), CallError(4242, http_status=503), NOW),
                      RetryLater)


def test_a_held_page_is_probed_once_the_probe_interval_passed():
    since = NOW - timedelta(seconds=60)
    assert delivery.probe_due(since, None, NOW, 30)
    assert not delivery.probe_due(since, NOW - timedelta(seconds=10), NOW, 30)
    assert delivery.probe_due(since, NOW - timedelta(seconds=30), NOW, 30)
