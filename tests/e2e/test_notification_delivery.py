"""Notification against the real broker, intake, routing and the Graph API sandbox, each its own
process: what each trigger sends (messaging_type/tag), Meta's windows at their edges with
controlled timestamps, comment flows, status answers, what the citizen is told as routing's
lifecycle says it (two lead agencies stay *diproses* until the last resolves; a complaint made
confidential later names no agency and gets no public reply), every Graph error's behaviour, the
rate limit, a restart in the middle of a retry schedule, a revoked token, and duplicate/replayed
events sending nothing twice."""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from datetime import datetime, timedelta, timezone

import pika
import pytest
import requests
import yaml

from sandbox.graph_sandbox import commenter_psid
from services.routing.domain.rules import DEFAULT_PATH as ROUTING_RULES
from shared.core.errors import IllegalAction
from tests.support import facebook
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for

FAULT_PAGE = "300000000000003"
TOKEN_PAGE = "400000000000004"
RATE_PAGE = "500000000000005"
RESTART_PAGE = "600000000000006"
PAGES = {DEV_PAGE_ID: "sandbox-page-token", FAULT_PAGE: "fault-page-token",
         TOKEN_PAGE: "token-page-token", RATE_PAGE: "rate-page-token",
         RESTART_PAGE: "restart-page-token"}
RATE = 20  # calls/s per Page
RETRY_BASE = 0.3
# Rules may name several lead agencies; the shipped rules do not (yet), so this module adds one.
TWO_LEADS_CLUE = "tebing longsor"
TWO_LEADS = ["dpupr", "bws-nt1"]


def rules_with_two_leads(directory) -> str:
    rules = yaml.safe_load(ROUTING_RULES.read_text(encoding="utf-8"))
    rules["rules"].insert(0, {"id": "uji-dua-pimpinan", "when": {"keywords_any": [TWO_LEADS_CLUE]},
                              "lead": TWO_LEADS, "reason": "Jalan dan sungai: dua instansi memimpin."})
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("notification")
    running = Platform(amqp_uri, data_dir,
                       services=("intake", "routing", "notification"), extra_env={
                           "ROUTING_RULES_FILE": rules_with_two_leads(data_dir),
                           "FACEBOOK_PAGES": ",".join(f"{p}:{t}" for p, t in PAGES.items()),
                           "NOTIFICATION_RETRY_BASE_SECONDS": str(RETRY_BASE),
                           "NOTIFICATION_TOKEN_PROBE_SECONDS": "1",
                           "NOTIFICATION_SEND_RATE": str(RATE),
                           "INTAKE_BUBBLE_SECONDS": "0",
                           # The app passed Meta's Human Agent review: notification may use the
                           # HUMAN_AGENT tag and the sandbox, like Meta, honours it.
                           "FACEBOOK_HUMAN_AGENT_APPROVED": "true",
                       }).start_all()
    yield running
    running.stop_all()


# -- helpers ---------------------------------------------------------------------------------

def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def ago(**delta) -> datetime:
    return datetime.now(timezone.utc) - timedelta(**delta)


def control(platform, path, payload=None, method="POST"):
    response = requests.request(method, f"{platform.sandbox_url}/_sandbox/{path}", json=payload, timeout=10)
    response.raise_for_status()
    return response.json()


def file_messenger(platform, last_message_at: datetime | None = None, page_id=DEV_PAGE_ID,
                   text="Lampu jalan di depan kantor desa mati sudah seminggu, mohon dibantu."):
    psid = facebook.new_psid()
    complaint = {"text": text, "channel": "api", "reply_to": {"page_id": page_id, "psid": psid}}
    if last_message_at is not None:
        complaint["last_citizen_message_at"] = iso(last_message_at)
        # The sandbox enforces Meta's windows for conversations it is told about.
        control(platform, "conversations", {"page_id": page_id, "psid": psid,
                                            "last_message_at": iso(last_message_at)})
    with platform.rpc() as rpc:
        result = rpc.intake.file_complaint(complaint)
    return result["complaint_id"], result["tracking_code"], psid


def calls_to(platform, psid=None, comment_id=None, ok_only=True):
    calls = platform.sandbox_calls(status=200) if ok_only else platform.sandbox_calls()
    return [c for c in calls
            if (psid and (c.get("recipient") or {}).get("id") == psid)
            or (comment_id and c.get("comment_id") == comment_id)]


def ack_calls(platform, psid):
    return [c for c in calls_to(platform, psid, ok_only=False) if "kode pelacakan" in (c["text"] or "")]


def notification_events(platform, complaint_id, event_type=None):
    with platform.rpc() as rpc:
        events = rpc.notification.events_since(0, 1000)
        while len(events) % 1000 == 0 and events:
            more = rpc.notification.events_since(events[-1]["position"], 1000)
            if not more:
                break
            events += more
    return [e for e in events if e["complaint_id"] == complaint_id
            and (event_type is None or e["event_type"] == event_type)]


def trigger_id(platform, complaint_id, source, event_type):
    def find():
        with platform.rpc() as rpc:
            found = [e for e in getattr(rpc, source).events_since(0, 1000)
                     if e["complaint_id"] == complaint_id and e["event_type"] == event_type]
        return found[-1]["event_id"] if found else None
    return wait_for(find, 20, message=f"{event_type} of {complaint_id}")


def settled(platform, trigger_event_id, count=1):
    """Wait until the messages of one event are all finished; return their states."""
    def done():
        with platform.rpc() as rpc:
            rows = rpc.notification.delivery_state(trigger_event_id)
        return rows if len(rows) >= count and all(r["state"] != "pending" for r in rows) else None
    return wait_for(done, 30, message=f"messages of {trigger_event_id} finished")


def undelivered_for(platform, complaint_id):
    with platform.rpc() as rpc:
        return [item for item in rpc.notification.undelivered(1000) if item["complaint_id"] == complaint_id]


def assign_and_respond(platform, complaint_id, agency="dpupr", answer=None, resolved=False):
    """Act as the desk (route to ``agency``, unless routing's rules already did) and the agency."""
    def assigned():
        with platform.rpc() as rpc:
            try:
                rpc.routing.assign(complaint_id, [agency], "Diteruskan untuk ditindaklanjuti.", "desk:ayu")
            except IllegalAction as error:
                if "already assigned" not in str(error):
                    raise
            return True
    wait_for(assigned, 20, message="routing knows the complaint")
    with platform.rpc() as rpc:
        if answer is not None:
            rpc.routing.respond(complaint_id, agency, answer, resolved, f"{agency}:budi")


def webhook(platform, *items, page_id=DEV_PAGE_ID):
    body = facebook.page_body(facebook.messaging_entry(page_id, *items))
    # Meta knows who wrote because it delivered the message: the sandbox, like Meta, answers
    # only people who wrote to the Page, so it is told of the webhook too.
    control(platform, "webhooks", body)
    response = facebook.signed_post(f"{platform.url('intake')}/webhooks/facebook", body)
    assert response.status_code == 200, response.text


# -- what each trigger sends -----------------------------------------------------------------

def test_every_trigger_sends_the_right_message(platform):
    complaint_id, code, psid = file_messenger(platform, ago(minutes=1))
    ack = wait_for(lambda: calls_to(platform, psid), 30, message="acknowledgment")[0]
    assert ack["page_id"] == DEV_PAGE_ID and ack["messaging_type"] == "RESPONSE" and ack["tag"] is None
    assert code in ack["text"] and f"CEK {code}" in ack["text"]

    assign_and_respond(platform, complaint_id, "dpupr",
                       "Tim kami sudah meninjau lokasi. Lampu akan diganti minggu ini.", resolved=True)
    texts = lambda: [c["text"] for c in calls_to(platform, psid)]  # noqa: E731
    wait_for(lambda: any("selesai" in t for t in texts()), 30, message="the resolved message")
    sent = calls_to(platform, psid)
    routed = [c for c in sent if "diteruskan kepada" in c["text"]]
    answer = [c for c in sent if c["text"].startswith("Jawaban dari")]
    # Agencies are named as routing's events name them, not by their codes.
    assert routed and "Dinas Pekerjaan Umum dan Penataan Ruang" in routed[-1]["text"]
    assert "dpupr" not in routed[-1]["text"]
    assert len(answer) == 1 and "Lampu akan diganti minggu ini." in answer[0]["text"]
    assert answer[0]["text"].startswith("Jawaban dari Dinas Pekerjaan Umum")
    assert all(c["messaging_type"] == "RESPONSE" for c in sent)
    # In the order the events happened: acknowledgment, routing, answer, outcome.
    order = [sent.index(ack), sent.index(routed[-1]), sent.index(answer[0]),
             max(i for i, c in enumerate(sent) if "selesai" in c["text"])]
    assert order == sorted(order)
    notified = wait_for(lambda: len(notification_events(platform, complaint_id, "CitizenNotified")) >= len(sent)
                        and notification_events(platform, complaint_id, "CitizenNotified"), 20,
                        message="CitizenNotified for each message")
    assert {e["data"]["graph_message_id"] for e in notified} == {c["response"]["message_id"] for c in sent}
    assert all(e["data"]["channel"] == "messenger" and e["data"]["messaging_type"] == "RESPONSE"
               for e in notified)


def test_dismissal_gives_the_reason(platform):
    complaint_id, code, psid = file_messenger(platform, ago(minutes=2))
    wait_for(lambda: calls_to(platform, psid), 30, message="acknowledgment")
    with platform.rpc() as rpc:
        rpc.routing.dismiss(complaint_id, "Bukan aduan pelayanan publik.", "desk:ayu")
    call = wait_for(lambda: [c for c in calls_to(platform, psid) if "ditolak" in c["text"]], 30,
                    message="dismissal")[0]
    assert "Bukan aduan pelayanan publik." in call["text"] and call["messaging_type"] == "RESPONSE"


def test_long_answer_is_split_on_sentences_in_order(platform):
    complaint_id, code, psid = file_messenger(platform, ago(minutes=3))
    wait_for(lambda: calls_to(platform, psid), 30, message="acknowledgment")
    sentences = [f"Kalimat nomor {i} menjelaskan tindak lanjut dinas secara rinci dan jelas." for i in range(60)]
    assign_and_respond(platform, complaint_id, "dpupr", " ".join(sentences))
    parts = wait_for(lambda: (lambda got: got if len(got) >= 3 else None)(
        [c for c in calls_to(platform, psid) if "Kalimat nomor" in c["text"]]), 30, message="the answer's parts")
    assert all(len(c["text"]) < 2000 for c in parts)
    joined = " ".join(c["text"] for c in parts)
    assert [int(w) for w in joined.split("Kalimat nomor ")[1:] for w in [w.split()[0]]] == list(range(60))
    assert all(c["text"].rstrip().endswith((".", ")")) for c in parts)


# -- Meta's windows, with controlled timestamps ----------------------------------------------

def test_window_edges_for_automated_messages(platform):
    inside_id, _, inside_psid = file_messenger(platform, ago(hours=23, minutes=59))
    outside_id, _, outside_psid = file_messenger(platform, ago(hours=24, minutes=1))
    call = wait_for(lambda: calls_to(platform, inside_psid), 30, message="ack at 23h59m")[0]
    assert call["messaging_type"] == "RESPONSE"
    failed = wait_for(lambda: notification_events(platform, outside_id, "CitizenNotificationFailed"), 30,
                      message="ack at 24h01m refused by policy")
    assert failed[0]["data"]["reason"] == "outside_24h_automated" and failed[0]["data"]["permanent"] is True
    assert calls_to(platform, outside_psid, ok_only=False) == []  # not even tried
    listed = undelivered_for(platform, outside_id)
    assert listed and listed[0]["reason"] == "outside_24h_automated" and listed[0]["explanation"]


def test_human_answer_between_24_hours_and_7_days_uses_human_agent_tag(platform):
    late_id, _, late_psid = file_messenger(platform, ago(days=6, hours=23, minutes=58))
    closed_id, _, closed_psid = file_messenger(platform, ago(days=7, minutes=1))
    for complaint_id in (late_id, closed_id):
        assign_and_respond(platform, complaint_id, "dinsos", "Bantuan sudah kami salurkan kemarin.")
    call = wait_for(lambda: calls_to(platform, late_psid), 30, message="HUMAN_AGENT answer")
    assert len(call) == 1  # the acknowledgment and the routing (automated) were not sent
    assert call[0]["messaging_type"] == "MESSAGE_TAG" and call[0]["tag"] == "HUMAN_AGENT"
    assert call[0]["text"].startswith("Jawaban dari")
    answer_failed = wait_for(lambda: [e for e in notification_events(platform, closed_id, "CitizenNotificationFailed")
                                      if e["data"]["reason"] == "messenger_window_closed"], 30,
                             message="answer after 7 days refused")
    assert answer_failed
    assert calls_to(platform, closed_psid, ok_only=False) == []
    reasons = {item["reason"] for item in undelivered_for(platform, late_id)}
    assert reasons == {"outside_24h_automated"}
    assert "messenger_window_closed" in {item["reason"] for item in undelivered_for(platform, closed_id)}


def test_complaint_without_reply_to_and_imports_get_nothing(platform):
    with platform.rpc() as rpc:
        web = rpc.intake.file_complaint({"text": "Sampah menumpuk di pasar Kebon Roek.", "channel": "api"})
        imported = rpc.intake.file_complaint({
            "text": "Aduan lama tentang jalan rusak.", "channel": "import", "received_at": iso(ago(days=400)),
            "reply_to": {"page_id": DEV_PAGE_ID, "psid": "1234567"}})
    filed = trigger_id(platform, imported["complaint_id"], "intake", "ComplaintFiled")
    time.sleep(2)
    with platform.rpc() as rpc:
        assert rpc.notification.delivery_state(filed) == []
    assert calls_to(platform, "1234567", ok_only=False) == []
    assert undelivered_for(platform, web["complaint_id"]) == []
    assert notification_events(platform, web["complaint_id"]) == []


# -- comments --------------------------------------------------------------------------------

def test_comment_complaint_public_reply_single_private_reply_then_messenger(platform):
    comment_id = f"{uuid.uuid4().int % 10**15}_{uuid.uuid4().int % 10**15}"
    created = ago(hours=2)
    control(platform, "comments", {"comment_id": comment_id, "created_time": iso(created),
                                   "page_id": DEV_PAGE_ID})
    with platform.rpc() as rpc:
        result = rpc.intake.file_complaint({
            "text": "Jembatan di dusun kami putus, anak sekolah harus memutar jauh.",
            "channel": "facebook_comment", "last_citizen_message_at": iso(created),
            "reply_to": {"page_id": DEV_PAGE_ID, "comment_id": comment_id, "post_id": "1_1"}})
    complaint_id, code = result["complaint_id"], result["tracking_code"]
    got = wait_for(lambda: (lambda c: c if len(c) >= 2 else None)(calls_to(platform, comment_id=comment_id)),
                   30, message="private and public replies")
    private = [c for c in got if c["kind"] == "private_reply"]
    public = [c for c in got if c["kind"] == "comment_reply" and "kami catat" in c["text"]]
    assert len(private) == 1 and code in private[0]["text"]
    assert len(public) == 1 and code in public[0]["text"]
    psid = commenter_psid(comment_id)
    notified = wait_for(lambda: [e for e in notification_events(platform, complaint_id, "CitizenNotified")
                                 if e["data"]["channel"] == "comment_private"], 20, message="private reply recorded")
    assert notified[0]["data"]["recipient_psid"] == psid

    # An update while the citizen has not written in Messenger: only a public reply is possible
    # (the one private reply is used), and it names no agency, only the status.
    assign_and_respond(platform, complaint_id, "dpupr")
    public_update = wait_for(lambda: [c for c in calls_to(platform, comment_id=comment_id)
                                      if c["kind"] == "comment_reply" and "pembaruan" in c["text"]], 30,
                             message="public update")
    assert "disetujui" in public_update[0]["text"] and "Dinas" not in public_update[0]["text"]
    assert len([c for c in calls_to(platform, comment_id=comment_id, ok_only=False)
                if c["kind"] == "private_reply"]) == 1

    # The citizen answers in Messenger (the PSID Meta gave us): the conversation continues there
    # — once intake has handled the CitizenNotified that carries it (notification's relay and
    # intake's consumer linger, together up to half a second: a citizen takes longer to read the
    # reply and answer; this test would not, hence the wait).
    wait_for(lambda: platform.checkpoint("intake", "notification") >= notified[0]["position"], 20,
             message="intake handled the private reply's CitizenNotified")
    webhook(platform, facebook.text_message(DEV_PAGE_ID, psid, "Terima kasih, kapan diperbaiki?"))

    def citizen_message_known():
        with platform.rpc() as rpc:
            return [e for e in rpc.intake.events_since(0, 1000)
                    if e["complaint_id"] == complaint_id and e["event_type"] in
                    ("CitizenMessageReceived", "ComplaintAmended")]
    wait_for(citizen_message_known, 20, message="intake links the Messenger message to the comment's complaint")
    time.sleep(1)
    with platform.rpc() as rpc:
        rpc.routing.respond(complaint_id, "dpupr", "Perbaikan dijadwalkan pekan depan.", False, "dpupr:budi")
    answer = wait_for(lambda: [c for c in calls_to(platform, psid) if "Perbaikan dijadwalkan" in c["text"]],
                      30, message="answer in Messenger")
    assert answer[0]["messaging_type"] == "RESPONSE" and answer[0]["kind"] == "messenger"


def test_private_reply_outside_window_falls_back_to_public_reply(platform):
    comment_id = f"{uuid.uuid4().int % 10**15}_{uuid.uuid4().int % 10**15}"
    control(platform, "faults", {"code": 10, "subcode": 2018278, "kind": "private_reply", "times": 1,
                                 "page_id": DEV_PAGE_ID})
    with platform.rpc() as rpc:
        result = rpc.intake.file_complaint({
            "text": "Pungutan liar di pelabuhan Kayangan.", "channel": "facebook_comment",
            "last_citizen_message_at": iso(ago(hours=1)),
            "reply_to": {"page_id": DEV_PAGE_ID, "comment_id": comment_id, "post_id": "1_2"}})
    filed = trigger_id(platform, result["complaint_id"], "intake", "ComplaintFiled")
    rows = settled(platform, filed, 2)
    private = [r for r in rows if r["state"] != "sent"]
    assert len(private) == 1 and private[0]["reason"] == "private_reply_window_closed"
    assert private[0]["state"] == "failed"
    # The public reply with the tracking code reached the citizen; the desk is not bothered with the
    # acknowledgment. Meta said the comment's private reply window is closed: it is never tried
    # again, so an update of this (confidential: illegal levy) complaint, which gets no public
    # reply, is the desk's.
    assert [c for c in calls_to(platform, comment_id=comment_id) if c["kind"] == "comment_reply"]
    listed = undelivered_for(platform, result["complaint_id"])
    assert all(item["kind"] != "acknowledgment" and item["reason"] == "private_reply_window_closed"
               for item in listed), listed
    assert len([c for c in calls_to(platform, comment_id=comment_id, ok_only=False)
                if c["kind"] == "private_reply"]) == 1


# -- status requests -------------------------------------------------------------------------

def test_status_request_answers_filer_fully_and_others_with_words(platform):
    complaint_id, code, psid = file_messenger(platform, ago(minutes=5))
    wait_for(lambda: calls_to(platform, psid), 30, message="acknowledgment")
    assign_and_respond(platform, complaint_id, "dikes")
    wait_for(lambda: len(calls_to(platform, psid)) >= 2, 30, message="routed message")

    webhook(platform, facebook.text_message(DEV_PAGE_ID, psid, f"CEK {code}"))
    stranger = facebook.new_psid()
    webhook(platform, facebook.text_message(DEV_PAGE_ID, stranger, f"CEK {code}"))
    nobody = facebook.new_psid()
    webhook(platform, facebook.text_message(DEV_PAGE_ID, nobody, "CEK NTB-ZZZZZ-ZZZZ9"))

    full = wait_for(lambda: [c for c in calls_to(platform, psid) if c["text"].startswith("Status aduan")], 30,
                    message="full status to the filer")[0]
    assert "disetujui" in full["text"] and "Pembaruan" in full["text"] and "Ditangani oleh" in full["text"]
    public = wait_for(lambda: calls_to(platform, stranger), 30, message="public status to a stranger")[0]
    assert public["text"].strip() == f"Status aduan {code}: disetujui."
    unknown = wait_for(lambda: calls_to(platform, nobody), 30, message="not found")[0]
    assert "tidak ditemukan" in unknown["text"]
    assert all(c["messaging_type"] == "RESPONSE" for c in (full, public, unknown))


# -- what routing's lifecycle says, told to the citizen ----------------------------------------

def status_to(platform, psid, code, count):
    """Ask ``CEK <code>`` as ``psid``; the answer (the ``count``-th status answer it receives)."""
    webhook(platform, facebook.text_message(DEV_PAGE_ID, psid, f"CEK {code}"))
    answers = wait_for(lambda: (lambda got: got if len(got) >= count else None)(
        [c for c in calls_to(platform, psid) if c["text"].startswith("Status aduan")]), 30,
        message=f"status answer {count}")
    return answers[count - 1]["text"]


def test_two_leads_stay_diproses_until_the_last_resolves(platform):
    complaint_id, code, psid = file_messenger(
        platform, ago(minutes=1), text=f"Ada {TWO_LEADS_CLUE} di Sembalun, jalan tertutup dan sungai tersumbat.")
    routed = wait_for(lambda: [c for c in calls_to(platform, psid) if "telah diteruskan kepada" in c["text"]], 30,
                      message="routed to both leads by the rule")[0]
    assert "Dinas Pekerjaan Umum" in routed["text"] and "Balai Wilayah Sungai" in routed["text"]
    with platform.rpc() as rpc:
        rpc.routing.respond(complaint_id, "dpupr", "Jalan sudah kami buka kembali.", True, "dpupr:budi")
    wait_for(lambda: [c for c in calls_to(platform, psid) if "Jalan sudah kami buka" in c["text"]], 30,
             message="the first lead's answer")
    assert "diproses" in status_to(platform, psid, code, 1)
    assert not [c for c in calls_to(platform, psid) if "selesai" in c["text"]]  # not finished yet

    with platform.rpc() as rpc:
        rpc.routing.respond(complaint_id, "bws-nt1", "Sungai sudah dinormalisasi.", True, "bws-nt1:sari")
    done = wait_for(lambda: [c for c in calls_to(platform, psid) if "dinyatakan selesai" in c["text"]], 30,
                    message="the outcome once the last lead resolved")[0]
    assert "Dinas Pekerjaan Umum" in done["text"] and "Balai Wilayah Sungai" in done["text"]
    assert "selesai" in status_to(platform, psid, code, 2)


def test_complaint_made_confidential_later_names_no_agency_and_gets_no_public_reply(platform):
    comment_id = f"{uuid.uuid4().int % 10**15}_{uuid.uuid4().int % 10**15}"
    created = ago(hours=1)
    control(platform, "comments", {"comment_id": comment_id, "created_time": iso(created),
                                   "page_id": DEV_PAGE_ID})
    with platform.rpc() as rpc:
        result = rpc.intake.file_complaint({
            "text": "Lampu jalan di gang kami mati sejak bulan lalu.", "channel": "facebook_comment",
            "last_citizen_message_at": iso(created),
            "reply_to": {"page_id": DEV_PAGE_ID, "comment_id": comment_id, "post_id": "1_3"}})
    complaint_id = result["complaint_id"]
    wait_for(lambda: len(calls_to(platform, comment_id=comment_id)) >= 2, 30, message="private and public acks")
    assign_and_respond(platform, complaint_id, "dpupr")
    wait_for(lambda: [c for c in calls_to(platform, comment_id=comment_id)
                      if c["kind"] == "comment_reply" and "pembaruan" in c["text"]], 30,
             message="a public update while the complaint is not confidential")
    replies_before = len([c for c in calls_to(platform, comment_id=comment_id, ok_only=False)
                          if c["kind"] == "comment_reply"])

    with platform.rpc() as rpc:
        rpc.routing.set_confidential(complaint_id, True, "Warga melaporkan pungutan liar.", "desk:ayu")
        rpc.routing.respond(complaint_id, "dpupr", "Petugas yang meminta uang sudah kami periksa.", False,
                            "dpupr:budi")
    answer_id = trigger_id(platform, complaint_id, "routing", "ComplaintResponded")
    [row] = settled(platform, answer_id)
    # The one private reply is used and the citizen has not written in Messenger: with no public
    # reply allowed the answer goes to the desk, who reaches the reporter another way.
    assert row["state"] == "undeliverable" and row["reason"] == "private_reply_used"
    assert "private_reply_used" in {item["reason"] for item in undelivered_for(platform, complaint_id)}
    changed = trigger_id(platform, complaint_id, "routing", "ComplaintConfidentialityChanged")
    with platform.rpc() as rpc:
        assert rpc.notification.delivery_state(changed) == []
    time.sleep(1)
    replies = [c for c in calls_to(platform, comment_id=comment_id, ok_only=False) if c["kind"] == "comment_reply"]
    assert len(replies) == replies_before

    # The reporter writes in Messenger: the answer of a confidential complaint reaches them there,
    # without naming the agency; their status answer names none either.
    psid = commenter_psid(comment_id)
    webhook(platform, facebook.text_message(DEV_PAGE_ID, psid, "Bagaimana kelanjutannya?"))
    wait_for(lambda: [e for e in platform_events(platform, "intake", complaint_id)
                      if e["event_type"] in ("CitizenMessageReceived", "ComplaintAmended")], 20,
             message="intake links the Messenger message to the comment's complaint")
    time.sleep(1)
    with platform.rpc() as rpc:
        rpc.routing.respond(complaint_id, "dpupr", "Uang sudah dikembalikan kepada warga.", False, "dpupr:budi")
    answer = wait_for(lambda: [c for c in calls_to(platform, psid) if "Uang sudah dikembalikan" in c["text"]],
                      30, message="the answer in Messenger")[0]
    assert "Dinas" not in answer["text"] and "dirahasiakan" in answer["text"]
    full = status_to(platform, psid, result["tracking_code"], 1)
    assert "diproses" in full and "Ditangani oleh" not in full and "Dinas" not in full


def _comment_complaint(platform, text, **comment):
    comment_id = f"{uuid.uuid4().int % 10**15}_{uuid.uuid4().int % 10**15}"
    created = ago(hours=1)
    control(platform, "comments", {"comment_id": comment_id, "created_time": iso(created),
                                   "page_id": DEV_PAGE_ID, **comment})
    with platform.rpc() as rpc:
        result = rpc.intake.file_complaint({
            "text": text, "channel": "facebook_comment", "last_citizen_message_at": iso(created),
            "reply_to": {"page_id": DEV_PAGE_ID, "comment_id": comment_id, "post_id": "1_4"}})
    return result["complaint_id"], comment_id


def test_a_refused_private_reply_falls_back_to_the_public_reply_and_is_never_tried_again(platform):
    # Meta refuses the private reply for this one comment (10903).
    complaint_id, comment_id = _comment_complaint(
        platform, "Saluran air di pasar tersumbat, banjir setiap hujan.",
        private_reply_error={"code": 10903})
    filed = trigger_id(platform, complaint_id, "intake", "ComplaintFiled")
    rows = settled(platform, filed, 2)
    private = [r for r in rows if r["kind"] == "acknowledgment" and r["state"] != "sent"]
    assert [(r["state"], r["reason"], r["code"]) for r in private] == [("failed", "private_reply_refused", 10903)]
    assert undelivered_for(platform, complaint_id) == []  # the public reply carried the tracking code
    assign_and_respond(platform, complaint_id, "dpupr")
    routed = trigger_id(platform, complaint_id, "routing", "ComplaintRouted")
    [update] = settled(platform, routed)
    assert (update["state"], update["channel"]) == ("sent", "comment_public")
    private_calls = [c for c in calls_to(platform, comment_id=comment_id, ok_only=False)
                     if c["kind"] == "private_reply"]
    assert len(private_calls) == 1  # remembered for the comment: not tried again


def test_a_page_s_own_comment_refused_and_a_confidential_update_goes_to_the_desk(platform):
    # The sandbox, like Meta, refuses a private reply to a comment the Page wrote (10903). An
    # illegal-levy report: confidential from the start.
    complaint_id, comment_id = _comment_complaint(platform, "Ada pungutan liar di terminal Mandalika.",
                                                  from_page=True)
    filed = trigger_id(platform, complaint_id, "intake", "ComplaintFiled")
    settled(platform, filed, 2)
    assign_and_respond(platform, complaint_id, "polda-ntb")
    routed = trigger_id(platform, complaint_id, "routing", "ComplaintRouted")
    [update] = settled(platform, routed)
    # No public update for a confidential complaint, and the private reply is known refused.
    assert (update["state"], update["reason"]) == ("undeliverable", "private_reply_refused")
    assert "private_reply_refused" in {item["reason"] for item in undelivered_for(platform, complaint_id)}
    assert len([c for c in calls_to(platform, comment_id=comment_id, ok_only=False)
                if c["kind"] == "private_reply"]) == 1


def test_a_removed_comment_gets_no_public_reply(platform):
    marker = uuid.uuid4().hex[:8]
    added = facebook.comment_change(DEV_PAGE_ID, f"Jalan ke Sembalun longsor lagi {marker}")
    comment_id, post_id = added["value"]["comment_id"], added["value"]["post_id"]
    body = facebook.page_body(facebook.changes_entry(DEV_PAGE_ID, added))
    control(platform, "webhooks", body)  # Meta knows the comment it delivered
    assert facebook.signed_post(f"{platform.url('intake')}/webhooks/facebook", body).status_code == 200
    complaint_id = wait_for(lambda: next((e["complaint_id"] for e in platform_events_of(platform, "intake")
                                          if e["event_type"] == "ComplaintFiled"
                                          and marker in e["data"]["text"]), None), 30, message="filed")
    settled(platform, trigger_id(platform, complaint_id, "intake", "ComplaintFiled"), 2)

    removed = facebook.page_body(facebook.changes_entry(DEV_PAGE_ID, facebook.comment_change(
        DEV_PAGE_ID, "", verb="remove", comment_id=comment_id, post_id=post_id)))
    control(platform, "webhooks", removed)
    assert facebook.signed_post(f"{platform.url('intake')}/webhooks/facebook", removed).status_code == 200
    trigger_id(platform, complaint_id, "intake", "CitizenCommentRemoved")
    time.sleep(2)  # pushed to notification at once; its catch-up would find it too
    replies_before = len([c for c in calls_to(platform, comment_id=comment_id, ok_only=False)
                          if c["kind"] == "comment_reply"])
    assign_and_respond(platform, complaint_id, "dpupr")
    routed = trigger_id(platform, complaint_id, "routing", "ComplaintRouted")
    [update] = settled(platform, routed)
    # The private reply is used and the comment is gone: nothing under it, listed for the desk.
    assert (update["state"], update["reason"]) == ("undeliverable", "comment_removed")
    assert len([c for c in calls_to(platform, comment_id=comment_id, ok_only=False)
                if c["kind"] == "comment_reply"]) == replies_before


def platform_events_of(platform, source):
    with platform.rpc() as rpc:
        return rpc_all(getattr(rpc, source))


def rpc_all(service):
    events = service.events_since(0, 1000)
    while events and len(events) % 1000 == 0:
        more = service.events_since(events[-1]["position"], 1000)
        if not more:
            break
        events += more
    return events


def platform_events(platform, source, complaint_id):
    with platform.rpc() as rpc:
        return [e for e in getattr(rpc, source).events_since(0, 1000) if e["complaint_id"] == complaint_id]


# -- Graph API failures ----------------------------------------------------------------------

def _fault(platform, **spec):
    """Inject a fault for the next calls to a Page, once earlier messages (e.g. the routing
    message that follows an acknowledgment) have stopped arriving there."""
    spec.setdefault("page_id", FAULT_PAGE)
    seen = [-1]

    def quiet():
        count = len(platform.sandbox_calls(page_id=spec["page_id"]))
        still, seen[0] = count == seen[0], count
        return still
    wait_for(quiet, 30, interval=1.0, message="the Page quiet before the fault")
    return control(platform, "faults", spec)


def test_temporary_errors_are_retried_with_backoff(platform):
    for spec in ({"code": 1200, "times": 2}, {"code": 2, "times": 1, "http_status": 500},
                 {"http_status": 503, "times": 2}):
        _fault(platform, **spec)
        complaint_id, code, psid = file_messenger(platform, ago(minutes=1), page_id=FAULT_PAGE)
        filed = trigger_id(platform, complaint_id, "intake", "ComplaintFiled")
        rows = settled(platform, filed)
        tried = ack_calls(platform, psid)
        assert rows[0]["state"] == "sent" and rows[0]["attempts"] == spec["times"] + 1, spec
        assert [c["status"] == 200 for c in tried] == [False] * spec["times"] + [True]
        gaps = [(datetime.fromisoformat(b["at"].replace("Z", "+00:00"))
                 - datetime.fromisoformat(a["at"].replace("Z", "+00:00"))).total_seconds()
                for a, b in zip(tried, tried[1:])]
        assert all(gap >= RETRY_BASE * 0.7 for gap in gaps), gaps  # backed off, not hammered


def test_permanent_errors_end_the_attempt(platform):
    for code, reason in ((551, "person_unavailable"), (100, "bad_request")):
        _fault(platform, code=code, times=1)
        complaint_id, _, psid = file_messenger(platform, ago(minutes=1), page_id=FAULT_PAGE)
        filed = trigger_id(platform, complaint_id, "intake", "ComplaintFiled")
        rows = settled(platform, filed)
        assert rows[0]["state"] == "undeliverable" and rows[0]["reason"] == reason
        assert len(ack_calls(platform, psid)) == 1  # never retried
        failed = wait_for(lambda: notification_events(platform, complaint_id, "CitizenNotificationFailed"), 20,
                          message="failure event")[0]["data"]
        assert failed["permanent"] is True and failed["code"] == code and failed["trigger_event_id"] == filed
        assert undelivered_for(platform, complaint_id)[0]["reason"] == reason


def test_outside_window_answer_on_messenger_is_undeliverable(platform):
    _fault(platform, code=10, subcode=2018278, times=1)
    complaint_id, _, psid = file_messenger(platform, ago(minutes=1), page_id=FAULT_PAGE)
    filed = trigger_id(platform, complaint_id, "intake", "ComplaintFiled")
    rows = settled(platform, filed)
    assert rows[0]["state"] == "undeliverable" and rows[0]["reason"] == "outside_window"
    assert len(ack_calls(platform, psid)) == 1


def test_each_rate_limit_code_pauses_then_sends(platform):
    for spec in ({"code": 4}, {"code": 4, "subcode": 2018022}, {"code": 100, "subcode": 2018022}):
        _fault(platform, times=1, **spec)
        complaint_id, _, psid = file_messenger(platform, ago(minutes=1), page_id=FAULT_PAGE)
        filed = trigger_id(platform, complaint_id, "intake", "ComplaintFiled")
        rows = settled(platform, filed)
        tried = ack_calls(platform, psid)
        assert rows[0]["state"] == "sent" and [c["status"] == 200 for c in tried] == [False, True], spec
        pause = (datetime.fromisoformat(tried[1]["at"].replace("Z", "+00:00"))
                 - datetime.fromisoformat(tried[0]["at"].replace("Z", "+00:00"))).total_seconds()
        assert pause >= 5 * RETRY_BASE * 0.9, spec


def test_a_rate_limit_pauses_as_long_as_meta_s_usage_header_says(platform):
    # X-Business-Use-Case-Usage says access returns in 0.05 minutes (3 s): longer than the backoff.
    usage = {"X-Business-Use-Case-Usage": {FAULT_PAGE: [{"type": "messenger", "call_count": 100,
                                                         "total_cputime": 10, "total_time": 20,
                                                         "estimated_time_to_regain_access": 0.05}]}}
    _fault(platform, code=80006, times=1, headers=usage)
    complaint_id, _, psid = file_messenger(platform, ago(minutes=1), page_id=FAULT_PAGE)
    filed = trigger_id(platform, complaint_id, "intake", "ComplaintFiled")
    [row] = settled(platform, filed)
    tried = ack_calls(platform, psid)
    assert row["state"] == "sent" and [c["status"] == 200 for c in tried] == [False, True]
    pause = (datetime.fromisoformat(tried[1]["at"].replace("Z", "+00:00"))
             - datetime.fromisoformat(tried[0]["at"].replace("Z", "+00:00"))).total_seconds()
    assert pause >= 3 * 0.9 > 5 * RETRY_BASE  # the header's time, not the backoff


def test_burst_hitting_the_rate_limit_slows_the_page_and_loses_nothing(platform):
    # Meta answers a call of the burst with its rate limit.
    # Its usage header says no time (0 minutes): the pause is the platform's own backoff.
    control(platform, "faults", {"page_id": RATE_PAGE, "code": 613, "times": 1, "rate": 1.0,
                                 "regain_minutes": 0})
    filed = [file_messenger(platform, ago(minutes=1), page_id=RATE_PAGE) for _ in range(24)]
    psids = {psid for _, _, psid in filed}

    def all_acknowledged():
        ok = [c for c in platform.sandbox_calls(page_id=RATE_PAGE, status=200)
              if c["recipient"]["id"] in psids and "kode pelacakan" in c["text"]]
        return ok if len({c["recipient"]["id"] for c in ok}) == len(psids) else None
    wait_for(all_acknowledged, 60, message="every acknowledgment of the burst")
    calls = [c for c in platform.sandbox_calls(page_id=RATE_PAGE) if c["recipient"]["id"] in psids]
    ok = [c for c in calls if c["status"] == 200 and "kode pelacakan" in c["text"]]
    assert len(ok) == len(psids)  # exactly once each
    limited = [c for c in calls if c["status"] != 200]
    assert len(limited) == 1
    stamp = lambda c: datetime.fromisoformat(c["at"].replace("Z", "+00:00"))  # noqa: E731
    after = sorted((c for c in calls if stamp(c) >= stamp(limited[0])), key=stamp)
    # The whole Page paused (5 retry bases at least) after Meta's rate limit; only the calls
    # already in flight on the other sender threads (4 by default) may land before the pause.
    gaps = [(stamp(b) - stamp(a)).total_seconds() for a, b in zip(after, after[1:])]
    paused_at = next(i for i, gap in enumerate(gaps) if gap >= 5 * RETRY_BASE * 0.9)
    assert paused_at <= 4, gaps[:8]
    # The per-second cap is not judged here: 25 calls in all barely exceed one second's budget,
    # and a loaded machine delays calls that left on time until they arrive beside the next ones
    # (CI saw 27 stamped within one second). test_replicas_share_limits.py measures the budget
    # over stretches where that delay cannot pass for a breach.


def test_revoked_token_holds_the_page_then_sends_everything(platform):
    control(platform, "revoke", {"page_id": TOKEN_PAGE})
    filed = [file_messenger(platform, ago(minutes=1), page_id=TOKEN_PAGE) for _ in range(3)]
    # Other Pages keep working meanwhile.
    other_id, _, other_psid = file_messenger(platform, ago(minutes=1))

    def degraded():
        body = requests.get(f"{platform.url('notification')}/health", timeout=5)
        return body.json() if body.status_code == 200 and body.json()["status"] == "degraded" else None
    health = wait_for(degraded, 30, message="health degraded")
    assert "invalid_token" in health["reason"] and TOKEN_PAGE in health["held_pages"]
    wait_for(lambda: calls_to(platform, other_psid), 30, message="another Page still served")
    time.sleep(2.5)  # a few probes with the bad token
    probes = [c for c in platform.sandbox_calls(page_id=TOKEN_PAGE)]
    assert probes and all(c["status"] != 200 for c in probes)
    assert len(probes) <= 6  # probes, not a flood
    for complaint_id, _, _ in filed:
        assert notification_events(platform, complaint_id) == []  # nothing dropped or failed

    # The hold is in the database: a restarted notification does not hammer Meta with the token.
    platform.kill("notification")
    platform.start("notification")
    assert requests.get(f"{platform.url('notification')}/health", timeout=5).json()["status"] == "degraded"

    control(platform, "restore", {"page_id": TOKEN_PAGE})
    for complaint_id, code, psid in filed:
        wait_for(lambda: calls_to(platform, psid), 30, message="held message sent after restore")
        assert len(calls_to(platform, psid)) >= 1
        assert code in calls_to(platform, psid)[0]["text"]
    wait_for(lambda: requests.get(f"{platform.url('notification')}/health", timeout=5).json()["status"] == "ok",
             20, message="health ok again")


# -- exactly once ----------------------------------------------------------------------------

def test_duplicate_envelopes_send_nothing_twice(platform, amqp_uri):
    complaint_id, code, psid = file_messenger(platform, ago(minutes=1))
    wait_for(lambda: calls_to(platform, psid), 30, message="acknowledgment")
    assign_and_respond(platform, complaint_id, "dpupr", "Sudah kami perbaiki hari ini.")
    wait_for(lambda: [c for c in calls_to(platform, psid) if "Sudah kami perbaiki" in c["text"]], 30,
             message="answer")
    with platform.rpc() as rpc:
        intake_events = [e for e in rpc.intake.events_since(0, 1000) if e["complaint_id"] == complaint_id]
        routing_events = [e for e in rpc.routing.events_since(0, 1000) if e["complaint_id"] == complaint_id]
    before = len(calls_to(platform, psid, ok_only=False))
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    for exchange, events in (("intake.events", intake_events), ("routing.events", routing_events)):
        for envelope in events:
            for _ in range(2):
                channel.basic_publish(exchange, envelope["event_type"], json.dumps(envelope),
                                      pika.BasicProperties(content_type="application/json", delivery_mode=2))
    connection.close()
    time.sleep(3)
    assert len(calls_to(platform, psid, ok_only=False)) == before


def _checkpoints(database):
    with sqlite3.connect(database) as db:
        return db.execute("SELECT source, position FROM consumer_checkpoints").fetchall()


def test_restart_in_the_middle_of_a_retry_schedule_and_replay_from_scratch(platform):
    _fault(platform, page_id=RESTART_PAGE, code=1200)  # fails until cleared
    complaint_id, code, psid = file_messenger(platform, ago(minutes=1), page_id=RESTART_PAGE)
    filed = trigger_id(platform, complaint_id, "intake", "ComplaintFiled")

    def retrying():
        with platform.rpc() as rpc:
            rows = rpc.notification.delivery_state(filed)
        return rows if rows and rows[0]["attempts"] >= 2 else None
    rows = wait_for(retrying, 30, message="a retry schedule under way")
    assert rows[0]["state"] == "pending" and rows[0]["next_attempt_at"]
    platform.kill("notification")
    control(platform, "faults", method="DELETE")

    # Replay: forget every processed event, so the whole log is handled again after the restart.
    database = platform.data_dir / "notification.db"
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM consumer_checkpoints")
        db.execute("DELETE FROM processed_events")
        sent_before = db.execute("SELECT count(*) FROM outgoing_messages WHERE state='sent'").fetchone()[0]
    calls_before = len(platform.sandbox_calls(status=200))

    platform.start("notification")
    wait_for(lambda: calls_to(platform, psid), 30, message="the retried message after the restart")

    def replayed():
        with sqlite3.connect(database) as db:
            return db.execute("SELECT min(position) FROM consumer_checkpoints").fetchone()[0] or 0
    wait_for(lambda: replayed() > 0 and len(_checkpoints(database)) == 2, 30,
             message="the whole log handled again")
    time.sleep(1.5)
    assert len([c for c in ack_calls(platform, psid) if c["status"] == 200]) == 1
    with sqlite3.connect(database) as db:
        pending = db.execute("SELECT count(*) FROM outgoing_messages WHERE state='pending'").fetchone()[0]
        sent = db.execute("SELECT count(*) FROM outgoing_messages WHERE state='sent'").fetchone()[0]
        assert db.execute("SELECT count(*) FROM consumer_checkpoints WHERE position > 0").fetchone()[0] == 2
    # Every call Meta accepted in this whole module is exactly one message marked sent: the
    # replay of the whole log sent nothing again.
    assert pending == 0 and sent > sent_before
    assert len(platform.sandbox_calls(status=200)) == sent
    assert len(platform.sandbox_calls(status=200)) - calls_before == sent - sent_before
