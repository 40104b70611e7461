"""A lingering outbox relay on the real broker (``shared.glue.relay``, issue 17): the events of
commits made within its linger go out in ONE round (one read, one confirm wait, one mark); a relay
that does not linger publishes each commit's events in a round of its own, as before. Nothing is
published twice or left behind either way."""
from __future__ import annotations

import time
import uuid

import pika
import pytest
from nameko.containers import ServiceContainer

from services.routing.service import build_store
from shared.core.eventstore import PendingEvent
from shared.glue.providers import Storage
from shared.glue.relay import OutboxRelay
from tests.support.lifecycle import snapshot


def resolved() -> PendingEvent:
    return PendingEvent("ComplaintResolved", str(uuid.uuid4()), {"actor": "desk", "lifecycle": snapshot("selesai")})


@pytest.mark.parametrize("linger_ms, rounds", [(600, 1), (0, 3)])
def test_commits_within_the_linger_are_published_in_one_round(amqp_uri, tmp_path, monkeypatch, linger_ms, rounds):
    monkeypatch.setenv("NTBCARE_AUTO_MIGRATE", "1")
    monkeypatch.setenv("NTBCARE_OUTBOX_POLL_SECONDS", "60")   # only the commits' wake-ups start rounds
    url = f"sqlite:///{tmp_path / 'routing.db'}"

    class Emitter:
        name = "routing"
        store = Storage(lambda: build_store(url))
        relay = OutboxRelay(linger_ms=linger_ms)

    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.exchange_declare("routing.events", exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "routing.events", routing_key="ComplaintResolved")
    container = ServiceContainer(Emitter, {"AMQP_URI": amqp_uri})
    container.start()
    try:
        relay = next(extension for extension in container.dependencies if isinstance(extension, OutboxRelay))
        database = relay.store.database
        time.sleep(0.3)   # the start-up round (nothing to publish) is over
        for _ in range(3):
            with database.transaction() as tx:
                tx.append([resolved()])
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while relay.published_count < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert relay.published_count == 3
        assert relay.rounds == rounds
        received = []
        deadline = time.monotonic() + 5
        while len(received) < 3 and time.monotonic() < deadline:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                time.sleep(0.05)
            else:
                received.append(body)
        assert len(received) == 3 and channel.queue_declare(queue, passive=True).method.message_count == 0
        with database.read() as read:
            assert relay.store.event_store.unpublished(read, 10) == []
    finally:
        container.stop()
        connection.close()
