"""Outside systems reach the broker with their own RabbitMQ user and only the permissions they
need, as deploy/rabbitmq/definitions.json grants them (applied by shared.broker_setup to this
test's vhost): LAPOR! may only call through the gateway (no permission on ``nameko-rpc``);
Dinas PUPR's system may read routing's events and nothing else. Shown to work, and to be refused
the rest."""
from __future__ import annotations

import json

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.security import broker_users
from tests.support.platform import Platform, wait_for


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


def test_dinas_pupr_reads_routing_events_and_nothing_else(platform, outside_users):
    uri = outside_users["dinas-pupr-si"]
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    channel = connection.channel()
    queue = f"{outside_users['names']['dinas-pupr-si']}.routed"
    channel.queue_declare(queue, exclusive=True)
    channel.queue_bind(queue, "routing.events", routing_key="ComplaintRouted")
    with platform.rpc() as rpc:
        filed = rpc.intake.file_complaint({"text": "Jalan provinsi di Praya Lombok Tengah berlubang besar.",
                                           "channel": "api"})

    def routed():
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        event = json.loads(body) if method else None
        return event if event and event["complaint_id"] == filed["complaint_id"] else None
    event = wait_for(routed, 30, message="ComplaintRouted for the outside system")
    assert event["event_type"] == "ComplaintRouted" and event["source"] == "routing"
    assert refused(lambda: channel.queue_bind(queue, "intake.events", routing_key="#"))
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    channel.confirm_delivery()
    assert refused(lambda: channel.basic_publish("nameko-rpc", "routing.assign", b"{}"))
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    assert refused(lambda: channel.basic_get("rpc-intake"))
