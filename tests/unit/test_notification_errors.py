"""Meta's error table (``policy.ERROR_TABLE``), code by code: each row is what ``error_rule`` finds for
its answer, what the graph client raises for it (kind, codes, Meta's ``is_transient``, the usage
headers), and what the sender's decision step does with it on Messenger and on a private reply;
the rate-limit pause read from Meta's usage headers; and docs/notification.md showing the same
table. (The sender's loop against a fake Graph client, row by row: tests/unit/test_delivery_sender.py.)"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import urllib3
from urllib3 import HTTPHeaderDict

from services.notification.adapters.graph_client import GraphApiError, GraphClient, classify_error
from services.notification.domain import delivery, policy
from services.notification.domain.delivery import (CallError, ComplaintRecord, Finish, HoldPage, NextChannel,
                                                   PendingMessage, RetryLater)
from services.notification.domain.policy import (APP_SCOPE, COMMENT_PRIVATE, ERROR_TABLE, FAIL_PERMANENT,
                                                 HOLD_PAGE, MESSENGER, NEXT_CHANNEL, PAGE_SCOPE, PERMISSION,
                                                 RETRY, SLOW_DOWN, ErrorRule, RetryPolicy, error_rule)

DOC = Path(__file__).resolve().parents[2] / "docs" / "notification.md"
NOW = datetime(2024, 5, 6, 9, 0, tzinfo=timezone.utc)
PAGE = "100000000000001"
COMMENT = "1_2345"

# The HTTP answer that selects each row without a Graph error code (http status, Meta's is_transient).
HTTP_ANSWERS = {policy.HTTP_NO_ANSWER: (None, None, None), policy.HTTP_5XX: (503, None, None),
                policy.HTTP_429: (429, None, None), policy.HTTP_2XX: (200, None, None),
                policy.HTTP_4XX: (404, None, None),
                policy.OTHER_TRANSIENT: (400, 424242, True), policy.OTHER_CODE: (400, 424242, None)}


def answer_of(rule: ErrorRule) -> tuple[int | None, int | None, int | None, bool | None]:
    """(http status, code, subcode, is_transient) of an answer that selects ``rule``."""
    if rule.http is not None:
        status, code, transient = HTTP_ANSWERS[rule.http]
        return status, code, None, transient
    code = rule.code + 7 if rule.codes_up_to and rule.code not in (200,) else rule.code
    if rule.codes_up_to and rule.code == 200:
        code = 230  # inside 200–299, without a row of its own
    return 400, code, rule.subcode, None


ROWS = [pytest.param(rule, id=rule.label.replace(" ", "")) for rule in ERROR_TABLE]
CODE_ROWS = [pytest.param(rule, id=rule.label.replace(" ", "")) for rule in ERROR_TABLE if rule.code is not None]


def test_the_table_is_well_formed():
    labels = [rule.label for rule in ERROR_TABLE]
    assert len(labels) == len(set(labels)), "one row per code/subcode"
    for rule in ERROR_TABLE:
        assert rule.kind in policy.ERROR_KINDS and rule.action in policy.ACTIONS and rule.source in policy.SOURCES
        assert rule.meaning and rule.reason
        assert (rule.code is None) == (rule.http is not None)
        assert rule.action == SLOW_DOWN or rule.pause_scope == PAGE_SCOPE
        assert rule.action == RETRY or rule.max_attempts is None
    # The codes the platform must know (issue 15), each with its own row.
    for code, subcode in [(190, None), (10, None), (10, 2018278), (10, 2018065), (10, 2018108), (200, None),
                          (1, None), (2, None), (4, None), (17, None), (32, None), (100, None), (368, None),
                          (551, None), (613, None), (80006, None), (1200, None), (10900, None), (10903, None)]:
        assert any((rule.code, rule.subcode) == (code, subcode) for rule in ERROR_TABLE), (code, subcode)


@pytest.mark.parametrize("rule", ROWS)
def test_each_answer_finds_its_row_and_the_client_classifies_it_by_the_table(rule):
    status, code, subcode, transient = answer_of(rule)
    assert error_rule(status, code, subcode, transient) is rule
    assert classify_error(status, code, subcode, transient) == rule.kind


def test_a_subcode_without_a_row_of_its_own_falls_back_to_its_code():
    assert error_rule(400, 10, 1234567) is error_rule(400, 10, None)
    assert error_rule(400, 190, 1234567).action == HOLD_PAGE
    assert error_rule(400, 613, 1996).action == SLOW_DOWN


# -- what the decision step does with each row ------------------------------------------------------

def _message(**fields) -> PendingMessage:
    values = dict(message_id="m-1", trigger_event_id="e-1", complaint_id="c-1", kind="routed",
                  text="Pengaduan Anda diteruskan.", public_text="Status: disetujui.")
    values.update(fields)
    return PendingMessage(**values)


def _send(msg: PendingMessage, record: ComplaintRecord) -> delivery.Send:
    step = delivery.decide_send(msg, delivery.plan_for(msg, record, NOW))
    assert isinstance(step, delivery.Send)
    return step


MESSENGER_RECORD = ComplaintRecord(reply_to={"page_id": PAGE, "psid": "7000"},
                                   last_citizen_message_at=NOW - timedelta(hours=1))
COMMENT_RECORD = ComplaintRecord(reply_to={"page_id": PAGE, "comment_id": COMMENT, "post_id": "1"},
                                 comment_created_at=NOW - timedelta(hours=2))
RETRY_POLICY = RetryPolicy(jitter=0.0, rate_limit_min_pause_seconds=10)


def _error(rule: ErrorRule) -> CallError:
    status, code, subcode, transient = answer_of(rule)
    return CallError(code, subcode, status, transient)


@pytest.mark.parametrize("rule", ROWS)
def test_on_messenger_each_row_does_what_the_table_says(rule):
    msg = _message()
    send = _send(msg, MESSENGER_RECORD)
    assert send.channel == MESSENGER
    step = delivery.after_error(msg, send, _error(rule), NOW, RETRY_POLICY)
    status, code, subcode, _ = answer_of(rule)
    assert step.failed_call.last_error == f"{rule.kind}:{code}/{subcode}"
    if rule.action == RETRY:
        assert isinstance(step, RetryLater) and step.action == "retry" and step.at > NOW
    elif rule.action == SLOW_DOWN:
        assert isinstance(step, RetryLater) and step.action == "slow_down"
        assert step.pause_seconds >= (rule.min_pause_seconds or 10) and step.pause_scope == rule.pause_scope
    elif rule.action == NEXT_CHANNEL:
        assert isinstance(step, NextChannel) and step.reason == rule.reason and step.code == code
        assert step.excluded_channels == (MESSENGER,) and step.private_reply_closed is None
    elif rule.action == FAIL_PERMANENT:
        assert step == Finish("undeliverable", rule.reason, code, permanent=True, failed_call=step.failed_call)
    else:
        assert rule.action == HOLD_PAGE and isinstance(step, HoldPage) and step.page_id == PAGE


@pytest.mark.parametrize("rule", ROWS)
def test_on_a_private_reply_a_refusal_falls_back_to_the_public_reply_and_closes_it_for_the_comment(rule):
    msg = _message()
    send = _send(msg, COMMENT_RECORD)
    assert send.channel == COMMENT_PRIVATE
    step = delivery.after_error(msg, send, _error(rule), NOW, RETRY_POLICY)
    if rule.action in (NEXT_CHANNEL, FAIL_PERMANENT):
        assert isinstance(step, NextChannel) and step.excluded_channels == (COMMENT_PRIVATE,)
        if rule.kind == PERMISSION:
            assert step.private_reply_closed is None  # a permission says nothing about the comment
        else:
            assert step.private_reply_closed in (policy.PRIVATE_REPLY_USED, policy.PRIVATE_REPLY_REFUSED,
                                                 policy.PRIVATE_REPLY_WINDOW_CLOSED)
            assert step.comment_id == COMMENT
        # The next plan: the public reply, without the private one.
        again = _message(excluded_channels=frozenset(step.excluded_channels), reason=step.reason, code=step.code)
        public = delivery.decide_send(again, delivery.plan_for(again, COMMENT_RECORD, NOW))
        assert isinstance(public, delivery.Send) and public.channel == "comment_public"
    else:
        assert not isinstance(step, (NextChannel, Finish))
        assert policy.describe_private_reply(rule) == "same"


def test_app_level_limits_pause_every_page_and_page_level_ones_only_that_api():
    assert {rule.label for rule in ERROR_TABLE if rule.pause_scope == APP_SCOPE} == {"4", "17", "341"}
    msg = _message()
    step = delivery.after_error(msg, _send(msg, MESSENGER_RECORD), CallError(17), NOW, RETRY_POLICY)
    assert step.pause_scope == APP_SCOPE
    step = delivery.after_error(msg, _send(msg, MESSENGER_RECORD), CallError(80006), NOW, RETRY_POLICY)
    assert step.pause_scope == PAGE_SCOPE


# -- the pause Meta's usage headers give ------------------------------------------------------------

def test_the_pause_follows_estimated_time_to_regain_access_in_minutes():
    buc = {PAGE: [{"type": "pages", "call_count": 100, "total_cputime": 12, "total_time": 40,
                   "estimated_time_to_regain_access": 12}],
           "999": [{"type": "messenger", "call_count": 5, "estimated_time_to_regain_access": 60}]}
    headers = {"X-Business-Use-Case-Usage": json.dumps(buc)}
    assert policy.regain_access_seconds(headers, PAGE) == 12 * 60  # the Page's own entries
    assert policy.regain_access_seconds(headers, "unknown-page") == 60 * 60  # else every entry: the longest
    assert policy.regain_access_seconds({"x-page-usage": '{"call_count": 100, '
                                         '"estimated_time_to_regain_access": 4}'}) == 240
    # X-App-Usage gives percentages only; no time, no pause from the headers (backoff then).
    assert policy.regain_access_seconds({"X-App-Usage": '{"call_count": 100, "total_time": 9}'}) is None
    assert policy.regain_access_seconds({}) is None and policy.regain_access_seconds(None) is None
    assert policy.regain_access_seconds({"X-Business-Use-Case-Usage": "not json"}) is None
    zero = {"X-Business-Use-Case-Usage": json.dumps({PAGE: [{"estimated_time_to_regain_access": 0}]})}
    assert policy.regain_access_seconds(zero, PAGE) is None
    # Never past a day, Meta's longest window.
    huge = {"x-page-usage": '{"estimated_time_to_regain_access": 100000}'}
    assert policy.regain_access_seconds(huge) == policy.MAX_PAUSE_SECONDS


def test_headers_win_over_the_backoff_and_a_policy_block_waits_an_hour():
    outcome = policy.decide_on_error(error_rule(400, 32, None), 1, NOW, None, retry_after_seconds=5)
    assert outcome.action == SLOW_DOWN and outcome.pause_seconds == 5
    blocked = policy.decide_on_error(error_rule(400, 368, None), 1, NOW, None)
    assert blocked.pause_seconds == 3600 and blocked.reason is None


# -- the graph client exposes what the decision needs ----------------------------------------------

class OneAnswer:
    """A transport whose every POST gets one canned answer (or raises a timeout), as urllib3's
    ``PoolManager.request`` would give it."""

    def __init__(self, status: int | None, body: bytes, headers: dict | None = None):
        self.status, self.body, self.answer_headers = status, body, headers or {}

    def request(self, method, url, **kwargs):
        if self.status is None:
            raise urllib3.exceptions.ReadTimeoutError(None, url, "no answer")
        return urllib3.HTTPResponse(body=self.body, status=self.status,
                                    headers=HTTPHeaderDict(self.answer_headers), preload_content=True)


def _graph_body(code, subcode, transient) -> bytes:
    error = {"message": f"(#{code}) refused", "type": "OAuthException", "code": code, "fbtrace_id": "AbC"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient is not None:
        error["is_transient"] = transient
    return json.dumps({"error": error}).encode()


USAGE = {"X-Business-Use-Case-Usage": json.dumps({PAGE: [{"type": "pages", "call_count": 100,
                                                          "estimated_time_to_regain_access": 3}]}),
         "X-App-Usage": '{"call_count": 42, "total_time": 10, "total_cputime": 8}',
         "X-FB-Trace-ID": "not a usage header"}


@pytest.mark.parametrize("rule", ROWS)
def test_the_graph_client_raises_each_row_with_its_codes_kind_and_usage_headers(rule):
    status, code, subcode, transient = answer_of(rule)
    if status is None:
        body = b""
    elif code is not None:
        body = _graph_body(code, subcode, transient)
    elif status == 200:
        body = b'{"recipient_id": "7000"}'  # accepted without a message id
    else:
        body = b"<html>Sorry, something went wrong.</html>"
    client = GraphClient("https://graph.example", http=OneAnswer(status, body, USAGE))
    with pytest.raises(GraphApiError) as raised:
        client.send_message(PAGE, "EAAG-secret-token", {"id": "7000"}, "Jawaban rahasia")
    error = raised.value
    assert (error.code, error.subcode, error.http_status, error.kind) == (code, subcode, status, rule.kind)
    assert error.transient == transient
    if status is not None and body.startswith(b'{"error"'):
        assert error.headers == {"x-business-use-case-usage": USAGE["X-Business-Use-Case-Usage"],
                                 "x-app-usage": USAGE["X-App-Usage"]}
    assert "EAAG-secret-token" not in str(error) and "Jawaban rahasia" not in str(error)
    # What the sender hands the decision step finds the same row, and the pause in the headers.
    failure = CallError(error.code, error.subcode, error.http_status, error.transient, error.headers)
    assert failure.rule is rule


def test_a_rate_limited_comment_reply_pauses_as_long_as_its_usage_header_says():
    session = OneAnswer(400, _graph_body(80001, None, True), USAGE)
    with pytest.raises(GraphApiError) as raised:
        GraphClient("https://graph.example", http=session).reply_to_comment(COMMENT, "tok-1234", "Status")
    failure = CallError(raised.value.code, None, 400, raised.value.transient, raised.value.headers)
    msg = _message(excluded_channels=frozenset({COMMENT_PRIVATE}))
    step = delivery.after_error(msg, _send(msg, COMMENT_RECORD), failure, NOW, RETRY_POLICY)
    assert isinstance(step, RetryLater) and step.pause_seconds == 180 and step.failed_call.channel == "comment_public"


# -- the same table in docs/notification.md ------------------------------------------------------

def test_docs_show_the_error_table_as_the_code_has_it():
    text = DOC.read_text()
    start, end = "<!-- error-table:start -->\n", "<!-- error-table:end -->"
    assert start in text and end in text, "docs/notification.md needs the error-table markers"
    shown = text.split(start, 1)[1].split(end, 1)[0]
    assert shown == policy.render_error_table(), (
        "regenerate: python -c 'from services.notification.domain.policy import render_error_table; "
        "print(render_error_table(), end=\"\")'")
    for rule in ERROR_TABLE:
        assert f"| `{rule.label}` |" in shown or f"| {rule.label} |" in shown
