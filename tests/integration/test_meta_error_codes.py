"""Meta's error codes checked against an expectation written independently of ``policy.ERROR_TABLE``.

``EXPECTED`` below was written from Meta's documentation — Graph API "Handling Errors"
(developers.facebook.com/docs/graph-api/guides/error-handling), Messenger Platform "Common Error
Codes" (…/messenger-platform/error-codes), the Send API "Error Codes" table
(…/messenger-platform/reference/send-api/error-codes), "Private Replies" and "Rate Limits" — for
every code/subcode issue 15 names, and never copied from the table: a wrong row makes these tests
fail, where tests that read their expectation from the table itself would pass it. The words in
each line are what Meta's page says; the (kind, action) is what that means for a notification.

Several codes then go through the strict sandbox's error injection and the real ``GraphClient``
over HTTP (no fake session): the client must raise the documented kind, and the row it finds
must do the documented thing.
"""
from __future__ import annotations

import pytest

from sandbox.graph_sandbox import start_sandbox
from services.notification.adapters.graph_client import GraphApiError, GraphClient
from services.notification.domain import policy
from services.notification.domain.policy import (FAIL_PERMANENT, HOLD_PAGE, INVALID_TOKEN, NEXT_CHANNEL,
                                                 OUTSIDE_WINDOW, PERMANENT, PERMISSION, RATE_LIMITED, RETRY,
                                                 SLOW_DOWN, TEMPORARY, error_rule, render_error_table)

# (code, subcode) -> (kind, action, Meta's words). Written from Meta's pages, not from ERROR_TABLE.
EXPECTED: dict[tuple[int, int | None], tuple[str, str, str]] = {
    # Graph "Handling Errors": OAuthException / 102 "login status or access token has expired, been
    # revoked, or is otherwise invalid. Get a new access token." Subcodes 458–467 are all token
    # states that a person must fix: nothing can be sent for the Page until then.
    (190, None): (INVALID_TOKEN, HOLD_PAGE, "get a new access token"),
    (190, 458): (INVALID_TOKEN, HOLD_PAGE, "app not installed"),
    (190, 460): (INVALID_TOKEN, HOLD_PAGE, "password changed"),
    (190, 463): (INVALID_TOKEN, HOLD_PAGE, "expired"),
    (190, 467): (INVALID_TOKEN, HOLD_PAGE, "invalid access token"),
    (102, None): (INVALID_TOKEN, HOLD_PAGE, "API Session: get a new access token"),
    # Graph: 1 "API Unknown: possibly a temporary issue due to downtime. Wait and retry".
    (1, None): (TEMPORARY, RETRY, "wait and retry"),
    # Graph: 2 "API Service: temporary issue due to downtime. Wait and retry"; Messenger adds
    # "you might also receive this error if a customer has blocked your business".
    (2, None): (TEMPORARY, RETRY, "wait and retry (or blocked)"),
    # Graph: 4 "API Too Many Calls: temporary issue due to throttling" (application-level).
    (4, None): (RATE_LIMITED, SLOW_DOWN, "application request limit reached"),
    # Graph: 10 "API Permission Denied: permission is either not granted or has been removed".
    (10, None): (PERMISSION, NEXT_CHANNEL, "permission denied"),
    # Messenger: 10/2018278 "This message is sent outside of allowed window".
    (10, 2018278): (OUTSIDE_WINDOW, NEXT_CHANNEL, "outside of allowed window"),
    # Send API table: 10/2018065 "sent outside of allowed window. You need News Messaging permission".
    (10, 2018065): (OUTSIDE_WINDOW, NEXT_CHANNEL, "outside window, needs a permission"),
    # Send API table: 10/2018108 "This Person Cannot Receive Messages: this person isn't receiving
    # messages from you right now" — the person, not the app: no point retrying.
    (10, 2018108): (PERMANENT, NEXT_CHANNEL, "person cannot receive messages"),
    # Graph: 17 "API User Too Many Calls: temporary issue due to throttling".
    (17, None): (RATE_LIMITED, SLOW_DOWN, "user too many calls"),
    # Rate Limits: 32 "Page-level throttling".
    (32, None): (RATE_LIMITED, SLOW_DOWN, "page request limit reached"),
    # Messenger/Send API: 100 "Invalid parameter" — the request is wrong; sending it again fails again.
    (100, None): (PERMANENT, FAIL_PERMANENT, "invalid parameter"),
    # Send API table: 100/2018001 "No matching user found".
    (100, 2018001): (PERMANENT, NEXT_CHANNEL, "no matching user found"),
    # Graph: 200–299 "API Permission: permission is either not granted or has been removed".
    (200, None): (PERMISSION, NEXT_CHANNEL, "permission not granted"),
    (230, None): (PERMISSION, NEXT_CHANNEL, "permission range 200-299"),
    # Send API table: 200/1545041 "Message Not Sent: this person isn't receiving messages from you".
    (200, 1545041): (PERMANENT, NEXT_CHANNEL, "person isn't receiving messages"),
    # Graph: 341 "Application limit reached: temporary issue due to downtime or throttling".
    (341, None): (RATE_LIMITED, SLOW_DOWN, "application limit reached"),
    # Graph: 368 "Temporarily blocked for policies violations: wait and retry the operation".
    (368, None): (RATE_LIMITED, SLOW_DOWN, "temporarily blocked, wait and retry"),
    # Messenger: 551 "This person isn't available right now".
    (551, None): (PERMANENT, NEXT_CHANNEL, "person isn't available"),
    # Messenger/Send API: 613 "Calls to this API have exceeded the rate limit".
    (613, None): (RATE_LIMITED, SLOW_DOWN, "exceeded the rate limit"),
    # Rate Limits (Business Use Case): 80006 Messenger — a throttle, whatever its exact wording.
    (80006, None): (RATE_LIMITED, SLOW_DOWN, "BUC rate limit (Messenger)"),
    # Send API table: 1200 "Temporary send message failure. Please try again later".
    (1200, None): (TEMPORARY, RETRY, "temporary send message failure"),
    # Private Replies: one private reply per comment — 10900 "Activity already replied to": that
    # channel is used up (not a failure of the message): the next channel carries it.
    (10900, None): (OUTSIDE_WINDOW, NEXT_CHANNEL, "activity already replied to"),
    # 10903: a private reply refused for this comment (design.md): the public reply carries it.
    (10903, None): (PERMANENT, NEXT_CHANNEL, "private reply refused"),
}

# The issue names these; each must have a line above (and a row of its own in the table).
NAMED_BY_ISSUE = [(190, None), (10, None), (10, 2018278), (10, 2018108), (200, None), (1, None), (2, None),
                  (4, None), (17, None), (32, None), (100, None), (368, None), (551, None), (613, None),
                  (80006, None), (1200, None), (10900, None), (10903, None)]


def test_every_code_the_issue_names_has_an_independent_expectation_and_its_own_row():
    for key in NAMED_BY_ISSUE:
        assert key in EXPECTED, key
        assert any((rule.code, rule.subcode) == key for rule in policy.ERROR_TABLE), key


@pytest.mark.parametrize("key", list(EXPECTED), ids=lambda k: f"{k[0]}/{k[1]}")
def test_the_table_agrees_with_metas_documentation(key):
    code, subcode = key
    kind, action, words = EXPECTED[key]
    rule = error_rule(400, code, subcode)
    assert (rule.kind, rule.action) == (kind, action), f"{code}/{subcode} ({words})"


def test_private_reply_refusals_close_the_private_reply_and_permission_errors_do_not():
    # Private Replies: a refused or spent private reply falls back to the public reply; a missing
    # permission is the app's problem and says nothing about the comment.
    assert error_rule(400, 10903, None).closes_private_reply
    assert error_rule(400, 10900, None).on_private_reply() == NEXT_CHANNEL
    assert not error_rule(400, 10, None).closes_private_reply
    assert not error_rule(400, 200, None).closes_private_reply


def test_rate_limit_scopes_follow_metas_levels():
    # Rate Limits: 4 is application-level (every Page of the app), 32 Page-level, 613 and the BUC
    # codes are counted per Page.
    assert error_rule(400, 4, None).pause_scope == policy.APP_SCOPE
    assert error_rule(400, 32, None).pause_scope == policy.PAGE_SCOPE
    assert error_rule(400, 613, None).pause_scope == policy.PAGE_SCOPE
    assert error_rule(400, 80006, None).pause_scope == policy.PAGE_SCOPE


def test_rows_that_meta_does_not_document_publicly_say_so_in_the_docs_table():
    # 80001/80002/80006: Meta's per-type BUC code table could not be retrieved (2026-11); the
    # docs must not present them as confirmed.
    shown = {line.split("|")[1].strip(): line for line in render_error_table().splitlines()[2:]}
    for code in ("80001", "80002", "80006"):
        assert "unconfirmed" in shown[f"`{code}`"].lower(), code


# -- through the strict sandbox and the real client ------------------------------------------------

PAGE = "100000000000015"
TOKEN = "EAAtoken-issue-15"
PSID = "7000000000000015"
COMMENT = "100000000000015_2000000000000015"


@pytest.fixture(scope="module")
def sandbox():
    server = start_sandbox(pages={PAGE: TOKEN}, env={})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(sandbox):
    sandbox.state.clear_faults()
    graph = GraphClient(sandbox.url)
    try:
        yield graph
    finally:
        graph.close()
        sandbox.state.clear_faults()


@pytest.mark.parametrize("code,subcode,kind", [
    (10, None, "messenger"), (10, 2018108, "messenger"), (368, None, "messenger"), (17, None, "messenger"),
    (32, None, "comment_reply"), (10900, None, "private_reply")],
    ids=["10", "10/2018108", "368", "17", "32", "10900"])
def test_the_sandbox_answer_is_classified_as_meta_documents_it(sandbox, client, code, subcode, kind):
    sandbox.state.add_fault({"code": code, "subcode": subcode, "kind": kind, "page_id": PAGE, "times": 1})
    with pytest.raises(GraphApiError) as raised:
        if kind == "messenger":
            client.send_message(PAGE, TOKEN, {"id": PSID}, "Jawaban dinas.")
        elif kind == "private_reply":
            client.send_message(PAGE, TOKEN, {"comment_id": COMMENT}, "Jawaban dinas.")
        else:
            client.reply_to_comment(COMMENT, TOKEN, "Jawaban dinas.")
    error = raised.value
    expected_kind, expected_action, words = EXPECTED[(code, subcode)]
    assert (error.code, error.subcode, error.http_status) == (code, subcode, 400)
    assert error.kind == expected_kind, words
    rule = error_rule(error.http_status, error.code, error.subcode, error.transient)
    assert rule.action == expected_action, words
    calls = sandbox.state.get_calls(page_id=PAGE, kind=kind)
    assert calls, "the call reached the sandbox"
    if code in (17, 32):
        # Meta's throttles come with its usage headers (368, a policy block, need not); the client
        # keeps them, so the pause can follow estimated_time_to_regain_access.
        assert set(error.headers) & set(policy.USAGE_HEADERS), error.headers
