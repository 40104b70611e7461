"""``FACEBOOK_HUMAN_AGENT_APPROVED`` against the strict sandbox, with the production default (off).

Meta honours the HUMAN_AGENT tag only for an app whose Human Agent feature passed App Review.
With the setting off (the default), an agency's answer 24 h–7 d after the citizen's last message
goes straight to the fallback: no Send call with the tag reaches the sandbox, even for a Page the
sandbox would accept it from. With the setting on while Meta has not approved the app (a
misconfiguration), the sandbox refuses the tag as Meta does (code 10, no window subcode) and the
permission row of the error table handles it: the next channel, the desk told why.

Every service is its own process (intake, routing, notification) with the real broker; the sandbox
runs with the same (off) setting, and notification is restarted with it on for the mismatch.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from shared.core.errors import IllegalAction
from tests.support import facebook
from tests.support.platform import DEV_PAGE_ID, DEV_PAGE_TOKEN, Platform, wait_for

MISMATCH_PAGE = "700000000000007"
PAGES = {DEV_PAGE_ID: DEV_PAGE_TOKEN, MISMATCH_PAGE: "mismatch-page-token"}
ANSWER = "Bantuan sudah kami salurkan kemarin."


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("human-agent")
    env = {"FACEBOOK_PAGES": ",".join(f"{p}:{t}" for p, t in PAGES.items()),
           "NOTIFICATION_RETRY_BASE_SECONDS": "0.3",
           "INTAKE_BUBBLE_SECONDS": "0",
           # The production default: the app has not passed Human Agent review.
           "FACEBOOK_HUMAN_AGENT_APPROVED": ""}
    running = Platform(amqp_uri, data_dir, services=("intake", "routing", "notification"),
                       extra_env=env).start_all()
    yield running
    running.stop_all()


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def control(platform, path, payload):
    response = requests.post(f"{platform.sandbox_url}/_sandbox/{path}", json=payload, timeout=10)
    response.raise_for_status()
    return response.json()


def file_messenger(platform, page_id: str, last_message_at: datetime) -> tuple[str, str]:
    psid = facebook.new_psid()
    control(platform, "conversations", {"page_id": page_id, "psid": psid, "last_message_at": iso(last_message_at)})
    complaint = {"text": "Lampu jalan di depan kantor desa mati sudah seminggu, mohon dibantu.",
                 "channel": "api", "reply_to": {"page_id": page_id, "psid": psid},
                 "last_citizen_message_at": iso(last_message_at)}
    with platform.rpc() as rpc:
        return rpc.intake.file_complaint(complaint)["complaint_id"], psid


def answer(platform, complaint_id: str) -> None:
    def assigned():
        with platform.rpc() as rpc:
            try:
                rpc.routing.assign(complaint_id, ["dinsos"], "Diteruskan untuk ditindaklanjuti.", "desk:ayu")
            except IllegalAction as error:
                if "already assigned" not in str(error):
                    raise
        return True
    wait_for(assigned, 20, message="routing knows the complaint")
    with platform.rpc() as rpc:
        rpc.routing.respond(complaint_id, "dinsos", ANSWER, False, "dinsos:budi")


def calls_to(platform, psid: str) -> list[dict]:
    return [c for c in platform.sandbox_calls() if (c.get("recipient") or {}).get("id") == psid]


def failures(platform, complaint_id: str) -> list[dict]:
    with platform.rpc() as rpc:
        events = rpc.notification.events_since(0, 1000)
    return [e["data"] for e in events
            if e["complaint_id"] == complaint_id and e["event_type"] == "CitizenNotificationFailed"]


def undelivered_reasons(platform, complaint_id: str) -> set[str]:
    with platform.rpc() as rpc:
        return {item["reason"] for item in rpc.notification.undelivered(1000) if item["complaint_id"] == complaint_id}


def test_with_the_setting_off_a_late_answer_goes_to_the_fallback_without_the_tag(platform):
    # The sandbox would accept the tag from this Page: only notification's setting keeps it unsent.
    control(platform, "settings", {"page_id": DEV_PAGE_ID, "human_agent_approved": True})
    late_id, late_psid = file_messenger(platform, DEV_PAGE_ID, datetime.now(timezone.utc) - timedelta(days=3))
    fresh_id, fresh_psid = file_messenger(platform, DEV_PAGE_ID, datetime.now(timezone.utc) - timedelta(minutes=5))
    for complaint_id in (late_id, fresh_id):
        answer(platform, complaint_id)
    # The control: inside 24 h the same answer is sent as a RESPONSE, so the pipeline works.
    wait_for(lambda: [c for c in calls_to(platform, fresh_psid)
                      if c["status"] == 200 and (c.get("text") or "").startswith("Jawaban dari")], 30,
             message="the answer inside 24 h")
    refused = wait_for(lambda: [f for f in failures(platform, late_id) if f["reason"] == "human_agent_not_approved"],
                       30, message="the late answer refused by the setting")
    assert refused[0]["permanent"] is True
    assert "human_agent_not_approved" in undelivered_reasons(platform, late_id)
    calls = calls_to(platform, late_psid)
    assert not [c for c in calls if c.get("tag") == "HUMAN_AGENT" or c.get("messaging_type") == "MESSAGE_TAG"], calls
    assert calls == []  # the automated acknowledgment (3 days late) was not tried either


def test_setting_on_but_meta_has_not_approved_the_app_is_handled_by_the_permission_row(platform):
    # Misconfigured: notification believes the review passed, Meta (the sandbox) does not.
    control(platform, "settings", {"page_id": MISMATCH_PAGE, "human_agent_approved": False})
    platform.stop("notification")
    platform.env["FACEBOOK_HUMAN_AGENT_APPROVED"] = "true"
    platform.start("notification")
    complaint_id, psid = file_messenger(platform, MISMATCH_PAGE, datetime.now(timezone.utc) - timedelta(days=3))
    answer(platform, complaint_id)
    refused = wait_for(lambda: [f for f in failures(platform, complaint_id) if f["reason"] == "permission_missing"],
                       40, message="Meta's refusal of the tag")
    assert refused[0]["code"] == 10 and refused[0]["permanent"] is True
    tagged = [c for c in calls_to(platform, psid) if c.get("tag") == "HUMAN_AGENT"]
    assert len(tagged) == 1 and tagged[0]["status"] == 400  # tried once, refused, not retried
    assert tagged[0]["messaging_type"] == "MESSAGE_TAG"
    assert "permission_missing" in undelivered_reasons(platform, complaint_id)
