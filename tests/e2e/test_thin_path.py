"""The thin path through all four services against the real broker, as separate processes:
intake.file_complaint → ComplaintFiled → ComplaintRouted → the acknowledgment at the Graph API
sandbox → reporting's monthly count; and a plain pika consumer (no nameko) receives the
ComplaintFiled envelope the way another government system would."""
from __future__ import annotations

import json
import uuid
from zoneinfo import ZoneInfo

import pika
import pytest
import requests

from sandbox.control import citizen_wrote
from shared.core.events import parse_iso
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("platform")).start_all()
    yield running
    running.stop_all()


def bind_plain_consumer(amqp_uri: str, exchange: str, routing_key: str):
    """What an outside system does: its own queue bound to the service's topic exchange."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True, passive=True)
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange=exchange, routing_key=routing_key)
    return connection, channel, queue


def test_health_of_every_service(platform):
    for name in platform.services:
        body = requests.get(f"{platform.url(name)}/health", timeout=5).json()
        assert body["service"] == name and body["status"] == "ok"


def test_complaint_flows_through_all_four_services(platform, amqp_uri):
    connection, channel, queue = bind_plain_consumer(amqp_uri, "intake.events", "ComplaintFiled")
    psid = f"7{uuid.uuid4().int % 10**14:014d}"  # Meta PSIDs are digits
    # The sandbox, like Meta, answers only people who wrote to the Page.
    citizen_wrote(platform.sandbox_url, DEV_PAGE_ID, psid)
    with platform.rpc() as rpc:
        result = rpc.intake.file_complaint({
            "text": "Jalan di Desa Kuripan Lombok Barat rusak parah, mohon diperbaiki.",
            "channel": "api", "reply_to": {"page_id": DEV_PAGE_ID, "psid": psid}})
    assert set(result) == {"complaint_id", "tracking_code"}
    complaint_id, code = result["complaint_id"], result["tracking_code"]

    # An outside system's plain pika consumer sees the envelope.
    def received():
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        return json.loads(body) if method else None
    envelope = wait_for(received, 20, message="ComplaintFiled on a plain pika queue")
    connection.close()
    assert envelope["event_type"] == "ComplaintFiled" and envelope["source"] == "intake"
    assert envelope["complaint_id"] == complaint_id and envelope["data"]["tracking_code"] == code
    assert envelope["position"] >= 1 and envelope["version"] == 1 and envelope["schema_version"] == 1

    # Routing reacted with ComplaintRouted (read from routing's own log over RPC).
    def routed():
        with platform.rpc() as rpc:
            return [e for e in rpc.routing.events_since(0, 1000)
                    if e["complaint_id"] == complaint_id and e["event_type"] == "ComplaintRouted"]
    assert wait_for(routed, 30, message="ComplaintRouted")[0]["data"]["lead_agencies"]

    # Notification sent the acknowledgment with the tracking code to that PSID via the sandbox.
    def acknowledged():
        return [c for c in platform.sandbox_calls(status=200)
                if (c.get("recipient") or {}).get("id") == psid]
    call = wait_for(acknowledged, 30, message="acknowledgment at the Graph API sandbox")[0]
    assert code in call["text"] and call["messaging_type"] == "RESPONSE"
    assert call["page_id"] == DEV_PAGE_ID

    def notified():
        with platform.rpc() as rpc:
            return [e for e in rpc.notification.events_since(0, 1000)
                    if e["complaint_id"] == complaint_id and e["event_type"] == "CitizenNotified"]
    assert wait_for(notified, 30, message="CitizenNotified")[0]["data"]["graph_message_id"]

    # Reporting counts it in the month of its filing time in WITA.
    with platform.rpc() as rpc:
        filed_at = parse_iso(rpc.intake.get_complaint(complaint_id)["filed_at"])
    local = filed_at.astimezone(ZoneInfo("Asia/Makassar"))

    def counted():
        with platform.rpc() as rpc:
            summary = rpc.reporting.monthly_summary(local.year, local.month)
        return summary if summary["total"] >= 1 else None
    summary = wait_for(counted, 30, message="monthly count")
    assert summary["year"] == local.year and summary["month"] == local.month


def test_redelivered_event_changes_nothing_across_services(platform, amqp_uri):
    psid = f"7{uuid.uuid4().int % 10**14:014d}"  # Meta PSIDs are digits
    # The sandbox, like Meta, answers only people who wrote to the Page.
    citizen_wrote(platform.sandbox_url, DEV_PAGE_ID, psid)
    with platform.rpc() as rpc:
        complaint_id = rpc.intake.file_complaint({
            "text": "Air PDAM di Selong mati tiga hari.", "channel": "api",
            "reply_to": {"page_id": DEV_PAGE_ID, "psid": psid}})["complaint_id"]

    def filed_envelope():
        with platform.rpc() as rpc:
            found = [e for e in rpc.intake.events_since(0, 1000) if e["complaint_id"] == complaint_id]
        return found[0] if found else None
    envelope = wait_for(filed_envelope, 20, message="ComplaintFiled in intake's log")
    wait_for(lambda: [c for c in platform.sandbox_calls(status=200)
                      if (c.get("recipient") or {}).get("id") == psid], 30, message="first acknowledgment")

    # The broker delivers the same event again (twice), as after a consumer crash.
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    for _ in range(2):
        channel.basic_publish("intake.events", "ComplaintFiled", json.dumps(envelope),
                              pika.BasicProperties(content_type="application/json", delivery_mode=2))
    # And a poison message: valid AMQP, invalid event.
    channel.basic_publish("intake.events", "ComplaintFiled", json.dumps({"event_type": "ComplaintFiled"}),
                          pika.BasicProperties(content_type="application/json"))
    connection.close()

    def quarantined_everywhere():
        with platform.rpc() as rpc:
            return all(rpc.__getattr__(name).quarantined(10) for name in ("routing", "notification", "reporting"))
    wait_for(quarantined_everywhere, 20, message="the poison message quarantined by every consumer")
    with platform.rpc() as rpc:
        routed = [e for e in rpc.routing.events_since(0, 1000)
                  if e["complaint_id"] == complaint_id and e["event_type"] == "ComplaintRouted"]
        notified = [e for e in rpc.notification.events_since(0, 1000)
                    if e["complaint_id"] == complaint_id and e["event_type"] == "CitizenNotified"
                    and e["data"]["trigger_event_id"] == envelope["event_id"]]
        item = rpc.routing.quarantined(10)[0]
    assert len(routed) == 1 and len(notified) == 1
    acknowledgments = [c for c in platform.sandbox_calls()
                       if (c.get("recipient") or {}).get("id") == psid
                       and envelope["data"]["tracking_code"] in c["text"]
                       and "telah kami terima" in c["text"]]
    assert len(acknowledgments) == 1
    assert "envelope" in item["reason"]
