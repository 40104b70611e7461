"""Notification with its database on PostgreSQL (as in production), on the real broker with
intake, routing and the Graph API sandbox: messages in order, a retried temporary failure, and a
redelivered event sending nothing twice."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pika
import pytest
import requests
from sqlalchemy import create_engine, text

from sandbox.control import citizen_wrote
from tests.support import facebook, infra
from tests.support.platform import DEV_PAGE_ID, Platform, wait_for


@pytest.fixture(scope="module")
def database_url():
    url = infra.create_postgres_database()
    yield url
    infra.drop_postgres_database(url)


@pytest.fixture(scope="module")
def platform(amqp_uri, database_url, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("notification-pg"),
                       services=("intake", "routing", "notification"), extra_env={
                           "NOTIFICATION_DATABASE_URL": database_url,
                           "NOTIFICATION_RETRY_BASE_SECONDS": "0.3",
                       }).start_all()
    yield running
    running.stop_all()


def test_messages_retries_and_duplicates_on_postgresql(platform, database_url, amqp_uri):
    psid = facebook.new_psid()
    last = datetime.now(timezone.utc) - timedelta(minutes=3)
    # The sandbox, like Meta, answers only people who wrote to the Page.
    citizen_wrote(platform.sandbox_url, DEV_PAGE_ID, psid, last)
    requests.post(f"{platform.sandbox_url}/_sandbox/faults", json={"page_id": DEV_PAGE_ID, "code": 1200, "times": 1},
                  timeout=5).raise_for_status()
    with platform.rpc() as rpc:
        filed = rpc.intake.file_complaint({
            "text": "Jalan provinsi di Sembalun berlubang besar dan membahayakan pengendara.",
            "channel": "api", "reply_to": {"page_id": DEV_PAGE_ID, "psid": psid},
            "last_citizen_message_at": last.isoformat().replace("+00:00", "Z")})
    complaint_id, code = filed["complaint_id"], filed["tracking_code"]

    def to_citizen(ok_only=True):
        return [c for c in platform.sandbox_calls(**({"status": 200} if ok_only else {}))
                if (c.get("recipient") or {}).get("id") == psid]
    ack = wait_for(lambda: to_citizen(), 30, message="acknowledgment after one temporary failure")[0]
    assert code in ack["text"] and ack["messaging_type"] == "RESPONSE"
    assert to_citizen(ok_only=False)[0]["status"] != 200  # the first try met the fault

    with platform.rpc() as rpc:
        events = [e for e in rpc.intake.events_since(0, 1000) if e["complaint_id"] == complaint_id]
    time.sleep(1.5)  # whatever routing's rules sent follows the acknowledgment
    before = len(to_citizen(ok_only=False))
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    for _ in range(3):
        channel.basic_publish("intake.events", "ComplaintFiled", json.dumps(events[0]),
                              pika.BasicProperties(content_type="application/json", delivery_mode=2))
    connection.close()
    time.sleep(2.5)
    assert len(to_citizen(ok_only=False)) == before

    engine = create_engine(database_url)
    with engine.connect() as db:
        sent = db.execute(text("SELECT count(*) FROM outgoing_messages WHERE state = 'sent'")).scalar()
        pending = db.execute(text("SELECT count(*) FROM outgoing_messages WHERE state = 'pending'")).scalar()
        attempts = db.execute(text("SELECT attempts FROM outgoing_messages WHERE kind = 'acknowledgment'")).scalar()
    engine.dispose()
    assert pending == 0 and sent == len(to_citizen()) and attempts == 2
