"""The broker permissions and the gateway's grants agree with the code, so a change on one side
cannot silently widen (or break) the other: the gateway's own broker user may publish on
``nameko-rpc`` exactly the union of the grants (and its feeds' catch-up); every service's user covers
the queues nameko makes for its subscriptions and the catch-up RPCs it calls, and nothing of the
gateway's; each outside reader of the grant file reads its own feed and no events exchange. No servers."""
from __future__ import annotations

import importlib
import re
import uuid

import pytest

from services.gateway.adapters.grant_file import SHIPPED, load_grants
from services.gateway.domain.grants import Grants, IncomingCall, arguments, parse_grants, reply_allowed
from shared import broker_setup
from shared.core.errors import Forbidden, ValidationFailed
from shared.glue.subscriptions import handler_name
from shared.catalogue_docs import SERVICE_CLASSES  # (shared.runner would monkey-patch this process)

DEFINITIONS = broker_setup.load()


def permission(user: str) -> dict:
    return next(p for p in DEFINITIONS["permissions"] if p["user"] == user)


def rpc_topic(user: str) -> dict:
    return next(p for p in DEFINITIONS["topic_permissions"] if p["user"] == user and p["exchange"] == "nameko-rpc")


#: What the gateway calls itself: its feeds' catch-up pulls routing's log.
GATEWAY_OWN_CALLS = frozenset({"routing.events_since"})


def test_the_gateway_user_may_publish_exactly_the_granted_operations():
    grants = load_grants(SHIPPED)
    allowed = re.compile(rpc_topic("ntbcare-gateway")["write"])
    assert all(allowed.match(operation) for operation in grants.all_operations() | GATEWAY_OWN_CALLS)
    for operation in ("intake.reporter_contact", "routing.issue_token", "intake.events_since",
                      "routing.assign", "intake.file_complaintX", "intake.*", "routing.events_sinceX"):
        assert operation in grants.all_operations() or not allowed.match(operation), operation
    assert not re.match(permission("ntbcare-gateway")["read"], "ntbcare.gateway")  # cannot forward it


def test_the_gateway_user_covers_its_feed_consumer_and_publishes_only_to_feeds():
    from services.gateway.application.feeds import FeedHandlers
    rights = permission("ntbcare-gateway")
    queues = [f"rpc.reply-standalone_rpc_proxy-{uuid.uuid4()}"]  # catch-up's ClusterRpcProxy
    for source, event_types in FeedHandlers.subscriptions().items():
        assert source == "routing"
        queues += [f"evt-{source}-{t}--gateway.{handler_name(t)}" for t in event_types]
        assert re.match(rights["read"], f"{source}.events") and re.match(rights["configure"], f"{source}.events")
    for queue in queues:
        for kind in ("configure", "write", "read"):
            assert re.match(rights[kind], queue), (kind, queue)
    for reader in load_grants(SHIPPED).readers():
        assert re.match(rights["write"], f"feed.{reader}")
        assert not re.match(rights["configure"], f"feed.{reader}")  # broker_setup declares them
    for exchange in ("intake.events", "routing.events", "notification.events", "gateway.events"):
        assert not re.match(rights["write"], exchange)


def test_each_outside_reader_reads_its_own_feed_and_no_internal_events():
    """Every reader of the grant file has its exchange, durable queue and binding in the
    definitions (declared by broker_setup), read on them, and no read on others' feeds or on any
    service's events exchange (issue 16: dinas-pupr-si read all of routing.events)."""
    readers = load_grants(SHIPPED).readers()
    assert readers == {"dinas-pupr-si": frozenset({"dpupr"})}
    exchanges = {e["name"] for e in DEFINITIONS["exchanges"]}
    queues = {q["name"] for q in DEFINITIONS["queues"] if q.get("durable", True)}
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in DEFINITIONS["bindings"]}
    for reader in readers:
        rights = permission(reader)
        assert f"feed.{reader}" in exchanges and f"{reader}.feed" in queues
        assert (f"feed.{reader}", f"{reader}.feed", "#") in bindings
        assert re.match(rights["read"], f"feed.{reader}") and re.match(rights["read"], f"{reader}.feed")
        assert not re.match(rights["read"], "feed.lapor-sp4n") and not re.match(rights["write"], f"feed.{reader}")
        for service in ("intake", "routing", "notification", "gateway"):
            assert not re.match(rights["read"], f"{service}.events")
        assert not any(p["user"] == reader and p["exchange"].endswith(".events")
                       for p in DEFINITIONS.get("topic_permissions", []))


@pytest.mark.parametrize("service", ["intake", "routing", "notification", "reporting"])
def test_a_service_user_covers_what_nameko_declares_for_it_and_no_more(service):
    module, _, name = SERVICE_CLASSES[service].partition(":")
    service_class = getattr(importlib.import_module(module), name)
    user = f"ntbcare-{service}"
    rights, topic = permission(user), rpc_topic(user)
    reply = f"rpc.reply-{service}-{uuid.uuid4()}"
    own_queues = [f"rpc-{service}", reply, f"rpc.reply-standalone_rpc_proxy-{uuid.uuid4()}"]
    for source, event_types in service_class.subscriptions.items():
        own_queues += [f"evt-{source}-{t}--{service}.{handler_name(t)}" for t in event_types]
        assert re.match(rights["read"], f"{source}.events") and re.match(rights["configure"], f"{source}.events")
        assert re.match(topic["write"], f"{source}.events_since"), f"{service} pulls {source}"
    for queue in own_queues:
        for kind in ("configure", "write", "read"):
            assert re.match(rights[kind], queue), (kind, queue)
    assert re.match(topic["read"], f"{service}.*") and re.match(topic["read"], str(uuid.uuid4()))
    assert re.match(topic["write"], str(uuid.uuid4()))  # its RPC replies
    # Never: reading its own events exchange (the exchange-to-exchange bypass), others' exchanges
    # for writing, others' queues, the gateway's exchanges, nameko-rpc with '#'.
    assert not re.match(rights["read"], f"{service}.events")
    for other in ("intake", "routing", "notification", "reporting"):
        if other != service:
            assert not re.match(rights["write"], f"{other}.events")
            assert not re.match(rights["read"], f"rpc-{other}")
    for exchange in ("ntbcare.gateway", "ntbcare.replies", "gateway-calls"):
        assert not any(re.match(rights[kind], exchange) for kind in ("configure", "write", "read"))
    assert not re.match(topic["read"], "#") and not re.match(topic["write"], "routing.issue_token")


def test_no_outside_system_may_touch_nameko_rpc_or_write_an_events_exchange():
    for user in ("lapor-sp4n", "dinas-pupr-si"):
        rights = permission(user)
        assert not any(re.match(rights[kind], "nameko-rpc") for kind in ("configure", "write", "read"))
        for service in ("intake", "routing", "notification"):
            assert not re.match(rights["write"], f"{service}.events")


CALL = IncomingCall(caller="lapor-sp4n", operation="intake.get_complaint", reply_to="lapor-sp4n.r1",
                    correlation_id="c", body={"args": ["x"], "kwargs": {}})
GRANTS = Grants({"lapor-sp4n": frozenset({"intake.get_complaint"})})


@pytest.mark.parametrize("call, reason", [
    (IncomingCall(None, "intake.get_complaint", "lapor-sp4n.r1", "c", {}), "user_id"),
    (IncomingCall("lapor-sp4n", "intake.reporter_contact", "lapor-sp4n.r1", "c", {}), "not granted"),
    (IncomingCall("dinas-pupr-si", "intake.get_complaint", "dinas-pupr-si.r", "c", {}), "not granted"),
])
def test_calls_without_identity_or_grant_are_refused(call, reason):
    with pytest.raises(Forbidden, match=reason):
        GRANTS.check(call)
    GRANTS.check(CALL)  # the granted one passes


def test_replies_go_only_to_the_callers_own_keys():
    assert reply_allowed(CALL)
    assert not reply_allowed(IncomingCall("lapor-sp4n", "x.y", "dinas-pupr-si.r", "c", {}))
    assert not reply_allowed(IncomingCall("lapor-sp4n", "x.y", "lapor-sp4nX.r", "c", {}))
    assert reply_allowed(IncomingCall(None, "x.y", "anyone.r", "c", {}))  # the refusal reaches it


@pytest.mark.parametrize("body", [None, [], {"args": "x"}, {"kwargs": []}, {"args": [], "extra": 1}])
def test_malformed_bodies_are_refused(body):
    with pytest.raises(ValidationFailed):
        arguments(body)


@pytest.mark.parametrize("data", [None, {}, {"systems": []}, {"systems": {"Bad Name": {}}},
                                  {"systems": {"a": {"operations": ["nodot"]}}},
                                  {"systems": {"a": {"operations": ["x.y"], "extra": 1}}},
                                  {"systems": {"a": {"agencies": ["dpupr"], "feed": "yes"}}}])
def test_a_malformed_grant_file_is_refused(data):
    with pytest.raises(ValueError):
        parse_grants(data)
