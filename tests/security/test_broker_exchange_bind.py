"""Issue 16's Critical finding, tried as the attacker would: an outside system with the broker
permissions of deploy/rabbitmq/definitions.json declares an exchange of its own, binds
``nameko-rpc`` to it (exchange-to-exchange, key ``#``) and publishes RPC calls it was never
granted there — RabbitMQ checks topic permissions only on a publish *to* ``nameko-rpc``. With
the definitions as they were, ``routing.issue_token`` and ``intake.reporter_contact`` reached the
services' RPC queues. Now outside systems have no permission on ``nameko-rpc`` at all: the bind is
refused and nothing arrives. No service runs: the RPC queues are declared as nameko declares them."""
from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.security import broker_users


@pytest.fixture(scope="module")
def users(rabbit_vhost):
    with broker_users.applied(rabbit_vhost, ["lapor-sp4n", "dinas-pupr-si"]) as applied:
        yield applied


@pytest.fixture(scope="module")
def rpc_queues(amqp_uri):
    """``rpc-routing`` and ``rpc-intake`` bound to ``nameko-rpc`` exactly as nameko binds them."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.exchange_declare("nameko-rpc", "topic", durable=True)
    for service in ("routing", "intake"):
        channel.queue_declare(f"rpc-{service}", durable=True)
        channel.queue_bind(f"rpc-{service}", "nameko-rpc", routing_key=f"{service}.*")
    yield channel
    connection.close()


def forward_through_own_exchange(uri: str, prefix: str) -> str:
    """The attack; returns how far it got: 'bind refused', 'publish refused' or 'published'."""
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    channel = connection.channel()
    own = f"{prefix}.fwd"
    try:
        channel.exchange_declare(own, "topic", auto_delete=True)
        try:
            channel.exchange_bind(destination="nameko-rpc", source=own, routing_key="#")
        except ChannelClosedByBroker as error:
            assert error.reply_code == 403
            return "bind refused"
        channel.confirm_delivery()
        try:
            for key in ("routing.issue_token", "intake.reporter_contact"):
                channel.basic_publish(own, key, b'{"args": ["dpupr"], "kwargs": {}}',
                                      pika.BasicProperties(reply_to=f"{prefix}.x", correlation_id="1"))
        except ChannelClosedByBroker as error:
            assert error.reply_code == 403
            return "publish refused"
        return "published"
    finally:
        if connection.is_open:
            connection.close()


def arrived(channel, queue: str) -> list[str]:
    found = []
    while True:
        method, _properties, _body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return found
        found.append(method.routing_key)


@pytest.mark.parametrize("user", ["lapor-sp4n", "dinas-pupr-si"])
def test_an_outside_system_cannot_forward_rpc_calls_through_its_own_exchange(users, rpc_queues, user):
    outcome = forward_through_own_exchange(users.uri(user), users.names[user])
    reached = arrived(rpc_queues, "rpc-routing") + arrived(rpc_queues, "rpc-intake")
    assert reached == [], f"{user} reached the RPC queues with {reached} ({outcome})"
    assert outcome == "bind refused"


def test_an_outside_system_cannot_bind_its_queue_to_nameko_rpc(users, rpc_queues):
    """…nor read others' calls and replies by binding a queue of its own to ``nameko-rpc``."""
    channel = pika.BlockingConnection(pika.URLParameters(users.uri("lapor-sp4n"))).channel()
    queue = f"{users.names['lapor-sp4n']}.snoop"
    channel.queue_declare(queue, exclusive=True)
    with pytest.raises(ChannelClosedByBroker) as refused:
        channel.queue_bind(queue, "nameko-rpc", routing_key="#")
    assert refused.value.reply_code == 403
