"""Intake against the running service (its own process, real HTTP, real broker): Meta's webhook
(handshake, signatures, batches, every item kind, two Pages, duplicates, quarantine and replay,
a body left unprocessed by a crash, the 200 before processing), what real Pages send besides
complaints (stickers and the like button, standby, handover, reactions, referrals, postbacks, edits,
other objects, video comments — payloads from tests/support/meta_payloads.py), Instagram Direct,
the conversation rules, the web API and the RPC."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid

import pytest
import requests

from shared.core.errors import ValidationFailed
from services.intake.domain.webhook import MAX_WEBHOOK_BYTES
from tests.support import facebook as fb
from tests.support import meta_payloads as meta
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for

SECOND_PAGE_ID = "200000000000002"
THIRD_PAGE_ID = "300000000000003"
IG_ACCOUNT = "17841400000000001"          # the Instagram professional account of the second Page


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("intake"), services=("intake",), with_sandbox=False,
                       extra_env={"INTAKE_BUBBLE_SECONDS": "120", "INTAKE_INBOX_RETRY_SECONDS": "1",
                                  "FACEBOOK_INSTAGRAM_ACCOUNTS": f"{IG_ACCOUNT}:{SECOND_PAGE_ID}"})
    running.start_all()
    yield running
    running.stop_all()


def hook(platform) -> str:
    return f"{platform.url('intake')}/webhooks/facebook"


def events(platform, event_type=None, complaint_id=None) -> list[dict]:
    found: list[dict] = []
    with platform.rpc() as rpc:
        while True:
            page = rpc.intake.events_since(found[-1]["position"] if found else 0, 1000)
            found.extend(page)
            if len(page) < 1000:
                break
    return [e for e in found if (event_type is None or e["event_type"] == event_type)
            and (complaint_id is None or e["complaint_id"] == complaint_id)]


def filed_with(platform, marker: str, expected: int = 1, timeout: float = 10) -> list[dict]:
    """The ComplaintFiled events whose text holds ``marker`` (waits for ``expected`` of them)."""
    def found():
        hits = [e for e in events(platform, "ComplaintFiled") if marker in e["data"]["text"]]
        return hits if len(hits) >= expected else None
    return wait_for(found, timeout, message=f"ComplaintFiled with {marker}")


def mentions(platform, marker: str) -> list[dict]:
    return [e for e in events(platform) if marker in json.dumps(e)]


def db(platform) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{platform.data_dir / 'intake.db'}?mode=ro", uri=True)


# -- handshake and signatures --------------------------------------------------------------------
def test_verification_handshake(platform):
    params = {"hub.mode": "subscribe", "hub.verify_token": fb.VERIFY_TOKEN, "hub.challenge": "1158201444"}
    answer = requests.get(hook(platform), params=params, timeout=5)
    assert answer.status_code == 200 and answer.text == "1158201444"
    wrong = requests.get(hook(platform), params={**params, "hub.verify_token": "guess"}, timeout=5)
    assert wrong.status_code == 403 and "1158201444" not in wrong.text
    missing = requests.get(hook(platform), params={"hub.mode": "subscribe", "hub.challenge": "1"}, timeout=5)
    assert missing.status_code == 403
    health = requests.get(f"{platform.url('intake')}/health", timeout=5).json()
    assert health["status"] == "ok" and health["webhook_bodies_pending"] == 0


def test_signatures_good_missing_forged_and_size_limit(platform):
    marker = f"sig{uuid.uuid4().hex[:8]}"
    body = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, fb.new_psid(), f"Lampu jalan mati di Selong {marker}")))
    raw = json.dumps(body).encode()
    assert fb.signed_post(hook(platform), body, header="").status_code == 403
    assert requests.post(hook(platform), data=raw, timeout=5,
                         headers={"Content-Type": "application/json"}).status_code == 403
    assert fb.signed_post(hook(platform), body, app_secret="not-the-secret").status_code == 403
    # A valid signature of other bytes: the body was tampered with on the way.
    tampered = fb.signature(raw.replace(b"Selong", b"Praya"), fb.APP_SECRET)
    assert fb.signed_post(hook(platform), body, raw=raw, header=tampered).status_code == 403
    assert fb.signed_post(hook(platform), body, header="sha1=" + "0" * 40).status_code == 403
    with db(platform) as connection:
        stored = connection.execute("select count(*) from webhook_inbox where body like ?",
                                    (f"%{marker}%",)).fetchone()[0]
    assert stored == 0 and mentions(platform, marker) == []

    too_big = {"object": "page", "entry": [], "padding": "x" * (MAX_WEBHOOK_BYTES + 10)}
    assert fb.signed_post(hook(platform), too_big, timeout=60).status_code == 413

    answer = fb.signed_post(hook(platform), body)
    assert answer.status_code == 200
    # The 200 came after the body was committed to the inbox.
    with db(platform) as connection:
        assert connection.execute("select count(*) from webhook_inbox where body like ?",
                                  (f"%{marker}%",)).fetchone()[0] == 1
    filed = filed_with(platform, marker)[0]
    assert filed["data"]["region_code"] == "5203"


# -- batches, item kinds, Pages, duplicates -------------------------------------------------------
def test_multi_entry_batch_with_every_item_kind_and_two_pages(platform):
    marker = uuid.uuid4().hex[:8]
    psid_a, psid_b = fb.new_psid(), fb.new_psid()
    sent_ms = fb.now_ms() - 5_000
    comment = fb.comment_change(DEV_PAGE_ID, f"Sampah menumpuk di pasar Cakranegara Mataram {marker}c",
                                created_time=int(time.time()) - 30)
    own_comment = fb.comment_change(DEV_PAGE_ID, f"Terima kasih laporannya {marker}own", author_id=DEV_PAGE_ID,
                                    author_name="NTBCare")
    body = fb.page_body(
        fb.messaging_entry(DEV_PAGE_ID,
                           fb.text_message(DEV_PAGE_ID, psid_a, f"Jalan rusak parah di Praya {marker}a",
                                           timestamp_ms=sent_ms),
                           fb.echo_message(DEV_PAGE_ID, psid_a, f"Balasan otomatis {marker}echo"),
                           fb.delivery(DEV_PAGE_ID, psid_a),
                           fb.read_receipt(DEV_PAGE_ID, psid_a)),
        fb.messaging_entry(SECOND_PAGE_ID,
                           fb.attachment_message(SECOND_PAGE_ID, psid_b,
                                                 ["https://scontent.xx.fbcdn.net/v/t1/banjir1.jpg",
                                                  "https://scontent.xx.fbcdn.net/v/t1/banjir2.jpg"],
                                                 text=f"Banjir di Woha Bima {marker}b")),
        fb.changes_entry(DEV_PAGE_ID, comment, own_comment))
    assert fb.signed_post(hook(platform), body).status_code == 200

    messenger = filed_with(platform, f"{marker}a")[0]["data"]
    assert messenger["channel"] == "facebook_messenger"
    assert messenger["reply_to"] == {"page_id": DEV_PAGE_ID, "psid": psid_a}
    assert messenger["last_citizen_message_at"].startswith(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sent_ms / 1000)))
    assert messenger["region_code"] == "5202" and messenger["category"] == "infrastruktur"
    assert set(messenger) >= {"tracking_code", "filed_at", "attachments", "priority", "reasons", "confidential",
                              "external_ref"}

    second_page = filed_with(platform, f"{marker}b")[0]["data"]
    assert second_page["reply_to"] == {"page_id": SECOND_PAGE_ID, "psid": psid_b}
    assert [a["url"] for a in second_page["attachments"]] == [
        "https://scontent.xx.fbcdn.net/v/t1/banjir1.jpg", "https://scontent.xx.fbcdn.net/v/t1/banjir2.jpg"]
    assert {a["type"] for a in second_page["attachments"]} == {"image"}

    from_comment = filed_with(platform, f"{marker}c")[0]["data"]
    value = comment["value"]
    assert from_comment["channel"] == "facebook_comment"
    assert from_comment["reply_to"] == {"page_id": DEV_PAGE_ID, "comment_id": value["comment_id"],
                                        "post_id": value["post_id"]}
    assert from_comment["last_citizen_message_at"] is not None

    # Echo, delivery, read and the Page's own comment file nothing.
    assert mentions(platform, f"{marker}echo") == [] and mentions(platform, f"{marker}own") == []
    filed = events(platform, "ComplaintFiled")
    assert len(filed) == len({e["complaint_id"] for e in filed})
    # No name leaves intake: the commenter's name is nowhere in the events.
    assert mentions(platform, "Warga NTB") == []


def test_comment_edit_and_remove(platform):
    marker = uuid.uuid4().hex[:8]
    added = fb.comment_change(DEV_PAGE_ID, f"Jembatan putus di Sembalun {marker}")
    comment_id, post_id = added["value"]["comment_id"], added["value"]["post_id"]
    assert fb.signed_post(hook(platform), fb.page_body(fb.changes_entry(DEV_PAGE_ID, added))).status_code == 200
    complaint_id = filed_with(platform, marker)[0]["complaint_id"]

    edited = fb.comment_change(DEV_PAGE_ID, f"Jembatan putus di Sembalun, warga terisolasi {marker}", verb="edited",
                               comment_id=comment_id, post_id=post_id)
    for _ in range(2):  # Meta delivers the edit twice: one amendment
        assert fb.signed_post(hook(platform), fb.page_body(fb.changes_entry(DEV_PAGE_ID, edited))).status_code == 200
    amended = wait_for(lambda: events(platform, "ComplaintAmended", complaint_id), 10, message="ComplaintAmended")
    assert amended[0]["data"]["why"] == "comment_edited"
    assert "warga terisolasi" in amended[0]["data"]["text"]

    removed = fb.comment_change(DEV_PAGE_ID, "", verb="remove", comment_id=comment_id, post_id=post_id)
    assert fb.signed_post(hook(platform), fb.page_body(fb.changes_entry(DEV_PAGE_ID, removed))).status_code == 200
    gone = wait_for(lambda: events(platform, "CitizenCommentRemoved", complaint_id), 10,
                    message="CitizenCommentRemoved")
    assert gone[0]["data"]["comment_id"] == comment_id
    assert len(events(platform, "ComplaintAmended", complaint_id)) == 1


def test_duplicate_delivery_files_nothing_new(platform):
    marker = uuid.uuid4().hex[:8]
    psid = fb.new_psid()
    body = fb.page_body(
        fb.messaging_entry(DEV_PAGE_ID, fb.text_message(DEV_PAGE_ID, psid, f"Pungli di kantor desa Kuripan {marker}m")),
        fb.changes_entry(DEV_PAGE_ID, fb.comment_change(DEV_PAGE_ID, f"Puskesmas tutup di Taliwang {marker}k")))
    for _ in range(3):
        assert fb.signed_post(hook(platform), body).status_code == 200
    # Two more at the same moment.
    threads = [threading.Thread(target=fb.signed_post, args=(hook(platform), body)) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    time.sleep(1)
    assert len(filed_with(platform, f"{marker}m")) == 1
    assert len(filed_with(platform, f"{marker}k")) == 1
    assert events(platform, "ComplaintAmended", filed_with(platform, f"{marker}m")[0]["complaint_id"]) == []
    assert filed_with(platform, f"{marker}m")[0]["data"]["confidential"] is True   # pungli


# -- conversation rules ---------------------------------------------------------------------------
def test_burst_of_bubbles_is_one_complaint_then_messages_then_new_complaint(platform):
    marker = uuid.uuid4().hex[:8]
    psid = fb.new_psid()
    start = fb.now_ms() - 600_000
    bubbles = [(0, f"Pak, mau lapor {marker}"), (15_000, "jalan di dsn Montong Praya"),
               (40_000, "rusak parah sdh 3 bln"), (70_000, "tolong diperbaiki")]
    for offset, text in bubbles:
        body = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(DEV_PAGE_ID, psid, text, start + offset)))
        assert fb.signed_post(hook(platform), body).status_code == 200
    filed = filed_with(platform, marker)
    assert len(filed) == 1
    complaint_id = filed[0]["complaint_id"]
    amended = wait_for(lambda: (lambda found: found if len(found) == 3 else None)(
        events(platform, "ComplaintAmended", complaint_id)), 10, message="three amendments")
    assert [e["data"]["why"] for e in amended] == ["more_messages"] * 3
    assert amended[-1]["data"]["text"] == "\n".join(text for _offset, text in bubbles)
    assert amended[-1]["data"]["last_citizen_message_at"].startswith(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((start + 70_000) / 1000)))

    # Five minutes later (Meta's time): a message on the open complaint, not an amendment.
    later = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.attachment_message(
        DEV_PAGE_ID, psid, ["https://scontent.xx.fbcdn.net/v/t1/jalan.jpg"], timestamp_ms=start + 370_000)))
    assert fb.signed_post(hook(platform), later).status_code == 200
    received = wait_for(lambda: events(platform, "CitizenMessageReceived", complaint_id), 10,
                        message="CitizenMessageReceived")[0]["data"]
    assert [(a["type"], a["url"]) for a in received["attachments"]] == [
        ("image", "https://scontent.xx.fbcdn.net/v/t1/jalan.jpg")]   # (plus the media store's media_id)
    assert received["reply_to"] == {"page_id": DEV_PAGE_ID, "psid": psid}
    assert len(events(platform, "ComplaintAmended", complaint_id)) == 3

    # "ADUAN BARU" starts a new complaint on the same conversation.
    fresh = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, f"ADUAN BARU: sampah menumpuk di Senggigi {marker}2", start + 400_000)))
    assert fb.signed_post(hook(platform), fresh).status_code == 200
    second = filed_with(platform, f"{marker}2")[0]
    assert second["complaint_id"] != complaint_id
    assert second["data"]["text"].startswith("sampah menumpuk")


def test_status_query_records_status_requested(platform):
    with platform.rpc() as rpc:
        filed = rpc.intake.file_complaint({"text": "Bantuan sosial tidak sampai di Dompu", "channel": "api"})
    psid = fb.new_psid()
    code = filed["tracking_code"]
    typed = code.lower().replace("-", " ")
    sent_ms = fb.now_ms() - 1000
    body = fb.page_body(fb.messaging_entry(SECOND_PAGE_ID, fb.text_message(SECOND_PAGE_ID, psid, f"cek {typed}",
                                                                           sent_ms)))
    assert fb.signed_post(hook(platform), body).status_code == 200
    asked = wait_for(lambda: events(platform, "StatusRequested", filed["complaint_id"]), 10,
                     message="StatusRequested")[0]["data"]
    assert asked["tracking_code"] == code
    assert asked["reply_to"] == {"page_id": SECOND_PAGE_ID, "psid": psid}
    assert asked["message_at"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sent_ms / 1000)))
    assert [e for e in events(platform, "ComplaintFiled") if e["data"]["text"].startswith("cek")] == []


# -- quarantine, replay, crash recovery --------------------------------------------------------------
def test_quarantine_replay_and_a_body_left_unprocessed(platform):
    marker = uuid.uuid4().hex[:8]
    good = fb.text_message(DEV_PAGE_ID, fb.new_psid(), f"Air PDAM mati di Ampenan {marker}good")
    broken = {"recipient": {"id": DEV_PAGE_ID}, "timestamp": fb.now_ms(), "message": {"mid": fb.new_mid(), "text": "x"}}
    unknown_page = fb.text_message(THIRD_PAGE_ID, fb.new_psid(), f"Jalan berlubang di Sumbawa {marker}third")
    body = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, good, broken), fb.messaging_entry(THIRD_PAGE_ID, unknown_page))
    assert fb.signed_post(hook(platform), body).status_code == 200
    assert fb.signed_post(hook(platform), None, raw=b"{not json").status_code == 200
    filed_with(platform, f"{marker}good")

    def all_quarantined():      # both bodies are processed behind their 200, in arrival order
        with platform.rpc() as rpc:
            found = [q for q in rpc.intake.quarantined(100) if q["kind"] == "webhook"]
        joined = " | ".join(q["reason"] for q in found)
        return found if "sender.id" in joined and THIRD_PAGE_ID in joined and "not JSON" in joined else None
    quarantined = wait_for(all_quarantined, 10, message="the three items quarantined")
    third = next(q for q in quarantined if THIRD_PAGE_ID in q["reason"])
    assert mentions(platform, f"{marker}third") == []
    with platform.rpc() as rpc:
        assert rpc.intake.replay_quarantined(third["item_id"], "desk:ani")["outcome"] == "still_quarantined"

    # Ops configure the third Page and restart intake; a body stored just before a crash (never
    # processed) is picked up by the inbox timer.
    platform.stop("intake")
    left_over = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, fb.new_psid(), f"Listrik padam di Gerung {marker}crash")))
    with sqlite3.connect(platform.data_dir / "intake.db") as connection:
        connection.execute("insert into webhook_inbox (received_at, body, state) values (?, ?, 'pending')",
                           ("2024-01-01T00:00:00.000000Z", json.dumps(left_over)))
    platform.env["FACEBOOK_PAGES"] += f",{THIRD_PAGE_ID}:third-page-token"
    platform.start("intake")
    filed_with(platform, f"{marker}crash")

    with platform.rpc() as rpc:
        assert rpc.intake.replay_quarantined(third["item_id"], "desk:ani")["outcome"] == "replayed"
        assert rpc.intake.replay_quarantined(third["item_id"], "desk:ani")["outcome"] == "already_replayed"
        assert third["item_id"] not in [q["item_id"] for q in rpc.intake.quarantined(100)]
    replayed = filed_with(platform, f"{marker}third")[0]["data"]
    assert replayed["reply_to"]["page_id"] == THIRD_PAGE_ID and replayed["region_code"] == "5204"


# -- the 200 comes first ------------------------------------------------------------------------------
def test_a_large_batch_is_answered_at_once_and_processed_behind_the_answer(platform):
    """Meta waits 20 s at most and batches up to 1000 updates: the answer must not wait for the
    classifier. 1000 updates — 100 long messages (emoji, JSON-escaped: well over the old 1 MiB
    cap) among deliveries and reads — are answered as soon as they are stored; the complaints
    appear afterwards."""
    marker = uuid.uuid4().hex[:8]
    long_text = "Jalan provinsi rusak parah di Praya " + "\U0001F6A7" * 900
    entries = []
    for e in range(10):
        psids = [fb.new_psid() for _ in range(10)]
        items = [fb.text_message(DEV_PAGE_ID, psid, f"{long_text} {marker}-{e}-{i}") for i, psid in enumerate(psids)]
        items += [fb.delivery(DEV_PAGE_ID, psids[i % 10]) for i in range(45)]
        items += [fb.read_receipt(DEV_PAGE_ID, psids[i % 10]) for i in range(45)]
        entries.append(fb.messaging_entry(DEV_PAGE_ID, *items))
    body = fb.page_body(*entries)
    raw = json.dumps(body).encode()                      # ensure_ascii: every emoji as two \uXXXX
    assert sum(len(entry["messaging"]) for entry in entries) == 1000 and len(raw) > 1024 * 1024
    started = time.monotonic()
    answer = fb.signed_post(hook(platform), body, raw=raw, timeout=20)
    answered_in = time.monotonic() - started
    assert answer.status_code == 200 and answered_in < 5, answered_in

    def outcome():
        with db(platform) as connection:
            row = connection.execute("select state, outcome from webhook_inbox where body like ?",
                                     (f"%{marker}-0-0%",)).fetchone()
        return json.loads(row[1]) if row and row[0] == "processed" else None
    assert wait_for(outcome, 60, message="the batch processed") == {"filed": 100, "ignored": 900}
    assert len(filed_with(platform, marker, expected=100)) == 100


# -- what real Pages send besides complaints ------------------------------------------------------------
def like_without_payload_sticker_id(page_id: str, psid: str) -> dict:
    """The 👍 with ``sticker_id`` on the message only: its ``image`` payload holds just the URL."""
    message = meta.like_button(page_id, psid)
    del message["message"]["attachments"][0]["payload"]["sticker_id"]
    return message


def test_a_like_or_sticker_never_files_and_a_like_after_the_answer_is_recorded(platform):
    marker = uuid.uuid4().hex[:8]
    psid, stranger = fb.new_psid(), fb.new_psid()
    first = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, f"Lampu jalan mati di Kopang {marker}", fb.now_ms() - 600_000)))
    assert fb.signed_post(hook(platform), first).status_code == 200
    complaint_id = filed_with(platform, marker)[0]["complaint_id"]

    body = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, meta.like_button(DEV_PAGE_ID, psid),
                                           meta.sticker_transition(DEV_PAGE_ID, psid),
                                           meta.like_button(DEV_PAGE_ID, stranger, meta.LIKE_MEDIUM),
                                           meta.sticker_only(DEV_PAGE_ID, stranger),
                                           like_without_payload_sticker_id(DEV_PAGE_ID, stranger)))
    assert fb.signed_post(hook(platform), body).status_code == 200
    reacted = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
        events(platform, "CitizenReacted", complaint_id)), 10, message="two reactions")

    # The 200 came before the processing: wait until the whole body (the stranger's items are
    # last) is processed, so what follows checks the stranger's half too.
    def outcome():
        with db(platform) as connection:
            row = connection.execute("select state, outcome from webhook_inbox where body like ?",
                                     (f"%{stranger}%",)).fetchone()
        return json.loads(row[1]) if row and row[0] == "processed" else None
    # psid's two reactions recorded; the stranger (no complaint to react to): three ignored.
    assert wait_for(outcome, 20, message="the reactions' body processed") == {"reaction_recorded": 2,
                                                                             "ignored": 3}
    assert [e["data"]["reaction"] for e in reacted] == ["like", "sticker"]
    assert reacted[0]["data"]["sticker_id"] == str(meta.LIKE_SMALL)
    assert [e for e in events(platform, "ComplaintFiled") if "[lampiran" in e["data"]["text"]
            and e["data"]["reply_to"] and e["data"]["reply_to"].get("psid") in (psid, stranger)] == []
    assert events(platform, "ComplaintAmended", complaint_id) == []
    with db(platform) as connection:
        stranger_conversations = connection.execute("select count(*) from conversations where psid = ?",
                                                     (stranger,)).fetchone()[0]
    assert stranger_conversations == 0


def test_standby_handover_and_other_events_are_processed_or_ignored_by_name_never_quarantined(platform):
    marker = uuid.uuid4().hex[:8]
    psid = fb.new_psid()
    with platform.rpc() as rpc:
        quarantined_before = len(rpc.intake.quarantined(100))
    body = fb.page_body(
        meta.standby_entry(DEV_PAGE_ID, fb.text_message(DEV_PAGE_ID, psid, f"Pungli parkir di Senggigi {marker}"),
                           meta.standby_echo(DEV_PAGE_ID, psid, f"Dijawab oleh aplikasi lain {marker}echo")),
        fb.messaging_entry(DEV_PAGE_ID, meta.pass_thread_control(DEV_PAGE_ID, psid),
                           meta.take_thread_control(DEV_PAGE_ID, psid), meta.request_thread_control(DEV_PAGE_ID, psid),
                           meta.app_roles(DEV_PAGE_ID), meta.reaction(DEV_PAGE_ID, psid, fb.new_mid()),
                           meta.referral(DEV_PAGE_ID, psid), meta.postback(DEV_PAGE_ID, psid),
                           meta.message_edit(DEV_PAGE_ID, psid, fb.new_mid(), f"ralat {marker}edit"),
                           meta.optin(DEV_PAGE_ID), meta.policy_enforcement(DEV_PAGE_ID)),
        fb.changes_entry(DEV_PAGE_ID, meta.comment_with_verb(DEV_PAGE_ID, "hide"),
                         meta.comment_with_verb(DEV_PAGE_ID, "unhide")))
    assert fb.signed_post(hook(platform), body).status_code == 200
    for other in (meta.user_object_body(), meta.permissions_object_body()):
        assert fb.signed_post(hook(platform), other).status_code == 200

    filed = filed_with(platform, marker)[0]["data"]
    assert filed["reply_to"] == {"page_id": DEV_PAGE_ID, "psid": psid} and filed["confidential"] is True

    def outcomes():
        with db(platform) as connection:
            found = [json.loads(row[0]) if row[0] else None for row in connection.execute(
                "select outcome from webhook_inbox order by inbox_id desc limit 3")]
        return found if None not in found else None
    assert wait_for(outcomes, 10, message="three bodies processed") == [{"ignored": 1}, {"ignored": 1},
                                                                         {"filed": 1, "ignored": 13}]
    with platform.rpc() as rpc:
        assert len(rpc.intake.quarantined(100)) == quarantined_before
    assert mentions(platform, f"{marker}echo") == [] and mentions(platform, f"{marker}edit") == []


def test_video_and_gif_comments_are_complaints_with_the_attachment(platform):
    url = f"https://video.xx.fbcdn.net/v/t42.3356-2/{uuid.uuid4().hex}.mp4"
    video = meta.video_comment(DEV_PAGE_ID, url=url)
    gif = meta.gif_comment(DEV_PAGE_ID)
    assert fb.signed_post(hook(platform), fb.page_body(fb.changes_entry(DEV_PAGE_ID, video, gif))).status_code == 200

    def filed_for(comment):
        return [e for e in events(platform, "ComplaintFiled")
                if (e["data"]["reply_to"] or {}).get("comment_id") == comment["value"]["comment_id"]]
    from_video = wait_for(lambda: filed_for(video), 10, message="the video comment filed")[0]["data"]
    from_gif = wait_for(lambda: filed_for(gif), 10, message="the GIF comment filed")[0]["data"]
    assert from_video["channel"] == "facebook_comment" and from_video["text"] == "[lampiran: video]"
    assert [(a["type"], a["url"]) for a in from_video["attachments"]] == [("video", url)]
    assert from_gif["attachments"][0]["url"] == gif["value"]["video"]


def test_instagram_direct_files_complaints_answerable_through_the_linked_page(platform):
    marker = uuid.uuid4().hex[:8]
    igsid, start = f"69{uuid.uuid4().int % 10**14:014d}", fb.now_ms() - 60_000
    body = meta.instagram_body(meta.instagram_entry(
        IG_ACCOUNT, meta.instagram_text(IG_ACCOUNT, igsid, f"Sampah menumpuk di pantai Kuta Mandalika {marker}",
                                        timestamp_ms=start),
        meta.instagram_image(IG_ACCOUNT, igsid), meta.instagram_read(IG_ACCOUNT, igsid, "aWdf_read"),
        meta.instagram_reaction(IG_ACCOUNT, igsid, "aWdf_answer")),
        meta.instagram_comment_entry(IG_ACCOUNT, f"Komentar Instagram {marker}comment"))
    assert fb.signed_post(hook(platform), body).status_code == 200
    filed = filed_with(platform, marker)[0]
    assert filed["data"]["channel"] == "instagram_direct"
    assert filed["data"]["reply_to"] == {"page_id": SECOND_PAGE_ID, "psid": igsid, "platform": "instagram"}
    assert filed["data"]["region_code"] == "5202"
    amended = wait_for(lambda: events(platform, "ComplaintAmended", filed["complaint_id"]), 10,
                       message="the photo bubble extends the complaint")
    assert amended[0]["data"]["attachments"][0]["type"] == "image"

    heart = meta.instagram_body(meta.instagram_entry(IG_ACCOUNT, meta.instagram_heart(IG_ACCOUNT, igsid)))
    assert fb.signed_post(hook(platform), heart).status_code == 200
    reacted = wait_for(lambda: events(platform, "CitizenReacted", filed["complaint_id"]), 10,
                       message="the heart recorded")
    assert reacted[0]["data"]["reaction"] == "heart"
    assert mentions(platform, f"{marker}comment") == []
    with platform.rpc() as rpc:
        assert rpc.intake.get_complaint(filed["complaint_id"])["channel"] == "instagram_direct"
        assert [q for q in rpc.intake.quarantined(100) if marker in str(q)] == []


# -- web API and RPC -----------------------------------------------------------------------------
def test_web_api_validation_and_filing(platform):
    url = f"{platform.url('intake')}/api/complaints"
    bad = requests.post(url, json={"reporter": {"email": "bukan-email", "phone": "abc"},
                                   "location": {"region_code": "9999", "lat": 200}, "category": "gossip",
                                   "attachments": [{"type": "image"}]}, timeout=5)
    assert bad.status_code == 400
    fields = bad.json()["fields"]
    assert "text" in fields and "category" in fields
    assert set(fields["reporter"]) == {"email", "phone"} and set(fields["location"]) == {"region_code", "lat"}
    assert "url" in fields["attachments"]["0"]
    assert requests.post(url, data=b"{oops", headers={"Content-Type": "application/json"}, timeout=5).status_code == 400
    assert requests.post(url, json={"text": "hai"}, timeout=5).json()["fields"]["text"]

    good = requests.post(url, json={"text": "Pelayanan KTP di Disdukcapil Kota Bima lambat sekali",
                                    "reporter": {"name": "Siti Aminah", "phone": "+62 812 3456 7890",
                                                 "email": "siti@example.org"},
                                    "location": {"address": "Jl. Soekarno-Hatta", "lat": -8.46, "lon": 118.72}},
                         timeout=10)
    assert good.status_code == 201
    result = good.json()
    assert set(result) == {"complaint_id", "tracking_code", "status_url"}
    assert result["status_url"].endswith(f"/api/complaints/{result['tracking_code']}")
    filed = wait_for(lambda: events(platform, "ComplaintFiled", result["complaint_id"]), 10, message="filed")[0]
    assert filed["data"]["channel"] == "web" and filed["data"]["reply_to"] is None
    assert filed["data"]["last_citizen_message_at"] is None and filed["data"]["region_code"] == "5272"
    for personal in ("Siti", "3456", "siti@example.org"):
        assert personal not in json.dumps(filed)

    # The desk reads the contact only with a reason, and the reading is recorded.
    with platform.rpc() as rpc:
        public = rpc.intake.get_complaint(result["complaint_id"])
        assert "Siti" not in json.dumps(public) and public["tracking_code"] == result["tracking_code"]
        with pytest.raises(ValidationFailed):
            rpc.intake.reporter_contact(result["complaint_id"], "desk:budi", "")
        contact = rpc.intake.reporter_contact(result["complaint_id"], "desk:budi", "konfirmasi lokasi kejadian")
    assert contact["name"] == "Siti Aminah" and contact["email"] == "siti@example.org"
    with db(platform) as connection:
        audit = connection.execute("select actor, reason from contact_audit where complaint_id = ?",
                                   (result["complaint_id"],)).fetchall()
    assert audit == [("desk:budi", "konfirmasi lokasi kejadian")]


def test_rpc_external_ref_idempotency_and_imports(platform):
    ref = f"lapor-{uuid.uuid4().hex[:8]}"
    complaint = {"text": "Izin usaha mikro dipersulit di Mataram", "channel": "api", "external_ref": ref}
    with platform.rpc() as rpc:
        first = rpc.intake.file_complaint(complaint)
        assert rpc.intake.file_complaint(complaint) == first

    concurrent_ref = f"lapor-{uuid.uuid4().hex[:8]}"
    results = []

    def file_once():
        with platform.rpc() as rpc:
            results.append(rpc.intake.file_complaint({**complaint, "external_ref": concurrent_ref}))
    threads = [threading.Thread(target=file_once) for _ in range(5)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == 5 and len({r["complaint_id"] for r in results}) == 1
    filed = [e for e in events(platform, "ComplaintFiled") if e["data"]["external_ref"] in (ref, concurrent_ref)]
    assert len(filed) == 2

    with platform.rpc() as rpc:
        imported = rpc.intake.file_complaint({"text": "Jalan rusak di Dompu (arsip 2020)", "channel": "import",
                                              "received_at": "2020-11-03T02:15:00Z", "external_ref": f"arsip-{ref}"})
        with pytest.raises(ValidationFailed):
            rpc.intake.file_complaint({"text": "Impor tanpa tanggal", "channel": "import"})
    data = events(platform, "ComplaintFiled", imported["complaint_id"])[0]["data"]
    assert data["channel"] == "import" and data["filed_at"].startswith("2020-11-03T02:15:00")
