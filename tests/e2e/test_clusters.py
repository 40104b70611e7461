"""One answer for many reports of the same problem, on the real services over RabbitMQ: five
citizens comment under one Page post (real signed webhooks), routing suggests them to the desk as
one cluster with the reasons, the desk confirms on the console (real HTTP, CSRF), an agency
answers the primary once — and every one of the five citizens receives the update (the Graph API
sandbox records a reply under each comment), each complaint's own ``ComplaintResponded`` is
delivered, their statuses agree everywhere, and the monthly report counts one cluster of five."""
from __future__ import annotations

import re
import time
import uuid

import pytest
import requests

import shared.glue.remote_errors  # noqa: F401 - registers remote exception types
from sandbox.control import meta_saw
from shared.core.events import parse_iso
from shared.core.reference import in_wita
from tests.support import facebook as fb
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for

DESK = "diskominfotik"
TOKENS = {DESK: "desk-cluster-token-1", "dpupr": "dpupr-cluster-token-1"}
COMMENTS = (
    "Jalan provinsi di Praya ambles, truk tidak bisa lewat",
    "Betul pak, jalan provinsi Praya ambles sejak kemarin",
    "Kapan jalan di Praya diperbaiki??",
    "Tolong segera, anak sekolah lewat situ tiap hari",
    "Jalan provinsi Praya makin parah, sudah ada yang jatuh",
)


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("clusters"), extra_env={
        "ROUTING_TOKENS": ",".join(f"{code}:{token}" for code, token in TOKENS.items()),
        "REPORTING_STATUS_RATE_PER_MINUTE": "0",
    }).start_all()
    yield running
    running.stop_all()


def desk_session(platform) -> requests.Session:
    session = requests.Session()
    base = platform.url("routing")
    form = session.get(f"{base}/console/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    signed_in = session.post(f"{base}/console/login", timeout=10, allow_redirects=False,
                             data={"csrf_token": token, "token": TOKENS[DESK], "nama": "Sari"})
    assert signed_in.status_code == 303
    return session


def replies_under(platform, comment_id: str) -> list[dict]:
    return [call for call in platform.sandbox_calls(status=200)
            if call.get("comment_id") == comment_id and call["kind"] == "comment_reply"]


def test_five_comments_under_one_post_become_one_cluster_and_one_answer_reaches_all_five(platform):
    marker = uuid.uuid4().hex[:6]
    post_id = f"{DEV_PAGE_ID}_{uuid.uuid4().int % 10**15}"
    comments = [fb.comment_change(DEV_PAGE_ID, f"{text} {marker}", post_id=post_id,
                                  author_id=str(5_550_000 + n), author_name=f"Warga {n}",
                                  created_time=int(time.time()) - 60 + n)
                for n, text in enumerate(COMMENTS)]
    comment_ids = [c["value"]["comment_id"] for c in comments]
    hook = f"{platform.url('intake')}/webhooks/facebook"
    for comment in comments:   # one webhook each, a moment apart, as Meta delivers them
        body = fb.page_body(fb.changes_entry(DEV_PAGE_ID, comment))
        meta_saw(platform.sandbox_url, body)
        assert fb.signed_post(hook, body).status_code == 200
        time.sleep(0.3)

    def filed():
        with platform.rpc() as rpc:
            found = {event["data"]["reply_to"]["comment_id"]: event for event in rpc.intake.events_since(0, 1000)
                     if event["event_type"] == "ComplaintFiled" and marker in event["data"]["text"]}
        return found if len(found) == 5 else None
    by_comment = wait_for(filed, 60, message="five comment complaints filed")
    ids = [by_comment[cid]["complaint_id"] for cid in comment_ids]
    codes = [by_comment[cid]["data"]["tracking_code"] for cid in comment_ids]
    # Each citizen got the acknowledgment under their own comment first.
    for comment_id in comment_ids:
        wait_for(lambda: replies_under(platform, comment_id), 60, message="the public acknowledgment")

    # Suggested to the desk as ONE cluster around the first comment, with the reasons.
    def suggested():
        with platform.rpc() as rpc:
            clusters = rpc.routing.suggested_links()
        mine = [c for c in clusters if c["primary"]["complaint_id"] == ids[0]]
        return mine if mine and len(mine[0]["members"]) == 4 else None
    [cluster] = wait_for(suggested, 60, message="a suggested cluster of five")
    assert {m["complaint_id"] for m in cluster["members"]} == set(ids[1:])
    assert all("same_post" in m["because"] for m in cluster["members"])
    assert all("postingan Facebook yang sama" in m["reason"] for m in cluster["members"])

    # The desk sees them on the console with the reasons, and confirms the whole cluster.
    desk = desk_session(platform)
    page = desk.get(f"{platform.url('routing')}/console/gabungan", timeout=10)
    assert page.status_code == 200
    assert f'data-primary="{codes[0]}"' in page.text
    assert all(f'data-tracking-code="{code}"' in page.text for code in codes[1:])
    assert "Postingan Facebook yang sama" in page.text and "komentar pada postingan Facebook yang sama" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    confirmed = desk.post(f"{platform.url('routing')}/console/aduan/{ids[0]}/gabung", timeout=30,
                          allow_redirects=False,
                          data={"csrf_token": csrf, "ganda": ids[1:], "kembali": "gabungan"})
    assert confirmed.status_code == 303, confirmed.text[-2000:]
    with platform.rpc() as rpc:
        linked = [rpc.routing.get_complaint(cid) for cid in ids[1:]]
        assert all(c["linked_to"] == ids[0] for c in linked)
        assert rpc.routing.suggested_links() == []
        primary = rpc.routing.get_complaint(ids[0])
        if primary["at_desk"]:   # the rules could not place it: the desk routes the primary
            rpc.routing.assign(ids[0], ["dpupr"], "Jalan provinsi", f"{DESK}:Sari")
        lead = rpc.routing.get_complaint(ids[0])["lead_agencies"][0]
    before = {cid: len(replies_under(platform, cid)) for cid in comment_ids}

    # The agency answers the primary once.
    answer = f"Tim kami memasang rambu dan menambal jalan mulai besok {marker}."
    with platform.rpc() as rpc:
        rpc.routing.respond(ids[0], lead, answer, False, f"{lead}:budi")

    # Every complaint of the cluster records the answer in its own stream, and notification
    # delivers each one's own answer to its own citizen: a reply under each of the five comments.
    def answered_everywhere():
        with platform.rpc() as rpc:
            events = rpc.routing.events_since(0, 1000)
        found = {e["complaint_id"]: e for e in events
                 if e["event_type"] == "ComplaintResponded" and e["data"]["text"] == answer}
        return found if set(found) == set(ids) else None
    responded = wait_for(answered_everywhere, 60, message="the answer recorded on all five")

    def delivered():
        with platform.rpc() as rpc:
            sent = {e["data"]["trigger_event_id"] for e in rpc.notification.events_since(0, 1000)
                    if e["event_type"] == "CitizenNotified"}
        return all(responded[cid]["event_id"] in sent for cid in ids)
    wait_for(delivered, 90, message="each citizen notified of their complaint's answer")
    updates = wait_for(lambda: (lambda got: got if all(got.values()) else None)({
        cid: [c for c in replies_under(platform, cid)[before[cid]:] if "(status: diproses)" in c["text"]]
        for cid in comment_ids}), 60, message="a reply under each of the five comments")
    assert len(updates) == 5
    assert all(codes[n] in updates[cid][0]["text"] for n, cid in enumerate(comment_ids))

    # Their statuses agree: routing, the public status page, and the monthly report.
    with platform.rpc() as rpc:
        statuses = {rpc.routing.get_complaint(cid)["public_status"] for cid in ids}
    assert statuses == {"diproses"}
    for code in codes:
        wait_for(lambda: requests.get(f"{platform.url('reporting')}/api/complaints/{code}",
                                      timeout=10).json().get("status") == "diproses", 30,
                 message=f"public status of {code}")
    filed_at = in_wita(parse_iso(by_comment[comment_ids[0]]["data"]["filed_at"]))

    def reported():
        with platform.rpc() as rpc:
            summary = rpc.reporting.monthly_summary(filed_at.year, filed_at.month)
        return summary if summary["duplicates"]["linked"] == 4 else None
    summary = wait_for(reported, 60, message="the monthly report counts the cluster")
    assert summary["duplicates"] == {"complaints": 5, "linked": 4, "clusters": 1, "problems": 1,
                                     "duplicate_share": 0.8}
    category = by_comment[comment_ids[0]]["data"]["category"]
    assert summary["duplicates_by_category"][category]["clusters"] == 1

