"""The sandbox refuses what Meta refuses: windows for every recipient, HUMAN_AGENT only for an
approved app, retired tags, one private reply per comment (none to a Page's or a removed
comment), public replies under removed comments, expiring CDN links, rate limits with usage
headers, and Instagram threads through the Page. A real HTTP server on a free port."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from sandbox import start_sandbox
from sandbox.control import citizen_wrote, meta_saw
from sandbox.graph_sandbox import commenter_psid

PAGE = "104857600123456"
TOKEN = "EAAG-page-token-ntb"
OTHER_PAGE = "209715200654321"
OTHER_TOKEN = "EAAG-governor-token"
PSID = "6543210987654321"
IGSID = "17841400000000001"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def server():
    srv = start_sandbox(pages={PAGE: TOKEN, OTHER_PAGE: OTHER_TOKEN},
                        env={"FACEBOOK_APP_SECRET": "sandbox-app-secret"})
    yield srv
    srv.stop()


@pytest.fixture
def sb(server):
    requests.post(f"{server.url}/_sandbox/reset", timeout=5).raise_for_status()
    control(server, "clock", {"now": iso(T0)})
    yield server
    requests.post(f"{server.url}/_sandbox/reset", timeout=5)


def control(sb, path, payload=None, method="POST", **params):
    resp = requests.request(method, f"{sb.url}/_sandbox/{path}", json=payload, params=params,
                            timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def post(sb, path, body, token=TOKEN):
    return requests.post(f"{sb.url}/v23.0/{path}", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)


def send(sb, recipient=PSID, messaging_type="RESPONSE", tag=None, page=PAGE, token=TOKEN,
         text="Aduan Anda sudah kami terima."):
    body = {"recipient": {"id": recipient}, "messaging_type": messaging_type,
            "message": {"text": text}}
    if tag:
        body["tag"] = tag
    return post(sb, f"{page}/messages", body, token)


def private_reply(sb, comment_id, page=PAGE, token=TOKEN):
    return post(sb, f"{page}/messages", {"recipient": {"comment_id": comment_id},
                                         "message": {"text": "Kami hubungi lewat pesan."}}, token)


def wrote(sb, at, psid=PSID, page=PAGE, platform=None):
    payload = {"page_id": page, "psid": psid, "last_message_at": iso(at)}
    if platform:
        payload["platform"] = platform
    control(sb, "conversations", payload)


def at(sb, moment):
    control(sb, "clock", {"now": iso(moment)})


def refused(resp, code, subcode=None, status=400):
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    # Meta's shape: message, type, code, error_subcode (when there is one), fbtrace_id.
    assert error["code"] == code and error.get("error_subcode") == subcode, error
    assert error["message"] and error["type"] and error["fbtrace_id"]
    return error


# -- windows for every recipient -------------------------------------------------------------

@pytest.mark.parametrize("messaging_type,tag", [("RESPONSE", None), ("UPDATE", None),
                                                ("MESSAGE_TAG", "HUMAN_AGENT"),
                                                ("MESSAGE_TAG", "CUSTOMER_FEEDBACK")])
def test_a_psid_that_never_wrote_is_outside_the_window(sb, messaging_type, tag):
    control(sb, "settings", {"human_agent_approved": True})
    error = refused(send(sb, messaging_type=messaging_type, tag=tag), 10, 2018278)
    assert "outside of allowed window" in error["message"] and error["type"] == "OAuthException"


def test_a_conversation_belongs_to_its_page(sb):
    wrote(sb, T0 - timedelta(minutes=5))
    assert send(sb).status_code == 200
    refused(send(sb, page=OTHER_PAGE, token=OTHER_TOKEN), 10, 2018278)
    # Registered without a Page: the person wrote to every Page (a shortcut for tests).
    control(sb, "conversations", {"psid": PSID, "last_message_at": iso(T0)})
    assert send(sb, page=OTHER_PAGE, token=OTHER_TOKEN).status_code == 200


@pytest.mark.parametrize("elapsed,ok", [(timedelta(hours=24), True),
                                        (timedelta(hours=24, seconds=1), False)])
def test_response_only_within_24_hours(sb, elapsed, ok):
    wrote(sb, T0)
    at(sb, T0 + elapsed)
    for messaging_type in ("RESPONSE", "UPDATE"):
        resp = send(sb, messaging_type=messaging_type)
        if ok:
            assert resp.status_code == 200, resp.text
        else:
            refused(resp, 10, 2018278)


def test_a_new_message_reopens_the_window(sb):
    wrote(sb, T0)
    at(sb, T0 + timedelta(days=3))
    refused(send(sb), 10, 2018278)
    wrote(sb, T0 + timedelta(days=3, minutes=-1))
    assert send(sb).status_code == 200


# -- HUMAN_AGENT and the other tags ----------------------------------------------------------

def test_human_agent_is_refused_until_the_app_is_approved(sb):
    wrote(sb, T0)
    at(sb, T0 + timedelta(days=2))
    error = refused(send(sb, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT"), 10, None)
    assert "permission" in error["message"]  # a permission error, not the window's

    control(sb, "settings", {"human_agent_approved": True, "page_id": OTHER_PAGE})
    refused(send(sb, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT"), 10, None)  # per Page
    control(sb, "settings", {"human_agent_approved": True})
    assert send(sb, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT").status_code == 200
    control(sb, "settings", {"human_agent_approved": False, "page_id": PAGE})
    refused(send(sb, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT"), 10, None)

    settings = control(sb, "settings", method="GET")
    assert settings["human_agent_approved"] is True
    assert settings["pages"][PAGE] == {"human_agent_approved": False}
    control(sb, "reset")
    assert control(sb, "settings", method="GET")["human_agent_approved"] is False


@pytest.mark.parametrize("elapsed,ok", [(timedelta(days=7), True),
                                        (timedelta(days=7, seconds=1), False)])
def test_human_agent_only_within_7_days(sb, elapsed, ok):
    control(sb, "settings", {"human_agent_approved": True})
    wrote(sb, T0)
    at(sb, T0 + elapsed)
    resp = send(sb, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT")
    if ok:
        assert resp.status_code == 200, resp.text
    else:
        refused(resp, 10, 2018278)
    # After 7 days nothing at all gets through.
    if not ok:
        refused(send(sb), 10, 2018278)
        refused(send(sb, messaging_type="MESSAGE_TAG", tag="CUSTOMER_FEEDBACK"), 10, 2018278)


def test_approval_from_the_environment():
    srv = start_sandbox(pages={PAGE: TOKEN}, env={"FACEBOOK_HUMAN_AGENT_APPROVED": "true"})
    try:
        control(srv, "conversations", {"page_id": PAGE, "psid": PSID,
                                       "last_message_at": iso(datetime.now(timezone.utc)
                                                              - timedelta(days=2))})
        assert send(srv, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT").status_code == 200
    finally:
        srv.stop()


@pytest.mark.parametrize("tag,subcode", [
    ("ACCOUNT_UPDATE", 1893061), ("POST_PURCHASE_UPDATE", 1893061),
    ("CONFIRMED_EVENT_UPDATE", 1893061),  # retired April 27, 2026
    ("ISSUE_RESOLUTION", None), ("APPLICATION_UPDATE", None),  # retired March 4, 2020
    ("NOT_A_TAG", None), ("human_agent", None),
])
def test_retired_and_unknown_tags_are_refused_with_100(sb, tag, subcode):
    wrote(sb, T0)
    refused(send(sb, messaging_type="MESSAGE_TAG", tag=tag), 100, subcode)


def test_customer_feedback_within_7_days_without_review(sb):
    wrote(sb, T0)
    at(sb, T0 + timedelta(days=6))
    assert send(sb, messaging_type="MESSAGE_TAG", tag="CUSTOMER_FEEDBACK").status_code == 200


# -- private replies -------------------------------------------------------------------------

def test_one_private_reply_per_comment_within_7_days(sb):
    control(sb, "comments", {"comment_id": "10_1", "created_time": iso(T0), "page_id": PAGE,
                             "psid": "5550001112223334"})
    control(sb, "comments", {"comment_id": "10_2", "created_time": iso(T0), "page_id": PAGE})
    at(sb, T0 + timedelta(days=7))
    first = private_reply(sb, "10_1")
    assert first.status_code == 200 and first.json()["recipient_id"] == "5550001112223334"
    error = refused(private_reply(sb, "10_1"), 10900)
    assert error["message"] == "(#10900) Activity already replied to"
    at(sb, T0 + timedelta(days=7, seconds=1))
    refused(private_reply(sb, "10_2"), 10, 2018278)
    listed = {c["comment_id"]: c for c in control(sb, "comments", method="GET")["comments"]}
    assert listed["10_1"]["private_reply_sent"] is True
    assert listed["10_2"]["private_reply_sent"] is False


def test_a_private_reply_opens_no_window(sb):
    control(sb, "comments", {"comment_id": "11_1", "created_time": iso(T0)})
    psid = private_reply(sb, "11_1").json()["recipient_id"]
    assert psid == commenter_psid("11_1")
    refused(send(sb, recipient=psid), 10, 2018278)
    wrote(sb, T0, psid=psid)  # the person answers in Messenger
    assert send(sb, recipient=psid).status_code == 200


def test_no_private_reply_to_a_pages_own_comment(sb):
    control(sb, "comments", {"comment_id": "12_1", "created_time": iso(T0), "page_id": PAGE,
                             "from_page": True})
    # A comment written by any Page the sandbox knows (here the Governor's).
    control(sb, "comments", {"comment_id": "12_2", "created_time": iso(T0), "page_id": PAGE,
                             "author_id": OTHER_PAGE})
    for comment_id in ("12_1", "12_2"):
        refused(private_reply(sb, comment_id), 10903)


def test_no_private_reply_to_a_removed_comment(sb):
    control(sb, "comments", {"comment_id": "13_1", "created_time": iso(T0), "page_id": PAGE})
    control(sb, "comments", {"comment_id": "13_1", "removed": True})  # only that field changes
    error = refused(private_reply(sb, "13_1"), 100, 2018292)
    assert "comment_id" in error["message"]
    comment = [c for c in control(sb, "comments", method="GET")["comments"]
               if c["comment_id"] == "13_1"][0]
    assert comment["created_time"] == iso(T0) and comment["removed"] is True


def test_a_private_reply_refused_for_one_comment(sb):
    control(sb, "comments", {"comment_id": "14_1", "created_time": iso(T0),
                             "private_reply_error": {"code": 10903}})
    refused(private_reply(sb, "14_1"), 10903)
    control(sb, "comments", {"comment_id": "14_1", "private_reply_error": None})
    assert private_reply(sb, "14_1").status_code == 200


def test_unknown_comments_can_be_refused(sb):
    # Default: an unregistered comment is a citizen's comment written just now.
    assert private_reply(sb, "15_1").status_code == 200
    control(sb, "settings", {"unknown_comments": "refuse"})
    refused(private_reply(sb, "15_2"), 100, 2018292)
    refused(post(sb, "15_3/comments", {"message": "Terima kasih."}), 100, 33)


# -- public comment replies ------------------------------------------------------------------

def test_public_reply_refused_under_a_removed_comment(sb):
    control(sb, "comments", {"comment_id": "16_1", "created_time": iso(T0), "page_id": PAGE})
    assert post(sb, "16_1/comments", {"message": "Aduan kami teruskan."}).status_code == 200
    control(sb, "comments", {"comment_id": "16_1", "removed": True})
    error = refused(post(sb, "16_1/comments", {"message": "Pembaruan."}), 100, 33)
    assert error["type"] == "GraphMethodException" and "does not exist" in error["message"]


# -- learning from webhooks ------------------------------------------------------------------

def page_webhook(*entries):
    return {"object": "page", "entry": list(entries)}


def test_webhooks_teach_the_sandbox_who_wrote_and_which_comments_exist(sb):
    stamp = int((T0 - timedelta(hours=1)).timestamp() * 1000)
    body = page_webhook(
        {"id": PAGE, "time": stamp, "messaging": [
            {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": stamp,
             "message": {"mid": "m_1", "text": "Jalan rusak"}},
            # The Page's own echo opens nothing for anyone.
            {"sender": {"id": PAGE}, "recipient": {"id": "999"}, "timestamp": stamp,
             "message": {"mid": "m_2", "is_echo": True, "text": "Halo"}},
            # A delivery receipt is no message.
            {"sender": {"id": "998"}, "recipient": {"id": PAGE}, "timestamp": stamp,
             "delivery": {"mids": ["m_1"], "watermark": stamp}}]},
        # With Conversation Routing, messages for this app may come in standby.
        {"id": PAGE, "time": stamp, "standby": [
            {"sender": {"id": "777"}, "recipient": {"id": PAGE}, "timestamp": stamp,
             "message": {"mid": "m_3", "text": "Sampah"}}]},
        {"id": PAGE, "time": stamp, "changes": [
            {"field": "feed", "value": {"item": "comment", "verb": "add", "comment_id": "20_1",
                                        "post_id": f"{PAGE}_20", "from": {"id": "555", "name": "W"},
                                        "created_time": int(T0.timestamp()) - 60,
                                        "message": "Lampu mati"}},
            {"field": "feed", "value": {"item": "comment", "verb": "add", "comment_id": "20_2",
                                        "post_id": f"{PAGE}_20",
                                        "from": {"id": PAGE, "name": "NTBCare"},
                                        "created_time": int(T0.timestamp()), "message": "Halo"}},
            {"field": "feed", "value": {"item": "comment", "verb": "remove", "comment_id": "20_3",
                                        "post_id": f"{PAGE}_20", "from": {"id": "556"}}}]})
    learned = control(sb, "webhooks", body)["learned"]
    assert learned == {"conversations": 2, "comments": 2, "removed": 1}
    assert send(sb).status_code == 200
    assert send(sb, recipient="777").status_code == 200
    refused(send(sb, recipient="999"), 10, 2018278)
    refused(send(sb, recipient="998"), 10, 2018278)
    assert private_reply(sb, "20_1").status_code == 200
    refused(private_reply(sb, "20_2"), 10903)
    refused(post(sb, "20_3/comments", {"message": "x"}), 100, 33)
    # An older webhook arriving late does not move the last message back.
    old = int((T0 - timedelta(days=3)).timestamp() * 1000)
    control(sb, "webhooks", page_webhook({"id": PAGE, "time": old, "messaging": [
        {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": old,
         "message": {"mid": "m_0", "text": "lama"}}]}))
    assert send(sb).status_code == 200


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((raw, self.headers["X-Hub-Signature-256"]))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"EVENT_RECEIVED")

    def log_message(self, *args):
        pass


def test_webhooks_are_delivered_signed_like_meta(sb):
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        raw = json.dumps(page_webhook({"id": PAGE, "time": 1, "messaging": [
            {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": iso(T0),
             "message": {"mid": "m_9", "text": "Tolong"}}]}), separators=(",", ":")).encode()
        url = f"http://127.0.0.1:{receiver.server_address[1]}/webhooks/facebook"
        resp = requests.post(f"{sb.url}/_sandbox/webhooks", params={"deliver_to": url}, data=raw,
                             headers={"Content-Type": "application/json"}, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["delivered"] == {"status": 200, "body": "EVENT_RECEIVED"}
        body, signature = _Receiver.received[-1]
        assert body == raw
        assert signature == "sha256=" + hmac.new(b"sandbox-app-secret", raw,
                                                  hashlib.sha256).hexdigest()
        assert send(sb).status_code == 200
    finally:
        receiver.shutdown()


# -- media whose links expire ----------------------------------------------------------------

def test_media_is_served_until_its_link_expires(sb):
    media = control(sb, "media", {"content_type": "image/png", "expires_in_seconds": 600})["media"]
    url = media["url"]
    assert "/cdn/v/" in url and "oh=" in url and "oe=" in url
    first = requests.get(url, timeout=5)
    assert first.status_code == 200 and first.headers["Content-Type"] == "image/png"
    assert first.content.startswith(b"\x89PNG") and hashlib.sha256(first.content).hexdigest() \
        == media["sha256"]
    at(sb, T0 + timedelta(seconds=600))
    assert requests.get(url, timeout=5).status_code == 200
    at(sb, T0 + timedelta(seconds=601))
    gone = requests.get(url, timeout=5)
    assert (gone.status_code, gone.text) == (403, "URL signature expired")
    listed = control(sb, "media", method="GET")["media"][0]
    assert (listed["fetches"], listed["refused"]) == (2, 1)


def test_media_links_cannot_be_extended_or_reused(sb):
    media = control(sb, "media", {"content_type": "video/mp4", "expires_in_seconds": 60,
                                  "expired_status": 404, "size": 4096})["media"]
    got = requests.get(media["url"], timeout=5)
    assert got.status_code == 200 and len(got.content) == 4096 and got.content[4:8] == b"ftyp"
    forged = media["url"].rsplit("oe=", 1)[0] + "oe=7FFFFFFF"
    assert requests.get(forged, timeout=5).status_code == 403
    control(sb, f"media/{media['id']}/expire")
    assert requests.get(media["url"], timeout=5).status_code == 404  # as asked
    other = control(sb, "media", {"content_type": "image/jpeg"})["media"]
    control(sb, f"media/{other['id']}/remove")
    assert requests.get(other["url"], timeout=5).status_code == 404
    assert requests.get(f"{sb.url}/cdn/v/t39.1997-6/nothing_n.jpg", timeout=5).status_code == 404


def test_media_bytes_are_distinct_unless_asked_identical(sb):
    a = control(sb, "media", {"content_type": "image/gif"})["media"]
    b = control(sb, "media", {"content_type": "image/gif"})["media"]
    c = control(sb, "media", {"content_type": "image/gif", "identical": True})["media"]
    d = control(sb, "media", {"content_type": "image/gif", "identical": True})["media"]
    assert a["sha256"] != b["sha256"] and c["sha256"] == d["sha256"]
    e = control(sb, "media", {"content_type": "application/octet-stream",
                              "content_base64": "AAECAw=="})["media"]
    assert requests.get(e["url"], timeout=5).content == b"\x00\x01\x02\x03"


# -- rate limits with usage headers ----------------------------------------------------------

@pytest.mark.parametrize("code,header,use_case", [
    (80006, "X-Business-Use-Case-Usage", "messenger"),
    (80001, "X-Business-Use-Case-Usage", "pages"),
    (613, "X-Business-Use-Case-Usage", "messenger"),
    (32, "X-Business-Use-Case-Usage", "pages"),
    (4, "X-App-Usage", None),
    (17, "X-App-Usage", None),
])
def test_rate_limit_answers_carry_usage_headers(sb, code, header, use_case):
    wrote(sb, T0)
    control(sb, "faults", {"code": code, "times": 1, "regain_minutes": 7})
    resp = send(sb)
    error = refused(resp, code)
    assert error["is_transient"] is True
    usage = json.loads(resp.headers[header])
    if use_case:
        [item] = usage[PAGE]
        assert item == {"type": use_case, "call_count": 100, "total_cputime": 0, "total_time": 0,
                        "estimated_time_to_regain_access": 7}
    else:
        assert usage == {"call_count": 100, "total_cputime": 0, "total_time": 0}
    assert send(sb).status_code == 200


def test_a_rate_limit_fault_with_its_own_usage(sb):
    control(sb, "faults", {"code": 80002, "times": 1, "usage_type": "instagram",
                           "call_count": 104, "total_time": 30, "regain_minutes": 0,
                           "headers": {"X-Page-Usage": {"call_count": 99}}})
    resp = send(sb)
    refused(resp, 80002)
    assert json.loads(resp.headers["X-Business-Use-Case-Usage"])[PAGE][0] == {
        "type": "instagram", "call_count": 104, "total_cputime": 0, "total_time": 30,
        "estimated_time_to_regain_access": 0}
    assert json.loads(resp.headers["X-Page-Usage"]) == {"call_count": 99}


def test_usage_headers_on_every_answer(sb):
    wrote(sb, T0)
    control(sb, "usage", {"business": {"type": "messenger", "call_count": 85,
                                       "estimated_time_to_regain_access": 0},
                          "app": {"call_count": 12}})
    control(sb, "usage", {"page_id": OTHER_PAGE, "business": {"call_count": 99}})
    resp = send(sb)
    assert resp.status_code == 200
    assert json.loads(resp.headers["X-Business-Use-Case-Usage"]) == {PAGE: [{
        "type": "messenger", "call_count": 85, "total_cputime": 0, "total_time": 0,
        "estimated_time_to_regain_access": 0}]}
    assert json.loads(resp.headers["X-App-Usage"]) == {"call_count": 12, "total_cputime": 0,
                                                       "total_time": 0}
    other = send(sb, page=OTHER_PAGE, token=OTHER_TOKEN)  # refused (no window), still counted
    assert json.loads(other.headers["X-Business-Use-Case-Usage"])[OTHER_PAGE][0]["call_count"] \
        == 99
    control(sb, "usage", method="DELETE")
    assert "X-Business-Use-Case-Usage" not in send(sb).headers


# -- Instagram threads through the Page ------------------------------------------------------

def test_instagram_threads_have_the_same_windows(sb):
    wrote(sb, T0, psid=IGSID, platform="instagram")
    ok = send(sb, recipient=IGSID)
    assert ok.status_code == 200 and ok.json()["recipient_id"] == IGSID
    call = control(sb, "calls", method="GET")["calls"][-1]
    assert (call["platform"], call["kind"]) == ("instagram", "messenger")
    at(sb, T0 + timedelta(hours=24, seconds=1))
    refused(send(sb, recipient=IGSID), 10, 2534022)
    refused(send(sb, recipient=IGSID, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT"), 10, None)
    control(sb, "settings", {"human_agent_approved": True})
    assert send(sb, recipient=IGSID, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT").ok
    # CUSTOMER_FEEDBACK is not available on Instagram.
    refused(send(sb, recipient=IGSID, messaging_type="MESSAGE_TAG", tag="CUSTOMER_FEEDBACK"), 100)
    at(sb, T0 + timedelta(days=7, seconds=1))
    refused(send(sb, recipient=IGSID, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT"),
            10, 2534022)


@pytest.mark.parametrize("text,ok", [
    ("a" * 1000, True),                 # 1000 bytes: accepted
    ("a" * 1001, False),                # 1001 bytes: refused
    ("\u00e9" * 500, True),             # 500 characters of 2 bytes = 1000 bytes
    ("\u00e9" * 500 + "a", False),      # 501 characters, 1001 bytes
    ("\U0001F600" * 251, False),        # 251 characters of 4 bytes = 1004 bytes
], ids=["1000-bytes", "1001-bytes", "1000-bytes-2-byte-chars", "1001-bytes-2-byte-chars",
        "1004-bytes-emoji"])
def test_instagram_text_is_limited_to_1000_utf8_bytes(sb, text, ok):
    wrote(sb, T0, psid=IGSID, platform="instagram")
    resp = send(sb, recipient=IGSID, text=text)
    if ok:
        assert resp.status_code == 200, resp.text
    else:
        error = refused(resp, 100)
        assert "too long" in error["message"]
        assert error["message"].startswith("(#100)")


def test_messenger_keeps_its_2000_character_limit(sb):
    wrote(sb, T0)
    # 1999 characters (3998 bytes) is over Instagram's limit but fine on Messenger.
    assert send(sb, text="\u00e9" * 1999).status_code == 200
    refused(send(sb, text="a" * 2000), 100)


def test_instagram_webhooks_open_threads_for_the_linked_page(sb):
    stamp = int(T0.timestamp() * 1000)
    body = {"object": "instagram", "entry": [{"id": "17841400999", "time": stamp, "messaging": [
        {"sender": {"id": IGSID}, "recipient": {"id": "17841400999"}, "timestamp": stamp,
         "message": {"mid": "aWdf", "text": "Halo admin"}}]}]}
    control(sb, "webhooks", body, page_id=PAGE)
    assert send(sb, recipient=IGSID).status_code == 200
    refused(send(sb, recipient=IGSID, page=OTHER_PAGE, token=OTHER_TOKEN), 10, 2018278)
    conversations = control(sb, "conversations", method="GET")["conversations"]
    assert conversations == [{"page_id": PAGE, "psid": IGSID, "last_message_at": iso(T0),
                              "platform": "instagram"}]


def test_faults_can_target_one_platform(sb):
    wrote(sb, T0)
    wrote(sb, T0, psid=IGSID, platform="instagram")
    control(sb, "faults", {"code": 1200, "platform": "instagram"})
    assert send(sb).status_code == 200
    refused(send(sb, recipient=IGSID), 1200)


def test_bad_control_input_is_a_400(sb):
    for path, payload in (("conversations", {"psid": PSID, "platform": "whatsapp"}),
                          ("settings", {"unknown_comments": "maybe"}),
                          ("settings", {"nonsense": 1}),
                          ("comments", {"comment_id": "1_1", "private_reply_error": "x"}),
                          ("media", {"content_type": "image/tiff"}),
                          ("media", {"content_type": "image/png", "expired_status": 500}),
                          ("webhooks", {"object": "page"}),
                          ("usage", {}),
                          ("faults", {"code": 4, "headers": "x"})):
        resp = requests.post(f"{sb.url}/_sandbox/{path}", json=payload, timeout=5)
        assert resp.status_code == 400, (path, payload, resp.text)
    assert requests.post(f"{sb.url}/_sandbox/media/99/expire", timeout=5).status_code == 404


def test_the_control_helpers(sb):
    citizen_wrote(sb.url, PAGE, PSID, T0 - timedelta(hours=1))
    assert send(sb).status_code == 200
    citizen_wrote(sb.url, PAGE, IGSID, iso(T0), platform="instagram")
    assert send(sb, recipient=IGSID).status_code == 200
    stamp = int(T0.timestamp() * 1000)
    learned = meta_saw(sb.url, page_webhook({"id": OTHER_PAGE, "time": stamp, "messaging": [
        {"sender": {"id": PSID}, "recipient": {"id": OTHER_PAGE}, "timestamp": stamp,
         "message": {"mid": "m_5", "text": "Halo"}}]}))
    assert learned == {"conversations": 1, "comments": 0, "removed": 0}
    assert send(sb, page=OTHER_PAGE, token=OTHER_TOKEN).status_code == 200
