"""Outside readers get filtered feeds, not routing's events (issue 16, Medium: ``dinas-pupr-si``
read every routing event — confidential answers, officers' names, desk notes).

intake, routing and the gateway run as their own processes under the broker users of
deploy/rabbitmq/definitions.json on this module's vhost; the reader is ``dinas-pupr-si`` (grants:
``agencies: [dpupr]``). It may no longer bind a queue to ``routing.events``; its durable queue
``dinas-pupr-si.feed`` (bound to ``feed.dinas-pupr-si`` by ``shared.broker_setup``) holds, while it
is away, the items of its agency's complaints only, with no officer's name, no desk note and no
text of a confidential complaint; an item recorded while the gateway was stopped is published by
its catch-up after the restart."""
from __future__ import annotations

import json

import pika
import pytest
import yaml
from pika.exceptions import ChannelClosedByBroker

from tests.security import broker_users
from tests.support.platform import Platform, wait_for

SERVICE_USERS = {"intake": "ntbcare-intake", "routing": "ntbcare-routing", "gateway": "ntbcare-gateway"}
READER = "dinas-pupr-si"
OFFICER, DESK_OFFICER, OTHER_OFFICER = "Budi Santoso", "Rina Wulandari", "Siti Aminah"
DESK_NOTE = "Catatan meja: pelapor takut dikenali"
SECRET_ANSWER = "Oknum petugas sudah kami periksa dan kami berhentikan"
PUBLIC_ANSWER = "Lubang jalan sudah kami tambal hari ini"
LEVY_TEXT = "Petugas minta uang pelicin lima ratus ribu untuk izin galian di Praya"


@pytest.fixture(scope="module")
def users(rabbit_vhost):
    with broker_users.applied(rabbit_vhost, [*SERVICE_USERS.values(), READER]) as applied:
        yield applied


@pytest.fixture(scope="module")
def platform(amqp_uri, users, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("feeds")
    grants = data_dir / "grants.yaml"
    grants.write_text(yaml.safe_dump({"systems": {users.names[READER]: {"operations": [], "agencies": ["dpupr"]}}}))
    running = Platform(amqp_uri, data_dir, services=tuple(SERVICE_USERS), with_sandbox=False,
                       extra_env={"GATEWAY_GRANTS_FILE": str(grants)},
                       service_amqp_uris={service: users.uri(user) for service, user in SERVICE_USERS.items()})
    running.start_all()
    yield running
    running.stop_all()


def routed(rpc, complaint_id: str) -> dict:
    def find():
        return next((e for e in rpc.routing.events_since(0, 1000)
                     if e["event_type"] == "ComplaintRouted" and e["complaint_id"] == complaint_id), None)
    return wait_for(find, 30, message=f"ComplaintRouted of {complaint_id}")


@pytest.fixture(scope="module")
def story(platform):
    """Three complaints: a provincial road (Dinas PUPR leads), illegal logging (DLHK, not PUPR's)
    and an illegal-levy report (confidential) the desk hands to Dinas PUPR with a note."""
    with platform.rpc() as rpc:
        road = rpc.intake.file_complaint({"text": "Jalan provinsi di Praya Lombok Tengah berlubang besar.",
                                          "channel": "api"})
        logging_ = rpc.intake.file_complaint({"text": "Pembalakan liar di hutan Sesaot Lombok Barat makin parah.",
                                              "channel": "api"})
        levy = rpc.intake.file_complaint({"text": LEVY_TEXT, "channel": "api"})
        assert "dpupr" in routed(rpc, road["complaint_id"])["data"]["lead_agencies"]
        other = routed(rpc, logging_["complaint_id"])["data"]["lead_agencies"]
        assert "dpupr" not in other
        assert routed(rpc, levy["complaint_id"])["data"]["lifecycle"]["confidential"] is True
        rpc.routing.acknowledge(road["complaint_id"], "dpupr", OFFICER)
        rpc.routing.respond(road["complaint_id"], "dpupr", PUBLIC_ANSWER, False, OFFICER)
        rpc.routing.acknowledge(logging_["complaint_id"], other[0], OTHER_OFFICER)
        rpc.routing.assign(levy["complaint_id"], ["dpupr"], DESK_NOTE, DESK_OFFICER)
        rpc.routing.respond(levy["complaint_id"], "dpupr", SECRET_ANSWER, True, OFFICER)
    return {"road": road["complaint_id"], "logging": logging_["complaint_id"], "levy": levy["complaint_id"]}


def reader_channel(users):
    return pika.BlockingConnection(pika.URLParameters(users.uri(READER))).channel()


class Feed:
    """What the reader took from its durable queue so far: (routing key, item) in order."""

    def __init__(self, users):
        self.channel = reader_channel(users)
        self.queue = f"{users.names[READER]}.feed"
        self.items: list[tuple[str, dict]] = []

    def drain(self) -> list[tuple[str, dict]]:
        while True:
            method, _properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.items
            self.items.append((method.routing_key, json.loads(body)))

    def wait_for(self, complaint_id: str, event_type: str, timeout: float = 30) -> dict:
        def found():
            return next((item for key, item in self.drain()
                         if item["complaint_id"] == complaint_id and key == event_type), None)
        return wait_for(found, timeout, message=f"{event_type} of {complaint_id} in the feed")


@pytest.fixture(scope="module")
def feed(platform, users, story):
    # The reader connects only now: everything so far was published while it was away.
    feed = Feed(users)
    feed.wait_for(story["road"], "ComplaintResponded")
    feed.wait_for(story["levy"], "ComplaintResponded")
    return feed


def test_the_reader_may_not_read_routing_events(users):
    channel = reader_channel(users)
    queue = f"{users.names[READER]}.snoop"
    channel.queue_declare(queue, exclusive=True)
    with pytest.raises(ChannelClosedByBroker) as refusal:
        channel.queue_bind(queue, "routing.events", routing_key="#")
    assert refusal.value.reply_code == 403


def test_the_feed_carries_its_agencys_complaints_without_names(feed, story):
    items = list(feed.drain())
    road = [(key, item) for key, item in items if item["complaint_id"] == story["road"]]
    # (one queue per event type: the gateway may record them in another order than routing did)
    assert sorted(key for key, _item in road) == ["ComplaintAcknowledged", "ComplaintResponded", "ComplaintRouted"]
    assert all(item["event_type"] == key for key, item in road)
    by_type = {key: item for key, item in road}
    answer = by_type["ComplaintResponded"]
    data = {key: value for key, value in answer["data"].items() if key != "agency_name"}  # the directory's name
    assert data == {"agency_code": "dpupr", "resolved": False, "text": PUBLIC_ANSWER, "actor": "dpupr"}
    assert answer["complaint"]["lead_agencies"] == ["dpupr"] and answer["complaint"]["status"] == "diproses"
    assert by_type["ComplaintRouted"]["data"]["actor"].startswith("rule:")
    assert by_type["ComplaintAcknowledged"]["data"]["actor"] == "dpupr"
    # The reader's own order, gap-free, and one id per item.
    positions = [item["position"] for _key, item in items]
    assert positions == list(range(1, len(positions) + 1))
    assert len({item["feed_item_id"] for _key, item in items}) == len(positions)


def test_the_feed_never_carries_another_agencys_complaint(feed, story):
    assert story["logging"] not in {item["complaint_id"] for _key, item in feed.drain()}


def test_no_names_notes_or_confidential_texts_reach_the_feed(feed, story):
    everything = json.dumps([item for _key, item in feed.drain()], ensure_ascii=False)
    for secret in (OFFICER, DESK_OFFICER, OTHER_OFFICER, DESK_NOTE, SECRET_ANSWER, LEVY_TEXT, "uang pelicin",
                   "operator:", "reply_to", "psid"):
        assert secret not in everything, secret
    levy = {item["event_type"]: item for _key, item in feed.drain() if item["complaint_id"] == story["levy"]}
    # Routed first to another agency (not in the feed), then by the desk to Dinas PUPR.
    assert set(levy) - {"ComplaintResolved"} == {"ComplaintRouted", "ComplaintResponded"}
    assert all(item["complaint"]["confidential"] for item in levy.values())
    assert levy["ComplaintRouted"]["data"]["actor"] == "ntbcare"  # the desk's decision, not the officer
    assert "text" not in levy["ComplaintResponded"]["data"] and levy["ComplaintResponded"]["data"]["resolved"] is True


def test_what_happened_while_the_gateway_was_stopped_is_published_after_its_restart(platform, feed, story):
    platform.stop("gateway")
    with platform.rpc() as rpc:
        rpc.routing.respond(story["road"], "dpupr", "Perbaikan sudah selesai", True, OFFICER)
    platform.start("gateway")
    item = feed.wait_for(story["road"], "ComplaintResolved")
    assert item["data"] == {"actor": "ntbcare"} and item["complaint"]["status"] == "selesai"
