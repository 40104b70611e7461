"""Instagram Direct end to end: intake, routing and notification as their own processes on the real
broker, with the Graph API sandbox as Meta. An Instagram webhook (``object: instagram``, shaped as in
tests/support/meta_payloads.py) is posted signed to intake and shown to the sandbox (``meta_saw``
with the linked Page): the complaint is filed as ``instagram_direct``, routed and answered, and the
acknowledgment, the routing message, the agency's answer (in parts under Instagram's 1,000 bytes)
and a ``CEK`` answer reach the IGSID's thread through the linked Page. A confidential complaint
names no agency there. Outside the window nothing is sent: the answer is listed for the desk —
whether notification knows the window closed (no call) or Meta says so (10 / 2534022)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from sandbox.control import citizen_wrote, meta_saw
from shared.core.errors import IllegalAction
from tests.support import facebook as fb
from tests.support import meta_payloads as meta
from tests.support.platform import DEV_PAGE_ID, DEV_PAGE_TOKEN, Platform, wait_for

IG_ACCOUNT = "17841400000000077"   # the Instagram professional account …
IG_PAGE = "700000000000007"        # … and the Page it is linked to (answers go through its Send API)
PAGES = {DEV_PAGE_ID: DEV_PAGE_TOKEN, IG_PAGE: "instagram-page-token"}


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("instagram"),
                       services=("intake", "routing", "notification"), extra_env={
                           "FACEBOOK_PAGES": ",".join(f"{p}:{t}" for p, t in PAGES.items()),
                           "FACEBOOK_INSTAGRAM_ACCOUNTS": f"{IG_ACCOUNT}:{IG_PAGE}",
                           "INTAKE_BUBBLE_SECONDS": "0",
                           "NOTIFICATION_RETRY_BASE_SECONDS": "0.3",
                           # Approved for Human Agent: Meta (and the sandbox) then honour the tag
                           # on Instagram too, for 7 days.
                           "FACEBOOK_HUMAN_AGENT_APPROVED": "true",
                       }).start_all()
    yield running
    running.stop_all()


# -- helpers ---------------------------------------------------------------------------------

def ago(**delta) -> datetime:
    return datetime.now(timezone.utc) - timedelta(**delta)


def new_igsid() -> str:
    return f"69{uuid.uuid4().int % 10**14:014d}"


def instagram_writes(platform, igsid: str, text: str, at: datetime | None = None) -> None:
    """The citizen writes to the Instagram account: Meta delivers the webhook (and knows of it)."""
    stamp = int((at or datetime.now(timezone.utc)).timestamp() * 1000)
    body = meta.instagram_body(meta.instagram_entry(
        IG_ACCOUNT, meta.instagram_text(IG_ACCOUNT, igsid, text, timestamp_ms=stamp)))
    learned = meta_saw(platform.sandbox_url, body, page_id=IG_PAGE)
    assert learned["conversations"] == 1
    answer = fb.signed_post(f"{platform.url('intake')}/webhooks/facebook", body)
    assert answer.status_code == 200, answer.text


def events_of(platform, source: str) -> list[dict]:
    with platform.rpc() as rpc:
        service = getattr(rpc, source)
        events = service.events_since(0, 1000)
        while events and len(events) % 1000 == 0:
            more = service.events_since(events[-1]["position"], 1000)
            if not more:
                break
            events += more
    return events


def filed(platform, marker: str) -> dict:
    return wait_for(lambda: next((e for e in events_of(platform, "intake") if e["event_type"] == "ComplaintFiled"
                                  and marker in e["data"]["text"]), None), 30, message=f"filed {marker}")


def file_from_instagram(platform, text: str, at: datetime | None = None) -> tuple[str, str, str]:
    marker = uuid.uuid4().hex[:8]
    igsid = new_igsid()
    instagram_writes(platform, igsid, f"{text} {marker}", at)
    event = filed(platform, marker)
    return event["complaint_id"], event["data"]["tracking_code"], igsid


def calls_to(platform, igsid: str, ok_only: bool = True) -> list[dict]:
    calls = platform.sandbox_calls(status=200) if ok_only else platform.sandbox_calls()
    return [c for c in calls if (c.get("recipient") or {}).get("id") == igsid]


def trigger_id(platform, complaint_id: str, source: str, event_type: str) -> str:
    def find():
        found = [e for e in events_of(platform, source)
                 if e["complaint_id"] == complaint_id and e["event_type"] == event_type]
        return found[-1]["event_id"] if found else None
    return wait_for(find, 30, message=f"{event_type} of {complaint_id}")


def settled(platform, trigger_event_id: str, count: int = 1) -> list[dict]:
    def done():
        with platform.rpc() as rpc:
            rows = rpc.notification.delivery_state(trigger_event_id)
        return rows if len(rows) >= count and all(r["state"] != "pending" for r in rows) else None
    return wait_for(done, 30, message=f"messages of {trigger_event_id} finished")


def undelivered_for(platform, complaint_id: str) -> list[dict]:
    with platform.rpc() as rpc:
        return [item for item in rpc.notification.undelivered(1000) if item["complaint_id"] == complaint_id]


def notified(platform, complaint_id: str) -> list[dict]:
    return [e for e in events_of(platform, "notification")
            if e["complaint_id"] == complaint_id and e["event_type"] == "CitizenNotified"]


def assign(platform, complaint_id: str, agency: str) -> None:
    """The desk routes the complaint to ``agency`` (unless routing's rules already did)."""
    def assigned():
        with platform.rpc() as rpc:
            try:
                rpc.routing.assign(complaint_id, [agency], "Diteruskan untuk ditindaklanjuti.", "desk:ayu")
            except IllegalAction as error:
                if "already assigned" not in str(error):
                    raise
        return True
    wait_for(assigned, 30, message="routing knows the complaint")


def respond(platform, complaint_id: str, agency: str, answer: str) -> None:
    with platform.rpc() as rpc:
        rpc.routing.respond(complaint_id, agency, answer, False, f"{agency}:budi")


def in_thread(call: dict) -> bool:
    """A Send API call into the IGSID's Instagram thread, through the linked Page."""
    return (call["page_id"], call["platform"], call["kind"]) == (IG_PAGE, "instagram", "messenger")


# -- the thread -------------------------------------------------------------------------------

def test_an_instagram_complaint_is_acknowledged_routed_and_answered_in_its_thread(platform):
    complaint_id, code, igsid = file_from_instagram(
        platform, "Lampu jalan di Jalan Pariwisata Senggigi mati sejak minggu lalu.")
    [filing] = [e for e in events_of(platform, "intake") if e["complaint_id"] == complaint_id
                and e["event_type"] == "ComplaintFiled"]
    assert filing["data"]["channel"] == "instagram_direct"
    assert filing["data"]["reply_to"] == {"page_id": IG_PAGE, "psid": igsid, "platform": "instagram"}

    ack = wait_for(lambda: calls_to(platform, igsid), 30, message="the acknowledgment")[0]
    assert in_thread(ack) and (ack["messaging_type"], ack["tag"]) == ("RESPONSE", None)
    assert code in ack["text"] and f"CEK {code}" in ack["text"]

    assign(platform, complaint_id, "dpupr")
    routed = wait_for(lambda: [c for c in calls_to(platform, igsid) if "diteruskan kepada" in c["text"]
                               and "Dinas Pekerjaan Umum" in c["text"]], 30, message="the routing message")[0]
    assert in_thread(routed) and routed["messaging_type"] == "RESPONSE"

    # A long answer with multi-byte characters: Instagram takes under 1,000 UTF-8 bytes a message.
    sentences = [f"Kalimat nomor {i} — tim dinas meninjau lokasi dan menjelaskan tindak lanjutnya." for i in range(50)]
    respond(platform, complaint_id, "dpupr", " ".join(sentences))
    answer_id = trigger_id(platform, complaint_id, "routing", "ComplaintResponded")
    rows = settled(platform, answer_id, 4)
    assert {r["state"] for r in rows} == {"sent"} and {r["channel"] for r in rows} == {"messenger"}
    parts = [c for c in calls_to(platform, igsid) if "Kalimat nomor" in c["text"]]
    assert len(parts) == len(rows) >= 4
    assert all(in_thread(c) and len(c["text"].encode("utf-8")) < 1000 for c in parts)
    assert any(len(c["text"].encode("utf-8")) > len(c["text"]) for c in parts)  # bytes, not characters
    joined = " ".join(c["text"] for c in parts)
    assert [int(w.split()[0]) for w in joined.split("Kalimat nomor ")[1:]] == list(range(50))
    assert parts[0]["text"].startswith("Jawaban dari Dinas Pekerjaan Umum")

    # CEK from the same Instagram thread: the full status, answered there.
    instagram_writes(platform, igsid, f"CEK {code}")
    status = wait_for(lambda: [c for c in calls_to(platform, igsid) if c["text"].startswith("Status aduan")], 30,
                      message="the status answer")[0]
    assert in_thread(status) and code in status["text"] and "Dinas Pekerjaan Umum" in status["text"]

    events = wait_for(lambda: (lambda got: got if len(got) >= 3 + len(parts) else None)(
        notified(platform, complaint_id)), 30, message="CitizenNotified for each message")
    assert all(e["data"]["channel"] == "messenger" and e["data"]["platform"] == "instagram" for e in events)
    assert undelivered_for(platform, complaint_id) == []


def test_a_confidential_instagram_complaint_names_no_agency_in_its_thread(platform):
    complaint_id, code, igsid = file_from_instagram(platform, "Ada pungutan liar di terminal Mandalika.")
    wait_for(lambda: calls_to(platform, igsid), 30, message="the acknowledgment")
    assign(platform, complaint_id, "polda-ntb")
    respond(platform, complaint_id, "polda-ntb", "Laporan Anda sedang kami selidiki.")
    answer = wait_for(lambda: [c for c in calls_to(platform, igsid) if "sedang kami selidiki" in c["text"]], 30,
                      message="the answer")[0]
    routed = [c for c in calls_to(platform, igsid) if "diteruskan kepada" in c["text"]]
    assert routed and "dirahasiakan" in routed[-1]["text"]
    assert answer["text"].startswith("Jawaban dari instansi yang menangani aduan Anda")
    # Routing's rules led it to the Inspektorat, the desk then to the Polda: neither is named.
    for call in calls_to(platform, igsid):
        assert in_thread(call)
        assert not any(name in call["text"] for name in ("Kepolisian", "Inspektorat", "polda", "inspektorat"))


# -- the windows ------------------------------------------------------------------------------

def test_a_late_answer_goes_with_human_agent_and_one_after_seven_days_is_listed_for_the_desk(platform):
    # Three days after the citizen's last Instagram message: the automated messages may not go,
    # the agency's answer goes with HUMAN_AGENT (approved), which Instagram accepts.
    late_id, _, late_igsid = file_from_instagram(platform, "Jalan berlubang di Praya belum ditambal.",
                                                 at=ago(days=3))
    [ack] = settled(platform, trigger_id(platform, late_id, "intake", "ComplaintFiled"))
    assert (ack["state"], ack["reason"]) == ("undeliverable", "outside_24h_automated")
    assign(platform, late_id, "dpupr")
    respond(platform, late_id, "dpupr", "Penambalan dijadwalkan pekan ini.")
    [answer] = settled(platform, trigger_id(platform, late_id, "routing", "ComplaintResponded"))
    assert (answer["state"], answer["messaging_type"], answer["tag"]) == ("sent", "MESSAGE_TAG", "HUMAN_AGENT")
    [call] = calls_to(platform, late_igsid)
    assert in_thread(call) and (call["messaging_type"], call["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")

    # Eight days: the thread is closed; nothing is sent, the answer is listed for the desk.
    closed_id, _, closed_igsid = file_from_instagram(platform, "Sampah menumpuk di pasar Kebon Roek.",
                                                     at=ago(days=8))
    settled(platform, trigger_id(platform, closed_id, "intake", "ComplaintFiled"))
    assign(platform, closed_id, "dlhk")
    respond(platform, closed_id, "dlhk", "Sampah akan diangkut besok pagi.")
    [answer] = settled(platform, trigger_id(platform, closed_id, "routing", "ComplaintResponded"))
    assert (answer["state"], answer["reason"]) == ("undeliverable", "messenger_window_closed")
    assert calls_to(platform, closed_igsid, ok_only=False) == []  # no call Meta would refuse
    listed = undelivered_for(platform, closed_id)
    assert {"acknowledgment", "answer"} <= {item["kind"] for item in listed}
    assert {item["reason"] for item in listed} == {"messenger_window_closed"}
    assert all(item["explanation"] for item in listed)


def test_metas_instagram_window_refusal_is_listed_for_the_desk(platform):
    # Notification believes the citizen wrote just now; Meta knows the thread's last message is
    # two days old and answers Instagram's outside-window error, 10 / 2534022.
    marker = uuid.uuid4().hex[:8]
    igsid = new_igsid()
    body = meta.instagram_body(meta.instagram_entry(
        IG_ACCOUNT, meta.instagram_text(IG_ACCOUNT, igsid, f"Air PDAM di Ampenan keruh {marker}")))
    meta_saw(platform.sandbox_url, body, page_id=IG_PAGE)
    citizen_wrote(platform.sandbox_url, IG_PAGE, igsid, at=ago(days=2), platform="instagram")
    assert fb.signed_post(f"{platform.url('intake')}/webhooks/facebook", body).status_code == 200
    complaint_id = filed(platform, marker)["complaint_id"]

    [ack] = settled(platform, trigger_id(platform, complaint_id, "intake", "ComplaintFiled"))
    assert (ack["state"], ack["reason"], ack["code"]) == ("undeliverable", "outside_window", 10)
    assign(platform, complaint_id, "perkim")
    respond(platform, complaint_id, "perkim", "Pipa sedang dibersihkan.")
    [answer] = settled(platform, trigger_id(platform, complaint_id, "routing", "ComplaintResponded"))
    assert (answer["state"], answer["reason"], answer["code"]) == ("undeliverable", "outside_window", 10)
    assert answer["last_error"] == "outside_window:10/2534022"
    refused = calls_to(platform, igsid, ok_only=False)
    assert refused and all(in_thread(c) and c["status"] == 400 for c in refused)
    assert {c["response"]["error"]["error_subcode"] for c in refused} == {2534022}
    # Changing channel leaves an Instagram thread none: each message is listed for the desk.
    listed = undelivered_for(platform, complaint_id)
    assert {item["kind"] for item in listed} >= {"acknowledgment", "answer"}
    assert {(item["reason"], item["code"]) for item in listed} == {("outside_window", 10)}
