"""Crafted ids never reach Graph URL paths (issue 16, "A crafted comment id posts to the Page's
feed"). Reproduced before: ``intake.file_complaint`` with ``channel: facebook_comment`` and
``reply_to.comment_id = "../<page-id>/feed?x="`` made notification call ``POST /<page-id>/feed``
— the province's Page publishing what the caller chose.

Two controls, each shown alone:

* intake refuses, at the door, every id of ``reply_to`` that is not shaped like Meta's
  (``page_id``/``psid`` digits; ``comment_id``/``post_id`` digits or ``<digits>_<digits>``) —
  the RPC-level test, against the real intake, notification and Graph sandbox;
* notification never builds a URL from a segment that is not such an id, whatever its records
  hold: the delivery plan skips the reply-to as invalid, and the Graph client refuses (no request
  at all) and percent-encodes what it does send — *unit* tests on the client and the plan.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
import urllib3

from shared.core.errors import ValidationFailed
from services.notification.adapters.graph_client import GraphApiError, GraphClient
from services.notification.domain.policy import INVALID_REPLY_TO, PERMANENT, MessageKind, plan_delivery
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for

FEED = f"../{DEV_PAGE_ID}/feed?x="
CRAFTED = [FEED, f"{DEV_PAGE_ID}/feed", "1_2/../../feed", "1%2Ffeed", "1_2?fields=id", "1_2#x", "",
           "１２３", "123\n", "123_", "_123", "1_2_3", "12 3", "-1", "0x1f", "1.5"]


class Recorder:
    """The Graph client's transport (urllib3's ``PoolManager.request``) stand-in: records each POST
    and answers like Meta."""

    def __init__(self):
        self.urls: list[str] = []

    def request(self, method, url, **kwargs):
        self.urls.append(url)
        return urllib3.HTTPResponse(
            body=b'{"message_id": "m_1", "recipient_id": "7000000000000001", "id": "1_9"}', status=200,
            preload_content=True)


# -- the Graph client (unit) -------------------------------------------------------------------------

@pytest.mark.parametrize("crafted", CRAFTED)
def test_the_graph_client_refuses_a_crafted_comment_id_before_any_request(crafted):
    session = Recorder()
    with pytest.raises(GraphApiError) as refused:
        GraphClient("https://graph.example", http=session).reply_to_comment(crafted, "page-token", "Halo")
    assert session.urls == []
    assert (refused.value.code, refused.value.kind) == (100, PERMANENT)   # Meta's own "invalid parameter"
    assert crafted not in str(refused.value) or crafted == ""             # the id itself is never echoed


@pytest.mark.parametrize("crafted", CRAFTED)
def test_the_graph_client_refuses_a_crafted_page_id_before_any_request(crafted):
    session = Recorder()
    client = GraphClient("https://graph.example", http=session)
    with pytest.raises(GraphApiError):
        client.send_message(crafted, "page-token", {"id": "7000000000000001"}, "Halo")
    with pytest.raises(GraphApiError):
        client.send_message(crafted, "page-token", {"comment_id": "1_2"}, "Halo")
    assert session.urls == []


def test_valid_ids_make_exactly_the_documented_paths():
    session = Recorder()
    client = GraphClient("https://graph.example", http=session)
    client.send_message(DEV_PAGE_ID, "page-token", {"id": "7000000000000001"}, "Halo")
    client.reply_to_comment("305419896_1122334455", "page-token", "Halo")
    client.reply_to_comment("17900000000000001", "page-token", "Halo")   # an Instagram-style comment id
    assert session.urls == [f"https://graph.example/v23.0/{DEV_PAGE_ID}/messages",
                            "https://graph.example/v23.0/305419896_1122334455/comments",
                            "https://graph.example/v23.0/17900000000000001/comments"]


# -- notification's delivery plan (unit) -------------------------------------------------------------

@pytest.mark.parametrize("reply_to", [
    {"page_id": DEV_PAGE_ID, "comment_id": FEED, "post_id": "1_2"},
    {"page_id": f"{DEV_PAGE_ID}/feed?x=", "psid": "7000000000000001"},
    {"page_id": "../me", "comment_id": "1_2"},
])
def test_a_delivery_plan_never_targets_a_crafted_id(reply_to):
    now = datetime.now(timezone.utc)
    plan = plan_delivery(reply_to, MessageKind.ACKNOWLEDGMENT, False, now - timedelta(minutes=1),
                         now - timedelta(minutes=1), False, None, now)
    assert plan.attempts == () and plan.skipped_reason == INVALID_REPLY_TO


def test_the_id_shapes():
    from shared.core import graph_ids   # (imported here: the rest of the module runs on older code too)
    assert all(graph_ids.is_valid("comment_id", good) for good in ("1_2", "17900000000000001", "305419896_11"))
    assert all(graph_ids.is_valid("page_id", good) for good in (DEV_PAGE_ID, "7"))
    assert not graph_ids.is_valid("page_id", "1_2") and not graph_ids.is_valid("psid", 7000)
    assert not any(graph_ids.is_valid(kind, bad) for kind in graph_ids.SHAPES for bad in CRAFTED)


# -- the real services: intake refuses at the door, nothing reaches the sandbox's /feed ----------------

@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("graph-paths"), services=("intake", "notification"),
                       extra_env={"NOTIFICATION_SENDER_POLL_SECONDS": "0.2"}).start_all()
    yield running
    running.stop_all()


def comment_complaint(comment_id, page_id=DEV_PAGE_ID, post_id="1_2"):
    created = datetime.now(timezone.utc) - timedelta(minutes=5)
    return {"text": "Jembatan di dusun kami putus, anak sekolah harus memutar jauh.",
            "channel": "facebook_comment", "last_citizen_message_at": created.isoformat(),
            "reply_to": {"page_id": page_id, "comment_id": comment_id, "post_id": post_id}}


@pytest.mark.parametrize("reply_to", [
    {"comment_id": FEED},
    {"page_id": f"{DEV_PAGE_ID}/feed?x=", "comment_id": "1_2"},
    {"comment_id": "1_2", "post_id": "../feed"},
    {"comment_id": "1_2", "platform": "instagram", "extra": "../feed"},
])
def test_a_crafted_reply_to_is_refused_over_rpc_and_nothing_reaches_the_feed(platform, reply_to):
    complaint = comment_complaint(reply_to.pop("comment_id"))
    complaint["reply_to"].update(reply_to)
    with platform.rpc() as rpc:
        before = len(rpc.intake.events_since(0, 1000))
        with pytest.raises(ValidationFailed) as refused:
            rpc.intake.file_complaint(complaint)
        assert "reply_to" in str(refused.value)
        assert len(rpc.intake.events_since(0, 1000)) == before   # nothing filed

    # A genuine comment complaint after it is answered: notification was sending all along.
    comment_id = f"{uuid.uuid4().int % 10**15}_{uuid.uuid4().int % 10**15}"
    requests.post(f"{platform.sandbox_url}/_sandbox/comments", timeout=10, json={
        "comment_id": comment_id, "page_id": DEV_PAGE_ID,
        "created_time": (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()}).raise_for_status()
    with platform.rpc() as rpc:
        rpc.intake.file_complaint(comment_complaint(comment_id))
    wait_for(lambda: [c for c in platform.sandbox_calls() if c.get("comment_id") == comment_id], 30,
             message="the genuine comment answered")
    paths = [call["path"] for call in platform.sandbox_calls()]
    assert not [path for path in paths if "feed" in path]
    assert all(re.fullmatch(r"/v[0-9.]+/[0-9_]+/(messages|comments)", path) for path in paths), paths
