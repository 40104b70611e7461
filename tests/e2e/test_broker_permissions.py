"""Outside systems reach the broker with their own RabbitMQ user and only the permissions they
need, as deploy/rabbitmq/definitions.json grants them (applied by shared.broker_setup to this
test's vhost): LAPOR! may call intake's filing RPC and nothing else; Dinas PUPR's system may read
routing's events and nothing else. Both shown to work, and to be refused the rest."""
from __future__ import annotations

import json
import uuid

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from examples.pika_rpc_client import PikaRpcClient
from shared import broker_setup
from tests.support import infra
from tests.support.platform import Platform, wait_for


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("perm"), services=("intake", "routing"),
                       with_sandbox=False).start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def outside_users(rabbit_vhost):
    suffix = f"-t{uuid.uuid4().hex[:6]}"
    passwords = {"lapor-sp4n": "lapor-test-pw", "dinas-pupr-si": "pupr-test-pw"}
    definitions = broker_setup.load()
    # Only the outside systems' users are applied here; the services keep the test's own user.
    definitions["users"] = [u for u in definitions["users"] if u["name"] in passwords]
    definitions["permissions"] = [p for p in definitions["permissions"] if p["user"] in passwords]
    names = broker_setup.apply(infra.RABBIT_MANAGEMENT, infra.RABBIT_AUTH, definitions, vhost=rabbit_vhost,
                               user_suffix=suffix, passwords=passwords)
    uris = {user: f"amqp://{names[user]}:{pw}@127.0.0.1:5672/{rabbit_vhost}" for user, pw in passwords.items()}
    yield uris
    broker_setup.remove_users(infra.RABBIT_MANAGEMENT, infra.RABBIT_AUTH, list(names.values()))


def refused(action) -> bool:
    try:
        action()
    except ChannelClosedByBroker as error:
        return error.reply_code == 403
    return False


def test_lapor_files_a_complaint_through_intake_rpc(platform, outside_users):
    client = PikaRpcClient(outside_users["lapor-sp4n"], queue_prefix="lapor-sp4n")
    result = client.call("intake", "file_complaint", {"text": "Pungutan liar di kantor desa Sape.", "channel": "api"})
    assert set(result) == {"complaint_id", "tracking_code"}
    complaint = client.call("intake", "get_complaint", result["complaint_id"])
    assert complaint["tracking_code"] == result["tracking_code"]
    client.close()


def test_lapor_is_refused_everything_else(platform, outside_users):
    uri = outside_users["lapor-sp4n"]
    client = PikaRpcClient(uri, queue_prefix="lapor-sp4n")
    # Calling another RPC (routing's desk actions, intake's reporter contact) is refused by the broker.
    assert refused(lambda: client.call("routing", "assign", "x", ["dpupr"], "n", "lapor"))
    client = PikaRpcClient(uri, queue_prefix="lapor-sp4n")
    assert refused(lambda: client.call("intake", "reporter_contact", "x", "lapor", "curious"))
    # Reading any service's events is refused.
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    channel.queue_declare("lapor-sp4n.events", exclusive=True)
    assert refused(lambda: channel.queue_bind("lapor-sp4n.events", "intake.events", routing_key="#"))
    # Queues outside its own prefix, and deleting shared exchanges, are refused.
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    assert refused(lambda: channel.queue_declare("rpc-intake-snoop"))
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    assert refused(lambda: channel.exchange_delete("nameko-rpc"))


def test_dinas_pupr_reads_routing_events_and_nothing_else(platform, outside_users):
    uri = outside_users["dinas-pupr-si"]
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    channel = connection.channel()
    channel.queue_declare("dinas-pupr-si.routed", exclusive=True)
    channel.queue_bind("dinas-pupr-si.routed", "routing.events", routing_key="ComplaintRouted")
    with platform.rpc() as rpc:
        filed = rpc.intake.file_complaint({"text": "Jalan provinsi di Praya Lombok Tengah berlubang besar.",
                                           "channel": "api"})

    def routed():
        method, _props, body = channel.basic_get("dinas-pupr-si.routed", auto_ack=True)
        event = json.loads(body) if method else None
        return event if event and event["complaint_id"] == filed["complaint_id"] else None
    event = wait_for(routed, 30, message="ComplaintRouted for the outside system")
    assert event["event_type"] == "ComplaintRouted" and event["source"] == "routing"
    assert refused(lambda: channel.queue_bind("dinas-pupr-si.routed", "intake.events", routing_key="#"))
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    channel.confirm_delivery()
    assert refused(lambda: channel.basic_publish("nameko-rpc", "routing.assign", b"{}"))
    channel = pika.BlockingConnection(pika.URLParameters(uri)).channel()
    assert refused(lambda: channel.basic_get("rpc-intake"))
