"""Least privilege on the broker, shown with the real services: intake, routing and the gateway
each run (their own process, ``python -m shared.runner``) under the broker user
deploy/rabbitmq/definitions.json gives them, on this module's vhost, and still work end to end —
an outside system (``lapor-sp4n``) files a complaint through the gateway, intake publishes it,
routing consumes it (push and its catch-up RPC) and routes it. Then each user is refused what it
does not need: publishing to another service's events exchange, forwarding its own events
exchange or ``nameko-rpc`` elsewhere (exchange-to-exchange), binding a queue to ``nameko-rpc``
with ``#``, calling RPCs it does not call; and the gateway refuses calls without a proven
identity, ungranted operations, other systems' identities and the bind bypass."""
from __future__ import annotations

import json
import time
import uuid

import pika
import pytest
import yaml
from pika.exceptions import ChannelClosedByBroker

from examples.pika_rpc_client import PikaRpcClient, RemoteError
from tests.security import broker_users
from tests.support.platform import Platform, wait_for

SERVICE_USERS = {"intake": "ntbcare-intake", "routing": "ntbcare-routing", "gateway": "ntbcare-gateway"}


@pytest.fixture(scope="module")
def users(rabbit_vhost):
    with broker_users.applied(rabbit_vhost, [*SERVICE_USERS.values(), "lapor-sp4n", "dinas-pupr-si"]) as applied:
        yield applied


@pytest.fixture(scope="module")
def platform(amqp_uri, users, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("least-privilege")
    grants = data_dir / "grants.yaml"
    grants.write_text(yaml.safe_dump({"systems": {
        users.names["lapor-sp4n"]: {"operations": ["intake.file_complaint", "intake.get_complaint"]},
        users.names["dinas-pupr-si"]: {"operations": [], "agencies": ["dpupr"]}}}))
    running = Platform(amqp_uri, data_dir, services=tuple(SERVICE_USERS), with_sandbox=False,
                       extra_env={"GATEWAY_GRANTS_FILE": str(grants)},
                       service_amqp_uris={service: users.uri(user) for service, user in SERVICE_USERS.items()})
    running.start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def spy(amqp_uri, platform):
    """The test's administrator copy of every call to intake's RPC queue (to see what the gateway sent)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.queue_declare("spy-intake-calls", exclusive=True)
    channel.queue_bind("spy-intake-calls", "nameko-rpc", routing_key="intake.*")
    yield channel
    connection.close()


def spied(channel) -> list[tuple[str, dict]]:
    """The calls copied so far, but routing's own catch-up (``intake.events_since``, every few
    seconds and whenever it likes): those are the platform's, not the outside caller's."""
    found = []
    while True:
        method, properties, _body = channel.basic_get("spy-intake-calls", auto_ack=True)
        if method is None:
            return found
        if method.routing_key != "intake.events_since":
            found.append((method.routing_key, properties.headers or {}))


def channel_of(uri: str):
    return pika.BlockingConnection(pika.URLParameters(uri)).channel()


def refused(action, code: int = 403) -> bool:
    try:
        action()
    except ChannelClosedByBroker as error:
        return error.reply_code == code
    return False


def raw_call(channel, reply_key: str, operation: str, body: dict, **properties) -> dict:
    """Publish one call to the gateway and wait for its reply on ``reply_key``'s queue."""
    correlation_id = str(uuid.uuid4())
    channel.basic_publish("ntbcare.gateway", operation, json.dumps(body),
                          pika.BasicProperties(reply_to=reply_key, correlation_id=correlation_id,
                                               content_type="application/json", **properties))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        method, props, payload = channel.basic_get(reply_key, auto_ack=True)
        if method is not None and props.correlation_id == correlation_id:
            return json.loads(payload)
        channel.connection.sleep(0.05)
    raise TimeoutError(f"no reply to {operation}")


def reply_queue(channel, user: str) -> str:
    key = f"{user}.replies-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(key, exclusive=True)
    channel.queue_bind(key, "ntbcare.replies", routing_key=key)
    return key


# -- it works under least privilege -------------------------------------------------------------
def test_outside_system_files_through_the_gateway_and_the_services_route_it(platform, users, spy):
    spied(spy)
    client = PikaRpcClient(users.uri("lapor-sp4n"))
    filed = client.call("intake", "file_complaint",
                        {"text": "Jalan provinsi di Praya Lombok Tengah berlubang besar.", "channel": "api"})
    assert set(filed) >= {"complaint_id", "tracking_code"}
    assert client.call("intake", "get_complaint", filed["complaint_id"])["tracking_code"] == filed["tracking_code"]
    client.close()
    # intake published ComplaintFiled under its user; routing consumed it under its own and routed it.
    with platform.rpc() as rpc:
        wait_for(lambda: any(e["event_type"] == "ComplaintRouted" and e["complaint_id"] == filed["complaint_id"]
                             for e in rpc.routing.events_since(0, 1000)), 30, message="ComplaintRouted")
    # The gateway made the internal call with the caller's proven identity as nameko context data.
    calls = spied(spy)
    assert ("intake.file_complaint", calls[0][1]) == calls[0] and \
        calls[0][1].get("nameko.caller_system") == users.names["lapor-sp4n"]
    assert all(headers.get("nameko.caller_system") == users.names["lapor-sp4n"] for _key, headers in calls)


def test_routing_catch_up_pulls_intake_over_rpc_under_its_user(platform):
    """Routing's consumer pulls ``intake.events_since`` (the catch-up) under ``ntbcare-routing``."""
    log = platform.log("routing")
    assert "ACCESS_REFUSED" not in log
    # Routing may start before intake's RPC queue exists (UnknownService, retried on the next
    # round); any other failure of the pull would be a permission the user lacks.
    failures = [line for line in log.splitlines() if "catch-up from intake failed" in line]
    assert all("UnknownService" in line for line in failures), failures
    assert "ACCESS_REFUSED" not in platform.log("intake") + platform.log("gateway")


# -- the gateway refuses ------------------------------------------------------------------------
def test_the_gateway_refuses_ungranted_operations(platform, users, spy):
    spied(spy)
    client = PikaRpcClient(users.uri("lapor-sp4n"))
    for service, method, args in (("intake", "reporter_contact", ("x", "lapor", "curious")),
                                  ("routing", "issue_token", ("dpupr",)),
                                  ("intake", "events_since", (0, 1000))):
        with pytest.raises(RemoteError) as refusal:
            client.call(service, method, *args)
        assert refusal.value.error["exc_type"] == "Forbidden"
    client.close()
    # Nothing the gateway forwards (every forwarded call carries the caller's identity) reached
    # intake's queue. The services' own catch-up reads of intake's log run every 2 s here and may
    # fall in the window: they are not the gateway's.
    assert [(key, headers) for key, headers in spied(spy)
            if not (key in ("intake.events_since", "intake.event_ids_since")
                    and "nameko.caller_system" not in headers)] == []


def test_the_gateway_refuses_a_call_without_user_id_and_ignores_forged_context(platform, users, spy):
    user = users.names["lapor-sp4n"]
    channel = channel_of(users.uri("lapor-sp4n"))
    key = reply_queue(channel, user)
    spied(spy)
    reply = raw_call(channel, key, "intake.file_complaint", {"args": [{"text": "x", "channel": "api"}]})
    assert reply["result"] is None and reply["error"]["exc_type"] == "Forbidden"
    assert "user_id" in reply["error"]["value"]
    # A nameko context header of its own choosing is not passed on: the proven user_id is.
    reply = raw_call(channel, key, "intake.get_complaint", {"args": [str(uuid.uuid4())]}, user_id=user,
                     headers={"nameko.caller_system": "ntbcare-routing"})
    assert reply["error"]["exc_type"] == "NotFound"
    assert [headers.get("nameko.caller_system") for _key, headers in spied(spy)] == [user]
    # Malformed bodies are refused with a reason, and do not stop the gateway.
    reply = raw_call(channel, key, "intake.get_complaint", {"argz": 1}, user_id=user)
    assert reply["error"]["exc_type"] == "ValidationFailed"
    channel.basic_publish("ntbcare.gateway", "intake.get_complaint", b"\xff not json",
                          pika.BasicProperties(user_id=user, reply_to=key, content_type="application/json"))
    assert raw_call(channel, key, "intake.get_complaint", {"args": [str(uuid.uuid4())]},
                    user_id=user)["error"]["exc_type"] == "NotFound"


def test_another_systems_identity_is_refused_by_the_broker(platform, users):
    channel = channel_of(users.uri("lapor-sp4n"))
    channel.confirm_delivery()
    assert refused(lambda: channel.basic_publish(
        "ntbcare.gateway", "intake.file_complaint", b'{"args": []}',
        pika.BasicProperties(user_id=users.names["dinas-pupr-si"])), code=406)
    # dinas-pupr-si, granted no operation, may not even publish to the gateway's exchange.
    channel = channel_of(users.uri("dinas-pupr-si"))
    channel.confirm_delivery()
    assert refused(lambda: channel.basic_publish("ntbcare.gateway", "intake.file_complaint", b"{}",
                                                 pika.BasicProperties(user_id=users.names["dinas-pupr-si"])))


def test_the_bind_bypass_against_the_gateway_gains_nothing(platform, users, spy):
    user = users.names["lapor-sp4n"]
    channel = channel_of(users.uri("lapor-sp4n"))
    key = reply_queue(channel, user)
    channel.exchange_declare(f"{user}.fwd", "topic", auto_delete=True)
    channel.exchange_bind(destination="ntbcare.gateway", source=f"{user}.fwd", routing_key="#")
    spied(spy)

    def via_own_exchange(operation, **properties):
        correlation_id = str(uuid.uuid4())
        channel.basic_publish(f"{user}.fwd", operation, json.dumps({"args": ["x", "lapor", "why"]}),
                              pika.BasicProperties(reply_to=key, correlation_id=correlation_id, **properties))
        return raw_call(channel, key, "intake.get_complaint", {"args": [str(uuid.uuid4())]}, user_id=user)

    via_own_exchange("intake.reporter_contact")                 # no identity: refused
    via_own_exchange("intake.reporter_contact", user_id=user)   # its own identity: its own grants
    assert [k for k, _headers in spied(spy)] == ["intake.get_complaint", "intake.get_complaint"]
    # …and it may not read the gateway's exchange (to copy other systems' calls), nor others' replies.
    snoop = f"{user}.snoop"
    channel.queue_declare(snoop, exclusive=True)
    assert refused(lambda: channel.queue_bind(snoop, "ntbcare.gateway", routing_key="#"))
    channel = channel_of(users.uri("lapor-sp4n"))
    channel.queue_declare(snoop + "2", exclusive=True)
    assert refused(lambda: channel.queue_bind(snoop + "2", "ntbcare.replies", routing_key="#"))


def test_the_gateway_user_may_call_only_the_granted_operations(platform, users):
    """A bug in the gateway cannot widen a grant: its broker user itself may publish on
    ``nameko-rpc`` only the union of the grants (and reply keys), and cannot forward its exchange."""
    uri = users.uri("ntbcare-gateway")
    channel = channel_of(uri)
    channel.confirm_delivery()
    assert refused(lambda: channel.basic_publish("nameko-rpc", "intake.reporter_contact", b"{}"))
    channel = channel_of(uri)
    assert refused(lambda: channel.exchange_bind(destination="nameko-rpc", source="ntbcare.gateway", routing_key="#"))
    channel = channel_of(uri)
    assert refused(lambda: channel.exchange_declare("gateway.fwd", "topic"))


# -- each service may do only its own part ---------------------------------------------------------
@pytest.mark.parametrize("service", ["intake", "routing"])
def test_a_service_user_is_refused_everything_it_does_not_need(platform, users, service):
    uri = users.uri(SERVICE_USERS[service])
    other = "routing" if service == "intake" else "intake"
    attempts = {
        "publish to another service's events exchange":
            lambda ch: (ch.confirm_delivery(), ch.basic_publish(f"{other}.events", "ComplaintFiled", b"{}")),
        "forward its own events exchange (exchange-to-exchange)":
            lambda ch: ch.exchange_bind(destination="nameko-rpc", source=f"{service}.events", routing_key="#"),
        "forward nameko-rpc into its events exchange with #":
            lambda ch: ch.exchange_bind(destination=f"{service}.events", source="nameko-rpc", routing_key="#"),
        "declare an exchange of its own":
            lambda ch: ch.exchange_declare(f"{service}.fwd", "topic"),
        "bind its RPC queue to nameko-rpc with #":
            lambda ch: ch.queue_bind(f"rpc-{service}", "nameko-rpc", routing_key="#"),
        "read another service's RPC queue":
            lambda ch: ch.basic_get(f"rpc-{other}"),
        "call an RPC it never calls":
            lambda ch: (ch.confirm_delivery(), ch.basic_publish("nameko-rpc", "routing.issue_token", b"{}")),
        "publish to the gateway's replies":
            lambda ch: (ch.confirm_delivery(), ch.basic_publish("ntbcare.replies", "lapor-sp4n.x", b"{}")),
    }
    allowed = [what for what, attempt in attempts.items() if not refused(lambda: attempt(channel_of(uri)))]
    assert allowed == []
