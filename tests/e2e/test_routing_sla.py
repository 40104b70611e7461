"""Service-level clocks against the real broker, with clocks shortened by ROUTING_SLA_SECONDS and
the breach timer every second: a breach is escalated exactly once — also when routing is killed
after escalating and when the deadline passes while routing is down — to the lead agencies'
supervisors and the desk; an acknowledgment stops the first-response clock."""
from __future__ import annotations

import time

import pytest

import shared.glue.remote_errors  # noqa: F401 - registers remote exception types
from shared.core.events import parse_iso, utc_now
from tests.support.platform import Platform, wait_for

DESK = "diskominfotik"
FIRST_RESPONSE_SECONDS = 3
FOLLOW_UP_SECONDS = 10


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("routing-sla"), services=("intake", "routing"),
                       with_sandbox=False, extra_env={
                           "ROUTING_SLA_SECONDS": (f"triage=2,urgent={FIRST_RESPONSE_SECONDS},"
                                                   f"important={FIRST_RESPONSE_SECONDS},"
                                                   f"normal={FIRST_RESPONSE_SECONDS},"
                                                   f"follow_up={FOLLOW_UP_SECONDS}"),
                           "ROUTING_SLA_CHECK_SECONDS": "1",
                       }).start_all()
    yield running
    running.stop_all()


def file_and_route(platform, text, category, region=None) -> dict:
    payload = {"text": text, "channel": "api", "category": category}
    if region:
        payload["location"] = {"region_code": region}
    with platform.rpc() as rpc:
        complaint_id = rpc.intake.file_complaint(payload)["complaint_id"]

    def ready():
        with platform.rpc() as rpc:
            complaint = rpc.routing.get_complaint(complaint_id)
        return complaint if complaint["decided_by"] else None
    return wait_for(ready, 30, interval=0.1, message="routing")


def escalations(platform, complaint_id) -> list[dict]:
    with platform.rpc() as rpc:
        events = rpc.routing.events_since(0, 1000)
    return [e["data"] for e in events
            if e["complaint_id"] == complaint_id and e["event_type"] == "ComplaintEscalated"]


def test_triage_breach_escalates_once_to_the_desk(platform):
    complaint = file_and_route(platform, "Mohon informasi umum", "lainnya")
    assert set(complaint["due_at"]) == {"triage"}
    cid = complaint["complaint_id"]
    [escalation] = wait_for(lambda: escalations(platform, cid), 20, message="triage escalation")
    assert escalation["breach"] == "triage" and escalation["notified"] == [DESK]
    assert escalation["due_at"] == complaint["due_at"]["triage"]
    time.sleep(3)  # three more timer ticks
    assert len(escalations(platform, cid)) == 1
    with platform.rpc() as rpc:
        queue = {item["complaint_id"]: item for item in rpc.routing.desk_queue()}
    assert queue[cid]["why"] == ["triage", "escalated:triage"]


def test_breaches_escalate_exactly_once_across_a_restart(platform):
    complaint = file_and_route(platform, "Jalan provinsi di Kopang retak", "infrastruktur", "5202")
    cid = complaint["complaint_id"]
    assert complaint["lead_agencies"] == ["dpupr"]
    follow_up_due = parse_iso(complaint["due_at"]["follow_up"])

    [first] = wait_for(lambda: escalations(platform, cid), 20, message="first-response escalation")
    assert first["breach"] == "first_response"
    assert first["notified"] == ["inspektorat", DESK]  # dpupr's supervisor, then the desk
    assert first["due_at"] == complaint["due_at"]["first_response"]

    # Routing dies right after escalating, and stays down while the follow-up deadline passes.
    platform.kill("routing")
    assert utc_now() < follow_up_due, "the follow-up deadline passed before the restart test began"
    time.sleep(max(0.0, (follow_up_due - utc_now()).total_seconds()) + 1)
    platform.start("routing")

    def both():
        found = escalations(platform, cid)
        return found if len(found) >= 2 else None
    found = wait_for(both, 20, message="follow-up escalation after the restart")
    time.sleep(3)  # more ticks of the restarted timer
    found = escalations(platform, cid)
    assert sorted(e["breach"] for e in found) == ["first_response", "follow_up"]
    with platform.rpc() as rpc:
        assert rpc.routing.get_complaint(cid)["escalated"] == ["first_response", "follow_up"]


def test_acknowledgment_stops_the_first_response_clock(platform):
    complaint = file_and_route(platform, "Puskesmas tutup siang hari", "kesehatan", "5203")
    cid = complaint["complaint_id"]
    assert complaint["lead_agencies"] == ["pemkab-lotim"]
    with platform.rpc() as rpc:
        rpc.routing.acknowledge(cid, "pemkab-lotim", "officer")
    routed_at = parse_iso(complaint["routed_at"])
    assert (utc_now() - routed_at).total_seconds() < FIRST_RESPONSE_SECONDS, "acknowledged too late to test"
    [follow_up] = wait_for(lambda: escalations(platform, cid), FOLLOW_UP_SECONDS + 10,
                           message="follow-up escalation")
    assert follow_up["breach"] == "follow_up"
    assert follow_up["notified"] == ["biro-organisasi", DESK]
