"""Outside systems reach the broker with their own RabbitMQ user and only the permissions they
need, as deploy/rabbitmq/definitions.json grants them (applied by shared.broker_setup to this
test's vhost): LAPOR! may only call through the gateway (no permission on ``nameko-rpc``);
Dinas PUPR's system may read its own feed (``feed.dinas-pupr-si`` → its durable queue
``dinas-pupr-si.feed``, filled by the gateway: tests/security/test_broker_feeds.py) and nothing
else — not routing's events. Shown to work, and to be refused the rest."""
from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.security import broker_users
from tests.support.platform import Platform


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("perm"), services=("intake", "routing"),
                       with_sandbox=False).start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def outside_users(rabbit_vhost):
    # Only the outside systems' users are applied here; the services keep the test's own user
    # (tests/security/test_broker_least_privilege.py runs them under their own).
    with broker_users.applied(rabbit_vhost, ["lapor-sp4n", "dinas-pupr-si"]) as applied:
        yield {user: applied.uri(user) for user in ("lapor-sp4n", "dinas-pupr-si")} | {"names": applied.names}


def refused(action) -> bool:
    try:
        action()
    except ChannelClosedByBroker as error:
        return error.reply_code == 403
    return False


def test_lapor_is_refused_everything_but_the_gateway(platform, outside_users):
    """LAPOR! calls through the gateway (tests/security/test_broker_least_privilege.py shows the
    calls); on the broker itself it may not touch ``nameko-rpc`` or any service's events."""
    uri, prefix = outside_users["lapor-sp4n"], outside_users["names"]["lapor-sp4n"]
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    channel.confirm_delivery()
    # The old direct route to intake's RPC is closed, even for the operations it is granted.
    assert refused(lambda: channel.basic_publish("nameko-rpc", "intake.file_complaint", b"{}"))
    # Reading any service's events is refused.
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    channel.queue_declare(f"{prefix}.events", exclusive=True)
    assert refused(lambda: channel.queue_bind(f"{prefix}.events", "intake.events", routing_key="#"))
    # Queues outside its own prefix, and deleting shared exchanges, are refused.
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    assert refused(lambda: channel.queue_declare("rpc-intake-snoop"))
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    assert refused(lambda: channel.exchange_delete("nameko-rpc"))


def test_dinas_pupr_reads_its_feed_and_nothing_else(platform, outside_users):
    uri, name = outside_users["dinas-pupr-si"], outside_users["names"]["dinas-pupr-si"]
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    # Its durable feed queue (declared by broker_setup) is there for it to consume, and it may bind
    # queues of its own to its feed exchange (e.g. one per event type).
    assert channel.queue_declare(f"{name}.feed", passive=True).method.queue == f"{name}.feed"
    channel.basic_get(f"{name}.feed", auto_ack=False)
    queue = f"{name}.routed"
    channel.queue_declare(queue, exclusive=True)
    channel.queue_bind(queue, f"feed.{name}", routing_key="ComplaintRouted")
    # Routing's and intake's events, another system's feed, RPC and other queues are refused.
    for exchange in ("routing.events", "intake.events", "feed.lapor-sp4n"):
        channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
        snoop = f"{name}.snoop-{exchange}"
        channel.queue_declare(snoop, exclusive=True)
        assert refused(lambda: channel.queue_bind(snoop, exchange, routing_key="#")), exchange
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    channel.confirm_delivery()
    assert refused(lambda: channel.basic_publish("nameko-rpc", "routing.assign", b"{}"))
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    channel.confirm_delivery()
    assert refused(lambda: channel.basic_publish(f"feed.{name}", "ComplaintRouted", b"{}"))  # no forged items
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    assert refused(lambda: channel.basic_get("rpc-intake"))
