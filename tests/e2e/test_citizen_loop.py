"""Issue 19 on the real services over RabbitMQ, with the Graph API sandbox as Meta: the citizen
closes the loop — resolved → "Sudah selesai?" (quick replies Sudah/Belum, inside the 24-hour
window) → "belum" (a quick-reply tap, or free text) → ``ComplaintReopened``, back to the lead →
answered and resolved again → asked again → "sudah" → "Beri nilai 1–5" → a rating
(``CitizenRated``) → thanked → in the monthly report, agency performance and the dashboard.

Played twice: a Messenger complaint (taps on the quick replies), and a Page comment whose
citizen continues in the Messenger thread its private reply opened (free text: "blm jalannya msh
rusak", "sdh, terima kasih", "5"). The sandbox checks every quick reply as Meta does
(``tests/integration/test_graph_sandbox_quick_replies.py``)."""
from __future__ import annotations

from datetime import datetime

import pytest
import requests

import shared.glue.remote_errors  # noqa: F401 - registers remote exception types
from sandbox.control import meta_saw
from sandbox.graph_sandbox import commenter_psid
from shared.core.events import types as ev
from shared.core.reference import in_wita
from tests.support import facebook as fb
from tests.support import meta_payloads as meta
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("citizen-loop"), extra_env={
        "INTAKE_BUBBLE_SECONDS": "0",
        "REPORTING_STATUS_RATE_PER_MINUTE": "0",
        "REPORTING_DASHBOARD_CACHE_SECONDS": "0",
    }).start_all()
    yield running
    running.stop_all()


def deliver(platform, *items) -> None:
    """Meta delivers ``items`` (``messaging[]`` events) to intake's webhook, signed; the sandbox
    learns from them who wrote (the windows), as Meta does."""
    body = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, *items))
    meta_saw(platform.sandbox_url, body)
    assert fb.signed_post(f"{platform.url('intake')}/webhooks/facebook", body).status_code == 200


def sent_to(platform, psid: str) -> list[dict]:
    return [c for c in platform.sandbox_calls(status=200) if (c.get("recipient") or {}).get("id") == psid]


def next_message(platform, psid: str, seen: int, contains: str, timeout: float = 40) -> dict:
    """The first message to ``psid`` after the ``seen`` first ones whose text has ``contains``."""
    return wait_for(lambda: next((c for c in sent_to(platform, psid)[seen:] if contains in (c.get("text") or "")),
                                 None), timeout, message=f"a message with {contains!r}")


def routing_events(platform, complaint_id: str, event_type: str) -> list[dict]:
    with platform.rpc() as rpc:
        return [e for e in rpc.routing.events_since(0, 1000)
                if e["complaint_id"] == complaint_id and e["event_type"] == event_type]


def complaint_filed(platform, predicate) -> dict:
    def found():
        with platform.rpc() as rpc:
            for event in rpc.intake.events_since(0, 1000):
                if event["event_type"] == ev.COMPLAINT_FILED and predicate(event["data"]):
                    complaint = rpc.routing.get_complaint(event["complaint_id"])
                    return complaint if complaint["decided_by"] else None
        return None
    return wait_for(found, 40, message="complaint filed and routed")


def resolve(platform, complaint: dict, text: str) -> str:
    lead = complaint["lead_agencies"][0]
    with platform.rpc() as rpc:
        done = rpc.routing.respond(complaint["complaint_id"], lead, text, True, f"{lead}:eka")
    assert done["public_status"] == "selesai"
    return lead


def asked(platform, psid: str, seen: int) -> dict:
    """"Sudah selesai?" arrived, with Meta-shaped quick replies, in the 24-hour window."""
    question = next_message(platform, psid, seen, "sudah benar-benar selesai")
    assert question["messaging_type"] == "RESPONSE" and not question.get("tag")   # never HUMAN_AGENT
    assert [q["title"] for q in question["quick_replies"]] == ["Sudah", "Belum"]
    return question


def status_of(platform, complaint_id: str) -> str:
    with platform.rpc() as rpc:
        return rpc.routing.get_complaint(complaint_id)["public_status"]


def filing_month(complaint: dict) -> tuple[int, int]:
    filed = in_wita(datetime.fromisoformat(complaint["filed_at"].replace("Z", "+00:00")))
    return filed.year, filed.month


def in_the_reports(platform, complaint: dict, lead: str, score: int) -> None:
    """The monthly summary (overall, its category, its lead), agency performance and the
    dashboard count the reopen and the rating."""
    year, month = filing_month(complaint)

    def counted():
        with platform.rpc() as rpc:
            summary = rpc.reporting.monthly_summary(year, month)
            agency = rpc.reporting.agency_performance(lead, "2020-01-01", "2099-12-31")
        by_category = summary["satisfaction_by_category"].get(complaint["category"]) or {}
        by_agency = summary["satisfaction_by_agency"].get(lead) or {}
        ok = (summary["satisfaction"]["rated"] >= 1 and summary["satisfaction"]["reopened"] >= 1
              and by_category.get("rated", 0) >= 1 and by_agency.get("reopened", 0) >= 1
              and agency["rated"] >= 1 and agency["reopened"] >= 1)
        return (summary, agency) if ok else None
    summary, agency = wait_for(counted, 40, message="the reports count the reopen and the rating")
    assert 1 <= summary["satisfaction"]["average_rating"] <= 5 and agency["average_rating"] is not None
    public = requests.get(f"{platform.url('reporting')}/api/complaints/{complaint['tracking_code']}", timeout=10)
    assert public.json()["status"] == "selesai"
    page = requests.get(f"{platform.url('reporting')}/dashboard", params={"month": f"{year}-{month:02d}"},
                        timeout=10)
    assert page.status_code == 200 and 'id="kpi-rating">—' not in page.text and 'id="kpi-reopened">0' not in page.text


def test_messenger_resolve_asked_belum_reopened_answered_sudah_rated_reported(platform):
    psid = fb.new_psid()
    deliver(platform, fb.text_message(DEV_PAGE_ID, psid, "Jalan kabupaten di Praya Lombok Tengah rusak parah, "
                                                           "banyak lubang besar di depan sekolah"))
    complaint = complaint_filed(platform, lambda data: (data["reply_to"] or {}).get("psid") == psid)
    cid = complaint["complaint_id"]
    lead = resolve(platform, complaint, "Jalan sudah kami tambal kemarin.")
    question = asked(platform, psid, 0)
    no = next(q for q in question["quick_replies"] if q["title"] == "Belum")

    seen = len(sent_to(platform, psid))
    deliver(platform, meta.quick_reply_tap(DEV_PAGE_ID, psid, no["title"], no["payload"]))
    [reopened] = wait_for(lambda: routing_events(platform, cid, ev.COMPLAINT_REOPENED), 40, message="reopened")
    assert (reopened["data"]["words"], reopened["data"]["to_desk"]) == ("Belum", False)
    assert reopened["data"]["lifecycle"]["lead_agencies"] == [lead] and "follow_up" in reopened["data"]["due_at"]
    assert status_of(platform, cid) == "diproses"
    next_message(platform, psid, seen, "buka kembali")

    seen = len(sent_to(platform, psid))
    resolve(platform, complaint, "Sudah kami tambal ulang dengan aspal baru.")
    question = asked(platform, psid, seen)
    yes = next(q for q in question["quick_replies"] if q["title"] == "Sudah")
    seen = len(sent_to(platform, psid))
    deliver(platform, meta.quick_reply_tap(DEV_PAGE_ID, psid, yes["title"], yes["payload"]))
    rating = next_message(platform, psid, seen, "nilai 1")
    assert [q["title"] for q in rating["quick_replies"]] == ["1", "2", "3", "4", "5"]
    four = rating["quick_replies"][3]
    seen = len(sent_to(platform, psid))
    deliver(platform, meta.quick_reply_tap(DEV_PAGE_ID, psid, four["title"], four["payload"]))
    [rated] = wait_for(lambda: routing_events(platform, cid, ev.CITIZEN_RATED), 40, message="rated")
    assert (rated["data"]["score"], rated["data"]["agencies"]) == (4, [lead])
    next_message(platform, psid, seen, "(4 dari 5)")

    # Asking for the status afterwards is still a status question, not an answer.
    seen = len(sent_to(platform, psid))
    deliver(platform, fb.text_message(DEV_PAGE_ID, psid, "CEK " + complaint["tracking_code"]))
    next_message(platform, psid, seen, f"Status aduan {complaint['tracking_code']}: selesai")
    assert len(routing_events(platform, cid, ev.COMPLAINT_REOPENED)) == 1
    in_the_reports(platform, complaint, lead, 4)


def test_comment_resolve_asked_in_messenger_blm_reopened_answered_sdh_rated_reported(platform):
    comment = fb.comment_change(DEV_PAGE_ID, "Jalan kabupaten di Praya Lombok Tengah ambles dekat pasar, "
                                             "motor sering jatuh")
    comment_id = comment["value"]["comment_id"]
    body = fb.page_body(fb.changes_entry(DEV_PAGE_ID, comment))
    meta_saw(platform.sandbox_url, body)
    assert fb.signed_post(f"{platform.url('intake')}/webhooks/facebook", body).status_code == 200
    complaint = complaint_filed(platform, lambda data: (data["reply_to"] or {}).get("comment_id") == comment_id)
    cid = complaint["complaint_id"]

    # The private reply gave the citizen a Messenger thread (Meta's recipient_id); intake learnt it.
    psid = commenter_psid(comment_id)

    def handed_over():
        with platform.rpc() as rpc:
            return [e for e in rpc.notification.events_since(0, 1000) if e["complaint_id"] == cid
                    and e["data"].get("channel") == "comment_private"]
    private = wait_for(handed_over, 40, message="the private reply")[0]
    # Intake learns the hand-over from that event within about half a second (lingering); a
    # citizen takes longer to read and answer, this test would not.
    wait_for(lambda: platform.checkpoint("intake", "notification") >= private["position"], 20,
             message="intake handled the private reply's CitizenNotified")
    deliver(platform, fb.text_message(DEV_PAGE_ID, psid, "Terima kasih, mohon segera diperbaiki ya"))

    def continued():
        with platform.rpc() as rpc:
            return [e for e in rpc.intake.events_since(0, 1000)
                    if e["complaint_id"] == cid and e["event_type"] == ev.CITIZEN_MESSAGE_RECEIVED]
    wait_for(continued, 40, message="the Messenger message continues the comment's complaint")

    lead = resolve(platform, complaint, "Jalan sudah kami urug dan padatkan.")
    asked(platform, psid, 0)
    assert not [c for c in platform.sandbox_calls(status=200)
                if c.get("comment_id") == comment_id and c.get("quick_replies")]   # never under the comment

    seen = len(sent_to(platform, psid))
    deliver(platform, fb.text_message(DEV_PAGE_ID, psid, "blm jalannya msh rusak"))
    [reopened] = wait_for(lambda: routing_events(platform, cid, ev.COMPLAINT_REOPENED), 40, message="reopened")
    assert reopened["data"]["words"] == "blm jalannya msh rusak"
    assert status_of(platform, cid) == "diproses"
    next_message(platform, psid, seen, "buka kembali")

    seen = len(sent_to(platform, psid))
    resolve(platform, complaint, "Sudah kami aspal ulang.")
    asked(platform, psid, seen)
    seen = len(sent_to(platform, psid))
    deliver(platform, fb.text_message(DEV_PAGE_ID, psid, "sdh, terima kasih"))
    next_message(platform, psid, seen, "nilai 1")
    seen = len(sent_to(platform, psid))
    deliver(platform, fb.text_message(DEV_PAGE_ID, psid, "9"))                 # outside 1–5: asked again
    again = next_message(platform, psid, seen, "1 sampai 5")
    assert len(again["quick_replies"]) == 5
    deliver(platform, fb.text_message(DEV_PAGE_ID, psid, "5"))
    [rated] = wait_for(lambda: routing_events(platform, cid, ev.CITIZEN_RATED), 40, message="rated")
    assert (rated["data"]["score"], rated["data"]["agencies"]) == (5, [lead])
    next_message(platform, psid, seen, "(5 dari 5)")
    with platform.rpc() as rpc:
        filed = [e for e in rpc.intake.events_since(0, 1000) if e["event_type"] == ev.COMPLAINT_FILED
                 and ((e["data"]["reply_to"] or {}).get("comment_id") == comment_id
                      or (e["data"]["reply_to"] or {}).get("psid") == psid)]
    assert len(filed) == 1                     # no answer became a new complaint
    in_the_reports(platform, complaint, lead, 5)
