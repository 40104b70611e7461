"""Publishes the gateway's feed log (adapters/feed_log.py) to each outside reader's exchange
``feed.<reader>``, routing key = the routing event type: the services' outbox relay
(``shared.glue.relay``: publisher confirms, an item leaves the outbox only once the broker took it,
retries after an outage) pointed at the feed log instead of an event store.

In production ``shared.broker_setup`` declares each reader's exchange and its durable queue
``<reader>.feed`` (the gateway's broker user may publish to them, not declare them), so items wait
for a reader that is away. A development broker where they are missing gets them from the gateway."""
from __future__ import annotations

import logging

from amqp.exceptions import NotFound
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError

from shared.glue import broker, queues
from shared.glue.relay import OutboxRelay
from services.gateway.adapters.feed_log import FeedLog
from services.gateway.adapters.grant_file import load_grants

log = logging.getLogger("gateway")


def feed_exchange(reader: str) -> str:
    return f"feed.{reader}"


def feed_queue(reader: str) -> str:
    return f"{reader}.feed"


def ensure_feed_topology(amqp_uri: str, readers: list[str]) -> None:
    """Declare what ``shared.broker_setup`` declares in production, where it is missing."""
    with broker.connect(amqp_uri) as connection:
        for reader in readers:
            try:
                connection.channel().exchange_declare(feed_exchange(reader), "topic", passive=True)
                continue
            except (NotFound, OperationalError):
                pass
            channel = connection.channel()
            exchange = Exchange(feed_exchange(reader), type="topic", durable=True)
            Queue(feed_queue(reader), exchange, routing_key="#", durable=True,
                  queue_arguments=queues.arguments())(channel).declare()  # quorum unless opted out
            log.warning("declared %s and %s (run shared.broker_setup to do that in production)",
                        feed_exchange(reader), feed_queue(reader))


class FeedRelay(OutboxRelay):
    """The outbox relay of the feed log: ``feed.<reader>``, keyed by the routing event type."""

    def setup(self):
        super().setup()
        # No events exchange of its own: kombu's producer declares the exchange it is given unless
        # it is the nameless default, and the gateway's broker user may declare nothing.
        self.exchange = Exchange("")
        self.feed_log = FeedLog()
        ensure_feed_topology(self.container.config["AMQP_URI"], list(load_grants().readers()))

    def outbox(self):
        return self.feed_log

    def destination(self, envelope: dict) -> tuple[str, str, dict]:
        return feed_exchange(envelope["reader"]), envelope["event_type"], envelope["body"]

    def declare(self, channel) -> None:
        pass  # the readers' exchanges are there (ensure_feed_topology, shared.broker_setup)
