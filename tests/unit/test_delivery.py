"""The sender's pure decision step (``services.notification.domain.delivery``): given a pending
message, the complaint's record, the clock and Meta's answer, what is sent on which channel with
which messaging_type/tag — and after the answer: sent, retried at a time, the next channel, a
permanent failure, or the Page held for its token. No database, no eventlet, no Graph API."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from services.notification.domain import delivery
from services.notification.domain.delivery import (CallError, ComplaintRecord, Facts, Finish, Fold, HoldPage,
                                                   NextChannel, PendingMessage, RetryLater, Send)
from services.notification.domain.policy import (COMMENT_PRIVATE, COMMENT_PUBLIC, HUMAN_AGENT, INVALID_TOKEN,
                                                 MESSAGE_TAG, MESSENGER, OUTSIDE_WINDOW, PERMANENT, RATE_LIMITED,
                                                 RESPONSE, TEMPORARY, MessageKind, RetryPolicy)

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


def decide(msg, complaint, facts=Facts(), now=NOW):
    return delivery.decide_send(msg, delivery.plan_for(msg, complaint, now), facts)


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
    step = delivery.after_error(msg, send, CallError(TEMPORARY, 2), NOW, no_jitter(base_seconds=2))
    assert step == RetryLater("retry", NOW + timedelta(seconds=4), 2, step.failed_call)
    assert step.failed_call == delivery.FailedCall("temporary:2/None", MESSENGER, RESPONSE, None)
    assert step.pause_seconds is None and not step.private_reply_used


def test_a_retry_past_the_window_or_the_last_attempt_tries_the_next_channel():
    near_end = messenger(NOW - timedelta(hours=23, minutes=59, seconds=58))
    msg = message()
    step = delivery.after_error(msg, decide(msg, near_end), CallError(TEMPORARY, None), NOW, no_jitter())
    assert isinstance(step, NextChannel) and step.reason == "window_expired" and step.at == NOW
    assert step.excluded_channels == (MESSENGER,) and step.attempts == 1
    public = message(attempts=19, excluded_channels=frozenset({COMMENT_PRIVATE}))
    step = delivery.after_error(public, decide(public, comment()), CallError(TEMPORARY, 1200), NOW, no_jitter())
    assert isinstance(step, NextChannel) and step.reason == "retries_exhausted"
    assert step.excluded_channels == (COMMENT_PRIVATE, COMMENT_PUBLIC) and step.code == 1200


def test_a_rate_limit_pauses_the_page_and_retries_after_the_pause():
    msg = message()
    step = delivery.after_error(msg, decide(msg, messenger()), CallError(RATE_LIMITED, 613), NOW,
                                no_jitter(rate_limit_min_pause_seconds=10))
    assert step == RetryLater("slow_down", NOW + timedelta(seconds=10), 1, step.failed_call, pause_seconds=10)
    # Too close to the window's end: the Page still pauses, the message moves on.
    late = messenger(NOW - timedelta(hours=23, minutes=59, seconds=50))
    step = delivery.after_error(msg, decide(msg, late), CallError(RATE_LIMITED, 4), NOW,
                                no_jitter(rate_limit_min_pause_seconds=10))
    assert isinstance(step, NextChannel) and step.pause_seconds == 10 and step.reason == "window_expired"


def test_outside_the_window_moves_on_and_10900_spends_the_private_reply():
    msg = message()
    step = delivery.after_error(msg, decide(msg, comment()), CallError(OUTSIDE_WINDOW, 10900), NOW)
    assert isinstance(step, NextChannel)
    assert (step.reason, step.code, step.excluded_channels) == ("outside_window", 10900, (COMMENT_PRIVATE,))
    assert step.private_reply_used and step.failed_call.messaging_type is None
    step = delivery.after_error(msg, decide(msg, messenger()), CallError(OUTSIDE_WINDOW, 10, 2018278), NOW)
    assert isinstance(step, NextChannel) and not step.private_reply_used
    assert step.failed_call.last_error == "outside_window:10/2018278"
    asker = message(MessageKind.STATUS_REPLY, audience="asker", last_message_at=NOW,
                    reply_to={"page_id": PAGE, "comment_id": COMMENT})
    step = delivery.after_error(asker, decide(asker, None), CallError(OUTSIDE_WINDOW, 10900), NOW)
    assert not step.private_reply_used


@pytest.mark.parametrize("code, reason", [(551, "person_unavailable"), (100, "bad_request"),
                                          (200, "permanent_error")])
def test_a_permanent_error_ends_the_message_for_the_desk(code, reason):
    msg = message()
    send = decide(msg, messenger())
    step = delivery.after_error(msg, send, CallError(PERMANENT, code), NOW)
    assert step == Finish("undeliverable", reason, code, permanent=True, failed_call=step.failed_call)
    assert step.failed_call.channel == MESSENGER and step.listed_for_desk
    assert delivery.failed_event(msg, step) == {"trigger_event_id": "e-1", "reason": reason, "code": code,
                                                "permanent": True, "message_id": "m-1", "listed_for_desk": True}


def test_an_invalid_token_holds_the_page_without_counting_an_attempt():
    msg = message(attempts=3)
    step = delivery.after_error(msg, decide(msg, messenger()), CallError(INVALID_TOKEN, 190, 460), NOW)
    assert step == HoldPage(PAGE, "invalid_token", delivery.FailedCall("invalid_token:190/460", MESSENGER,
                                                                        RESPONSE, None))


def test_backoff_doubles_with_jitter_from_the_attempts_already_made():
    policy = RetryPolicy(base_seconds=2, rng=random.Random(7))
    msg = message(attempts=3)
    step = delivery.after_error(msg, decide(msg, messenger()), CallError(TEMPORARY, 1), NOW, policy)
    assert isinstance(step, RetryLater) and step.attempts == 4
    assert timedelta(seconds=16 * 0.8) <= step.at - NOW <= timedelta(seconds=16 * 1.2)


def test_unknown_error_kinds_are_refused():
    msg = message()
    with pytest.raises(ValueError):
        delivery.after_error(msg, decide(msg, messenger()), CallError("mystery"), NOW)


def test_a_held_page_is_probed_once_the_probe_interval_passed():
    since = NOW - timedelta(seconds=60)
    assert delivery.probe_due(since, None, NOW, 30)
    assert not delivery.probe_due(since, NOW - timedelta(seconds=10), NOW, 30)
    assert delivery.probe_due(since, NOW - timedelta(seconds=30), NOW, 30)
