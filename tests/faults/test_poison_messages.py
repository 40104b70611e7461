"""Fault 5: poison messages — valid AMQP, invalid events — published straight onto every
consumer queue of the test's vhost (listed through the management API) mid-stream: JSON that is
no envelope, an envelope whose data breaks its schema and that claims a position the source has
not reached yet, a body that is not JSON at all, and one in a content type nobody accepts. Each
consumer quarantines what it can read, drops what it cannot decode, keeps running, and handles
the real events — including the one whose position a poison message claimed. On SQLite and on
PostgreSQL."""
from __future__ import annotations

import json
import uuid

import pika
import pytest

from tests.faults.scenario import STORES, named, run_scenario
from tests.support import infra
from tests.support.audit import read_log

pytestmark = pytest.mark.parametrize("store", STORES, indirect=True, scope="module")


def consumer_queues(vhost: str) -> list[dict]:
    """nameko's event queues: ``evt-<source>-<EventType>--<service>.<method>``."""
    found = []
    for queue in infra.queues(vhost):
        name = queue["name"]
        if name.startswith("evt-") and "--" in name:
            source_and_type, handler = name[len("evt-"):].split("--", 1)
            source, event_type = source_and_type.split("-", 1)
            found.append({"queue": name, "source": source, "event_type": event_type,
                          "service": handler.split(".", 1)[0]})
    return found


def poisons(source: str, event_type: str, future_position: int) -> list[tuple[bytes, str]]:
    not_an_envelope = json.dumps({"hello": "poison", "event_type": event_type}).encode()
    bad_data = json.dumps({
        "event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": 1, "source": source,
        "position": future_position, "complaint_id": str(uuid.uuid4()), "version": 1,
        "occurred_at": "2024-01-01T00:00:00Z", "data": {"nonsense": True}}).encode()
    return [(not_an_envelope, "application/json"), (bad_data, "application/json"),
            (b"\x00\xffnot json{", "application/json"), (b"\x80\x04K\x01.", "application/x-python-serialize")]


def test_poison_message_on_every_consumer_queue(platform, rabbit_vhost, store):
    published: dict[str, int] = {}
    queues = consumer_queues(rabbit_vhost)
    assert len({q["service"] for q in queues}) == 4  # intake, routing, notification, reporting

    def inject():
        heads = {source: (read_log(platform, source)[-1:] or [{"position": 0}])[0]["position"]
                 for source in {q["source"] for q in queues}}
        connection = pika.BlockingConnection(pika.URLParameters(platform.amqp_uri))
        channel = connection.channel()
        for queue in queues:
            # A position a few events ahead: the real event there must still be handled.
            for body, content_type in poisons(queue["source"], queue["event_type"], heads[queue["source"]] + 5):
                channel.basic_publish("", queue["queue"], body,
                                      pika.BasicProperties(content_type=content_type, delivery_mode=2))
                published[queue["service"]] = published.get(queue["service"], 0) + 1
        connection.close()

    readable = 2  # of the four poisons per queue, two are JSON a consumer can read and quarantine
    figures = run_scenario(named("5 poison messages", store), platform, rabbit_vhost, inject,
                           seconds=10 if store == "sqlite" else 8, fault_at=3,
                           allowed_quarantine=_allowance(queues, readable))
    assert figures["quarantined"] == _allowance(queues, readable), figures["quarantined"]
    for service in platform.services:
        assert platform.processes[service].poll() is None, f"{service} died of a poison message"
    figures["poison_published"] = published
    print("poison published per service:", published)


def _allowance(queues: list[dict], readable: int) -> dict[str, int]:
    allowance: dict[str, int] = {}
    for queue in queues:
        allowance[queue["service"]] = allowance.get(queue["service"], 0) + readable
    return allowance
