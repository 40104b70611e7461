"""The sender's loop (``adapters/sender.py``) against a fake Graph client on a real, migrated SQLite
file, no broker: messages recorded by notification's own handlers go out in their lane's order,
each exactly once, and every kind of Graph answer ends where ``domain.delivery`` says — retried,
the next channel, failed for the desk, or the Page held until a probe succeeds."""
from __future__ import annotations

import itertools
import json
from collections import Counter
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Callable, Optional

import eventlet
import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select

from shared.core.consumer import EventConsumer
from shared.core.events import isoformat_utc, utc_now
from shared.glue.providers import Storage
from services.notification.adapters import tables
from services.notification.adapters.deliveries import Deliveries
from services.notification.adapters.graph_client import (CommentResult, GraphApiError, GraphClient, SendResult,
                                                         classify_error)
from services.notification.adapters.sender import DeliveryLoop, Sender
from services.notification.application.handling import NotificationHandlers
from services.notification.domain.policy import (APP_SCOPE, ERROR_TABLE, FAIL_PERMANENT, HOLD_PAGE, NEXT_CHANNEL,
                                                 PERMISSION, RETRY, SLOW_DOWN, RetryPolicy)
from services.notification.service import build_store
from tests.support.lifecycle import snapshot

PAGE = "100000000000001"
OTHER_PAGE = "200000000000002"
UNKNOWN_PAGE = "900000000000009"
TOKENS = {PAGE: "page-token-1", OTHER_PAGE: "page-token-2"}


# -- a Graph client that records calls and refuses on demand ---------------------------------------

@dataclass(frozen=True)
class Call:
    what: str  # "send" or "comment"
    page_id: Optional[str]
    token: str
    recipient: dict
    text: str
    messaging_type: Optional[str] = None
    tag: Optional[str] = None
    ok: bool = True


def graph_error(code: int | None, subcode: int | None = None, status: int | None = 400, transient=None,
                headers=None) -> GraphApiError:
    return GraphApiError(code, subcode, status, f"refused ({code})", classify_error(status, code, subcode, transient),
                         transient=transient, headers=headers)


class FakeGraph:
    """``GraphClient``'s methods. Each call is recorded; it raises the next error of ``fail_next``,
    else what ``refuse(call)`` returns, else answers like Meta."""

    def __init__(self):
        self.calls: list[Call] = []
        self.queued: list[GraphApiError] = []
        self.refuse: Callable[[Call], Optional[GraphApiError]] = lambda call: None
        self.ids = itertools.count(1)

    def fail_next(self, *errors: GraphApiError) -> None:
        self.queued.extend(errors)

    def _answer(self, call: Call) -> None:
        error = self.queued.pop(0) if self.queued else self.refuse(call)
        self.calls.append(call if error is None else Call(**{**call.__dict__, "ok": False}))
        if error is not None:
            raise error

    def send_message(self, page_id, access_token, recipient, text, messaging_type="RESPONSE", tag=None):
        self._answer(Call("send", page_id, access_token, dict(recipient), text, messaging_type, tag))
        number = next(self.ids)
        # A private reply's answer names the commenter's PSID.
        return SendResult(f"m_{number}", recipient.get("id") or f"79{number:04d}")

    def reply_to_comment(self, comment_id, access_token, text):
        self._answer(Call("comment", None, access_token, {"comment_id": comment_id}, text))
        return CommentResult(f"{comment_id}_{next(self.ids)}")

    def close(self):
        pass

    def ok(self, **match) -> list[Call]:
        return [c for c in self.calls if c.ok and all(getattr(c, k) == v for k, v in match.items())]


def test_the_fake_offers_what_the_sender_calls_on_graph_client():
    for name in ("send_message", "reply_to_comment", "close"):
        assert callable(getattr(GraphClient, name)) and callable(getattr(FakeGraph, name))


# -- notification's store, its handlers, and a running loop -------------------------------------------

class World:
    def __init__(self, store, consumer, graph, loop):
        self.store, self.consumer, self.graph, self.loop = store, consumer, graph, loop
        self.positions = {"intake": itertools.count(1), "routing": itertools.count(1)}
        self.versions: dict[str, itertools.count] = {}

    def send(self, source, event_type, complaint_id, data):
        version = next(self.versions.setdefault(f"{source}/{complaint_id}", itertools.count(1)))
        envelope = {"event_id": str(uuid.uuid4()), "event_type": event_type,
                    "schema_version": 2 if source == "routing" else 1, "source": source,
                    "position": next(self.positions[source]), "complaint_id": complaint_id, "version": version,
                    "occurred_at": isoformat_utc(utc_now()), "data": data}
        assert self.consumer.handle(envelope, source) == "handled"
        self.loop.wake()  # what the service's ``receive`` does
        return envelope["event_id"]

    def file(self, reply_to, complaint_id=None, last_message_at=None):
        complaint_id = complaint_id or str(uuid.uuid4())
        now = isoformat_utc(utc_now())
        written = isoformat_utc(last_message_at) if last_message_at else now
        event_id = self.send("intake", "ComplaintFiled", complaint_id, {
            "tracking_code": f"NTB-{uuid.uuid4().hex[:5].upper()}-AAAAA",
            "channel": "facebook_comment" if "comment_id" in reply_to else
            "instagram_direct" if reply_to.get("platform") == "instagram" else "facebook_messenger",
            "filed_at": now, "text": "Jalan rusak.", "attachments": [], "category": "infrastruktur",
            "region_code": "5203", "priority": "normal", "reasons": {"category": [], "region": [], "priority": []},
            "confidential": False, "reply_to": reply_to, "last_citizen_message_at": written, "external_ref": None})
        return complaint_id, event_id

    def respond(self, complaint_id):
        self.route(complaint_id)
        return self.send("routing", "ComplaintResponded", complaint_id, {
            "agency_code": "dpupr", "text": "Jalan sudah kami tambal.", "resolved": False, "actor": "dpupr:budi",
            "lifecycle": snapshot("diproses")})

    def route(self, complaint_id):
        return self.send("routing", "ComplaintRouted", complaint_id, {
            "lead_agencies": ["dpupr"], "coordinating_agencies": [], "decided_by": "operator:desk:ayu",
            "reason": "jalan", "priority": "normal", "due_at": {}, "lifecycle": snapshot("disetujui")})

    def rows(self, trigger_event_id=None, complaint_id=None):
        out = tables.outgoing
        query = select(out).order_by(out.c.seq)
        if trigger_event_id:
            query = query.where(out.c.trigger_event_id == trigger_event_id)
        if complaint_id:
            query = query.where(out.c.complaint_id == complaint_id)
        with self.store.database.read() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def comment(self, comment_id):
        with self.store.database.read() as connection:
            row = connection.execute(select(tables.comment_states).where(
                tables.comment_states.c.comment_id == comment_id)).mappings().first()
        return dict(row) if row else None

    def complaint(self, complaint_id):
        with self.store.database.read() as connection:
            return dict(connection.execute(select(tables.complaints).where(
                tables.complaints.c.complaint_id == complaint_id)).mappings().one())

    def events(self, event_type):
        return [e for e in self.store.events_since(0) if e["event_type"] == event_type]

    def settled(self, trigger_event_id, count=1, timeout=5.0):
        return wait_for(lambda: (lambda rows: rows if len(rows) >= count and all(
            r["state"] != "pending" for r in rows) else None)(self.rows(trigger_event_id)), timeout)


def wait_for(probe, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        eventlet.sleep(0.01)
    raise AssertionError("not reached in time")


def messenger(page=PAGE):
    return {"page_id": page, "psid": f"7{uuid.uuid4().int % 10**14:014d}"}


def instagram(page=PAGE):
    """Where intake files an Instagram Direct message: the linked Page, the IGSID, the platform."""
    return {"page_id": page, "psid": f"69{uuid.uuid4().int % 10**14:014d}", "platform": "instagram"}


def commenter(page=PAGE):
    return {"page_id": page, "comment_id": f"1_{uuid.uuid4().int % 10**9}", "post_id": "1"}


def new_loop(store, graph, **settings):
    values = dict(send_rate=0, concurrency=4, probe_seconds=0.2, poll_seconds=0.02, lease_seconds=5,
                  spawn=eventlet.spawn)
    values.update(settings)
    retry = RetryPolicy(base_seconds=0.05, jitter=0.0, rate_limit_min_pause_seconds=0.2)
    return DeliveryLoop(Deliveries(store.database), graph, retry, **values)


@pytest.fixture
def pages(monkeypatch):
    monkeypatch.setenv("FACEBOOK_PAGES", ",".join(f"{page}:{token}" for page, token in TOKENS.items()))


@pytest.fixture
def store(migrated_sqlite, pages):
    store = build_store(migrated_sqlite("notification", build_store))   # a copy of one migrated file
    store.prepare()
    yield store
    store.database.dispose()


@pytest.fixture
def world(store):
    graph = FakeGraph()
    loop = new_loop(store, graph)
    store.database.after_commit_hooks.append(lambda _envelopes: loop.wake())
    consumer = EventConsumer(store.database, store.quarantine, NotificationHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures, service="notification")
    loop.running = True
    thread = eventlet.spawn(loop.run)
    yield World(store, consumer, graph, loop)
    loop.stop()
    thread.wait()


# -- what is sent ---------------------------------------------------------------------------------

def test_a_messenger_acknowledgment_is_sent_once_and_recorded_with_citizen_notified(world):
    reply_to = messenger()
    complaint_id, filed = world.file(reply_to)
    [row] = world.settled(filed)
    [call] = world.graph.calls
    assert call == Call("send", PAGE, "page-token-1", {"id": reply_to["psid"]}, row["text"], "RESPONSE", None)
    assert (row["state"], row["channel"], row["messaging_type"], row["attempts"]) == ("sent", "messenger",
                                                                                     "RESPONSE", 1)
    [event] = world.events("CitizenNotified")
    assert event["complaint_id"] == complaint_id and event["data"] == {
        "trigger_event_id": filed, "channel": "messenger", "messaging_type": "RESPONSE", "tag": None,
        "graph_message_id": row["graph_message_id"], "message_id": row["message_id"]}
    # More rounds and wake-ups send nothing again.
    world.loop.wake()
    eventlet.sleep(0.1)
    assert world.loop.dispatch() == 0 and len(world.graph.calls) == 1 and world.loop.sent_count == 1


def test_a_message_costs_two_transactions_its_lease_and_its_outcome(store):
    """Reading the lane head, leasing it and reading what the decision needs are one transaction;
    recording the outcome is the second; the look that finds the lane empty commits nothing. (It
    was five: a read, the lease, a read, the outcome, the read that found the lane empty.)"""
    graph = FakeGraph()
    loop = new_loop(store, graph)
    consumer = EventConsumer(store.database, store.quarantine, NotificationHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures, service="notification")
    world = World(store, consumer, graph, loop)
    _complaint_id, filed = world.file(messenger())
    [row] = world.rows(filed)
    begun, committed = [], []
    listeners = {"begin": lambda connection: begun.append(connection),
                 "commit": lambda connection: committed.append(connection)}
    for name, listener in listeners.items():
        sqlalchemy_event.listen(store.database.engine, name, listener)
    try:
        loop.running = True
        loop._work_lane(row["lane"], None)
    finally:
        for name, listener in listeners.items():
            sqlalchemy_event.remove(store.database.engine, name, listener)
        loop.running = False
    assert len(graph.calls) == 1 and world.rows(filed)[0]["state"] == "sent"
    assert (len(begun), len(committed)) == (3, 2), f"{len(begun)} transactions, {len(committed)} commits"


def test_a_complaint_s_messages_go_out_in_order_and_a_retry_holds_back_the_later_ones(world):
    world.graph.fail_next(graph_error(2), graph_error(None, status=503))
    complaint_id, filed = world.file(messenger())
    routed = world.route(complaint_id)
    [ack] = world.settled(filed)
    [update_row] = world.settled(routed)
    texts = [call.text for call in world.graph.calls]
    assert texts == [ack["text"]] * 3 + [update_row["text"]]  # two refusals, then in order
    assert ack["attempts"] == 3 and ack["last_error"] == "temporary:None/None" and ack["state"] == "sent"
    assert update_row["attempts"] == 1 and update_row["sent_at"] > ack["sent_at"]


def test_in_a_backlog_first_replies_go_before_other_complaints_later_notices(store):
    """A flood leaves the sender a backlog: every citizen who just filed waits for the
    acknowledgment, nobody for another complaint's "routed" notice. A lane stops after its first
    replies, and the next round starts lanes whose head is one before older lanes' later notices;
    each complaint's own messages still go out in the order recorded."""
    graph = FakeGraph()
    loop = new_loop(store, graph, concurrency=1, spawn=lambda work: work())   # one lane at a time, inline
    consumer = EventConsumer(store.database, store.quarantine, NotificationHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures, service="notification")
    world = World(store, consumer, graph, loop)
    first, filed_first = world.file(messenger())
    routed_first = world.route(first)
    second, filed_second = world.file(messenger())
    routed_second = world.route(second)
    loop.running = True
    try:
        assert loop.dispatch() == 2        # the two acknowledgments; each lane stopped before "routed"
        third, filed_third = world.file(messenger())   # recorded after both "routed" notices
        while loop.dispatch():
            pass
    finally:
        loop.running = False
    text_of = {event_id: world.rows(event_id)[0]["text"] for event_id in
               (filed_first, routed_first, filed_second, routed_second, filed_third)}
    assert [call.text for call in graph.calls] == [text_of[event_id] for event_id in (
        filed_first, filed_second, filed_third, routed_first, routed_second)]
    assert all(row["state"] == "sent" for event_id in text_of for row in world.rows(event_id))


def test_a_comment_complaint_private_reply_refused_with_10900_falls_back_and_spends_it(world):
    reply_to = commenter()
    world.graph.refuse = lambda call: graph_error(10900) if call.what == "send" else None
    complaint_id, filed = world.file(reply_to)
    private, public = world.settled(filed, count=2)
    # The private acknowledgment had no other channel (the public one is its own message): failed,
    # not listed for the desk; Meta's 10900 says the private reply is spent.
    assert (private["state"], private["reason"], private["code"]) == ("failed", "private_reply_used", 10900)
    assert world.comment(reply_to["comment_id"])["private_reply_closed"] == "private_reply_used"
    assert json.loads(private["excluded_channels"]) == ["comment_private", "comment_public"]
    assert world.complaint(complaint_id)["private_reply_used"]
    [failed] = world.events("CitizenNotificationFailed")
    assert failed["data"]["listed_for_desk"] is False and failed["data"]["permanent"] is True
    assert (public["state"], public["channel"]) == ("sent", "comment_public")
    [reply] = world.graph.ok(what="comment")
    assert reply.recipient == {"comment_id": reply_to["comment_id"]} and reply.text == public["public_text"]

    # The next update goes publicly at once: the private reply is known to be spent.
    routed = world.route(complaint_id)
    [update_row] = world.settled(routed)
    assert update_row["channel"] == "comment_public" and json.loads(update_row["fallback_reasons"]) == [
        "private_reply_used"]


def test_a_private_reply_accepted_teaches_the_psid(world):
    complaint_id, filed = world.file(commenter())
    private, public = world.settled(filed, count=2)
    [call] = world.graph.ok(what="send")
    assert call.recipient.keys() == {"comment_id"} and call.messaging_type == "RESPONSE"
    record = world.complaint(complaint_id)
    assert record["private_reply_used"] and record["known_psid"] == private["recipient_psid"] is not None
    notified = {e["data"]["message_id"]: e["data"] for e in world.events("CitizenNotified")}
    assert notified[private["message_id"]]["recipient_psid"] == record["known_psid"]
    assert public["channel"] == "comment_public"


@pytest.mark.parametrize("code, reason, attempts", [(551, "person_unavailable", 1), (100, "bad_request", 0)])
def test_a_permanent_refusal_is_listed_for_the_desk(world, code, reason, attempts):
    # 551 changes channel (a Messenger complaint has none left), 100 ends the message at once.
    world.graph.fail_next(graph_error(code))
    complaint_id, filed = world.file(messenger())
    [row] = world.settled(filed)
    assert (row["state"], row["reason"], row["code"], row["channel"]) == ("undeliverable", reason, code, "messenger")
    assert row["last_error"] == f"permanent:{code}/None" and row["attempts"] == attempts
    [event] = world.events("CitizenNotificationFailed")
    assert event["data"] == {"trigger_event_id": filed, "reason": reason, "code": code, "permanent": True,
                             "message_id": row["message_id"], "listed_for_desk": True}
    assert len(world.graph.calls) == 1


def test_a_page_without_a_token_is_undeliverable_without_a_call(world):
    _complaint_id, filed = world.file(messenger(UNKNOWN_PAGE))
    [row] = world.settled(filed)
    assert (row["state"], row["reason"]) == ("undeliverable", "page_not_configured")
    assert world.graph.calls == []


def test_a_rate_limit_pauses_the_page_then_sends(world):
    world.graph.fail_next(graph_error(613))
    started = time.monotonic()
    _complaint_id, filed = world.file(messenger())
    [row] = world.settled(filed)
    assert time.monotonic() - started >= 0.2  # the pause (rate_limit_min_pause_seconds)
    assert row["state"] == "sent" and row["attempts"] == 2 and row["last_error"] == "rate_limited:613/None"
    assert world.loop.limiters[(PAGE, "send")]._blocked_until > float("-inf")


def test_an_invalid_token_holds_only_its_page_until_a_probe_succeeds(world):
    token_ok = {"value": False}
    world.graph.refuse = lambda call: None if token_ok["value"] or call.page_id != PAGE else graph_error(190)
    first_id, first = world.file(messenger())
    _second_id, second = world.file(messenger())
    _other_id, other = world.file(messenger(OTHER_PAGE))
    assert world.settled(other)[0]["state"] == "sent"  # another Page is not held
    wait_for(lambda: world.loop.held_pages() == {PAGE: "invalid_token"})
    wait_for(lambda: len(world.graph.calls) >= 4)  # probes every 0.2 s
    held = world.rows(first) + world.rows(second)
    assert all(r["state"] == "pending" and r["attempts"] == 0 for r in held)
    # Nothing counted, nothing dropped; the lease was given back (due now, not when it would end)
    # — between probes: a probe in flight holds its lease.
    wait_for(lambda: all(r["next_attempt_at"] <= isoformat_utc(utc_now())
                         for r in world.rows(first) + world.rows(second)))
    assert held[0]["last_error"] == "invalid_token:190/None"
    # Only the probe (the Page's oldest message) is tried while held. Lanes leased together
    # (their leases share a group commit) may each have met the 190 once before the hold.
    refused = Counter(c.recipient["id"] for c in world.graph.calls if not c.ok)
    probe = json.loads(world.complaint(first_id)["reply_to"])["psid"]
    assert refused[probe] >= 2 and sum(refused.values()) - refused[probe] <= 1

    token_ok["value"] = True
    assert world.settled(first)[0]["state"] == "sent" and world.settled(second)[0]["state"] == "sent"
    assert world.loop.held_pages() == {}
    assert len(world.graph.ok(page_id=PAGE)) == 2  # each message once


def test_only_a_probe_s_success_lifts_its_page_s_hold(world):
    """A hold another replica places while an ordinary send is in flight stays after that send
    succeeds (its lease saw no hold: nothing to lift, no statement spent on it); the Page's next
    probe lifts it."""
    placed = {"done": False}

    def hold_meanwhile(call):
        if not placed["done"]:
            placed["done"] = True
            with world.store.database.transaction() as tx:
                stamp = isoformat_utc(utc_now())
                tx.execute(tables.page_holds.insert(), dict(page_id=PAGE, reason="invalid_token",
                                                            since=stamp, last_probe_at=stamp))
        return None   # Meta accepts the call

    world.graph.refuse = hold_meanwhile
    _first_id, first = world.file(messenger())
    assert world.settled(first)[0]["state"] == "sent"
    eventlet.sleep(0.5)   # probes are due every 0.2 s, but there is nothing pending to probe with
    assert world.loop.held_pages() == {PAGE: "invalid_token"}
    _second_id, second = world.file(messenger())
    assert world.settled(second)[0]["state"] == "sent"   # sent as the Page's probe
    assert world.loop.held_pages() == {}


def test_two_instances_on_one_database_send_each_message_once(store):
    graph = FakeGraph()
    loops = [new_loop(store, graph, concurrency=3), new_loop(store, graph, concurrency=3)]
    consumer = EventConsumer(store.database, store.quarantine, NotificationHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures, service="notification")
    world = World(store, consumer, graph, loops[0])
    filed = [world.file(messenger())[1] for _ in range(12)]
    for loop in loops:
        loop.running = True
    threads = [eventlet.spawn(loop.run) for loop in loops]
    try:
        for event_id in filed:
            world.settled(event_id)
    finally:
        for loop, thread in zip(loops, threads):
            loop.stop()
            thread.wait()
    assert len(graph.calls) == 12 and len({c.recipient["id"] for c in graph.calls}) == 12
    assert len(world.events("CitizenNotified")) == 12


def test_a_lane_leased_by_another_instance_is_left_alone(world):
    world.loop.halt()  # nothing is sent until the test lets it
    eventlet.sleep(0.05)
    _complaint_id, filed = world.file(messenger())
    [row] = world.rows(filed)
    deliveries = Deliveries(world.store.database)
    lease = utc_now() + timedelta(seconds=30)
    claimed = deliveries.claim_head(row["lane"], utc_now(), lease)   # another instance leases it
    assert claimed is not None and claimed.row["message_id"] == row["message_id"]
    assert claimed.original_due == row["next_attempt_at"] and claimed.prepared.message.kind == row["kind"]
    assert deliveries.claim_head(row["lane"], utc_now(), lease) is None  # leased: not due for anyone else
    world.loop.running = True
    assert world.loop.dispatch() == 0 and world.graph.calls == []


# -- the nameko provider around the loop -------------------------------------------------------------

def test_the_provider_runs_the_loop_and_lets_sends_in_flight_finish_on_stop(store, monkeypatch):
    monkeypatch.setenv("NOTIFICATION_SENDER_POLL_SECONDS", "0.02")
    storage = Storage(lambda: store)
    storage.store = store
    provider = Sender()
    provider.container = SimpleNamespace(dependencies=[storage], spawn_managed_thread=eventlet.spawn,
                                         service_name="notification")
    provider.setup()
    loop = provider.get_dependency(worker_ctx=None)
    assert isinstance(loop, DeliveryLoop) and loop.retry.rate_limit_min_pause_seconds == 10
    assert loop.lease_seconds == 15 and loop.concurrency == 8 and loop.poll_seconds == 0.02
    graph = loop.client = FakeGraph()
    gate = eventlet.event.Event()
    in_flight: list[bool] = []
    answer = graph.send_message

    def slow_send(*args, **kwargs):
        in_flight.append(True)
        gate.wait()
        return answer(*args, **kwargs)
    graph.send_message = slow_send
    consumer = EventConsumer(store.database, store.quarantine, NotificationHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures, service="notification")
    world = World(store, consumer, graph, loop)
    provider.start()
    _complaint_id, filed = world.file(messenger())
    # In flight means Meta has the request: a lane that is only counted busy has not started and
    # rightly sends nothing once stopped (waiting on busy_lanes made this test a race under load).
    wait_for(lambda: in_flight)
    eventlet.spawn_after(0.1, gate.send, True)
    provider.stop()  # waits for the send in flight to record its outcome
    assert world.rows(filed)[0]["state"] == "sent" and not loop.running


# -- Meta's error table, row by row (policy.ERROR_TABLE) ----------------------------------------------

CODE_ROWS = [pytest.param(rule, id=rule.label.replace(" ", "")) for rule in ERROR_TABLE if rule.code is not None]


def _code_of(rule):
    return rule.code + 7 if rule.codes_up_to else rule.code  # a code inside a range row


@pytest.mark.parametrize("rule", CODE_ROWS)
def test_each_code_refusing_a_messenger_send_ends_where_the_table_says(world, rule):
    code = _code_of(rule)
    world.graph.fail_next(graph_error(code, rule.subcode))
    _complaint_id, filed = world.file(messenger())
    if rule.action == HOLD_PAGE:
        wait_for(lambda: world.loop.held_pages() == {PAGE: "invalid_token"})
        [row] = world.rows(filed)
        assert row["state"] == "pending" and row["attempts"] == 0  # nothing dropped, nothing counted
        assert world.settled(filed)[0]["state"] == "sent"  # the probe (the fake's error was once) lifts it
        return
    if rule.action == SLOW_DOWN and rule.min_pause_seconds:
        [row] = wait_for(lambda: [r for r in world.rows(filed) if r["attempts"] == 1])
        assert row["state"] == "pending" and row["last_error"] == f"rate_limited:{code}/{rule.subcode}"
        assert row["next_attempt_at"] >= isoformat_utc(utc_now() + timedelta(seconds=rule.min_pause_seconds - 60))
        assert world.loop.limiters[(PAGE, "send")]._blocked_until > time.monotonic() + 3000
        return
    [row] = world.settled(filed)
    assert row["last_error"] == f"{rule.kind}:{code}/{rule.subcode}"
    if rule.action in (RETRY, SLOW_DOWN):
        assert (row["state"], row["attempts"]) == ("sent", 2)
        if rule.action == SLOW_DOWN:
            paused = world.loop.limiters[(PAGE, "send")]._blocked_until
            assert paused > float("-inf")
            if rule.pause_scope == APP_SCOPE:  # every Page, and the Pages API too
                assert world.loop._app_paused_until >= paused - 0.01
    else:
        # Changing channel leaves a Messenger complaint none: undeliverable, listed for the desk.
        assert (row["state"], row["reason"], row["code"]) == ("undeliverable", rule.reason, code)
        [failed] = world.events("CitizenNotificationFailed")
        assert failed["data"]["listed_for_desk"] and failed["data"]["permanent"]
    assert len(world.graph.ok()) == (1 if row["state"] == "sent" else 0)


PRIVATE_REFUSALS = [pytest.param(rule, id=rule.label.replace(" ", "")) for rule in ERROR_TABLE
                    if rule.code is not None and rule.action in (NEXT_CHANNEL, FAIL_PERMANENT)]


@pytest.mark.parametrize("rule", PRIVATE_REFUSALS)
def test_a_refused_private_reply_falls_back_to_the_public_reply_and_is_not_tried_again(world, rule):
    code = _code_of(rule)
    reply_to = commenter()
    world.graph.refuse = lambda call: graph_error(code, rule.subcode) if call.what == "send" else None
    complaint_id, filed = world.file(reply_to)
    private, public = world.settled(filed, count=2)
    # The private acknowledgment: its public twin carried the tracking code, so it only fails.
    assert (private["state"], private["code"]) == ("failed", code) and public["state"] == "sent"
    remembered = world.comment(reply_to["comment_id"])
    routed = world.route(complaint_id)
    [update_row] = world.settled(routed)
    assert (update_row["state"], update_row["channel"]) == ("sent", "comment_public")
    tries = len([c for c in world.graph.calls if c.what == "send"])
    if rule.kind == PERMISSION:
        # A missing permission says nothing about the comment: tried again (and the public reply after).
        assert remembered is None and tries == 2
    else:
        assert remembered["private_reply_closed"] in ("private_reply_refused", "private_reply_used",
                                                      "private_reply_window_closed")
        assert remembered["private_reply_code"] == code
        assert tries == 1  # never tried again for this comment
        assert json.loads(update_row["fallback_reasons"]) == [remembered["private_reply_closed"]]


def test_a_refused_private_reply_of_a_confidential_complaint_is_listed_for_the_desk(world):
    reply_to = commenter()
    world.graph.refuse = lambda call: graph_error(10903) if call.what == "send" else None
    complaint_id, filed = world.file(reply_to)
    world.settled(filed, count=2)
    routed = world.send("routing", "ComplaintRouted", complaint_id, {
        "lead_agencies": ["polda-ntb"], "coordinating_agencies": [], "decided_by": "operator:desk:ayu",
        "reason": "pungli", "priority": "urgent", "due_at": {},
        "lifecycle": snapshot("disetujui", leads=["polda-ntb"], confidential=True)})
    [row] = world.settled(routed)
    # No public update for a confidential complaint, and the private reply is known to be refused.
    assert (row["state"], row["reason"]) == ("undeliverable", "private_reply_refused")
    assert [c.what for c in world.graph.calls] == ["send", "comment"]  # the ack's private try, the public ack


def test_a_removed_comment_gets_no_more_public_replies_but_private_ones_still_go(world):
    world.loop.halt()  # the removal arrives before the sender comes to the acknowledgment
    eventlet.sleep(0.05)
    reply_to = commenter()
    complaint_id, filed = world.file(reply_to)
    world.send("intake", "CitizenCommentRemoved", complaint_id, {"comment_id": reply_to["comment_id"]})
    assert world.comment(reply_to["comment_id"])["removed_at"] is not None
    world.loop.running = True
    thread = eventlet.spawn(world.loop.run)
    try:
        private, public = world.settled(filed, count=2)
        assert (private["state"], private["channel"]) == ("sent", "comment_private")
        # The pending public acknowledgment is dropped: undeliverable, with the reason.
        assert (public["state"], public["reason"]) == ("undeliverable", "comment_removed")
        routed = world.route(complaint_id)
        [update_row] = world.settled(routed)
        assert (update_row["state"], update_row["reason"]) == ("undeliverable", "comment_removed")
        assert [c.what for c in world.graph.ok()] == ["send"] and not world.graph.ok(what="comment")
    finally:
        world.loop.halt()
        thread.wait()


@pytest.mark.parametrize("approved", [False, True])
def test_a_late_human_answer_uses_human_agent_only_when_approved(world, approved):
    world.loop.human_agent_approved = approved
    complaint_id, filed = world.file(messenger(), last_message_at=utc_now() - timedelta(days=3))
    world.settled(filed)  # the acknowledgment: outside 24 h, automated, undeliverable
    answered = world.respond(complaint_id)
    [row] = world.settled(answered)
    if approved:
        assert (row["state"], row["messaging_type"], row["tag"]) == ("sent", "MESSAGE_TAG", "HUMAN_AGENT")
    else:
        assert (row["state"], row["reason"]) == ("undeliverable", "human_agent_not_approved")
        assert world.graph.calls == []  # no call Meta would refuse


def test_a_comment_reply_rate_limit_pauses_the_pages_api_as_long_as_its_header_says(world):
    usage = {"X-Business-Use-Case-Usage": json.dumps({PAGE: [{"type": "pages", "call_count": 100,
                                                              "estimated_time_to_regain_access": 0.01}]})}
    limited = [graph_error(80001, headers=usage)]  # the first public reply only
    world.graph.refuse = lambda call: limited.pop() if call.what == "comment" and limited else None
    started = time.monotonic()
    _complaint_id, filed = world.file(commenter())
    private, public = world.settled(filed, count=2)
    assert public["state"] == "sent" and public["attempts"] == 2
    assert public["last_error"] == "rate_limited:80001/None"
    assert time.monotonic() - started >= 0.55  # 0.01 min, as the header said
    # Comment replies are under the Pages API's limit: the Send API did not pause.
    assert world.loop.limiters[(PAGE, "pages")]._blocked_until > float("-inf")
    assert world.loop.limiters[(PAGE, "send")]._blocked_until == float("-inf")


def test_the_provider_reads_facebook_human_agent_approved(store, monkeypatch):
    storage = Storage(lambda: store)
    storage.store = store
    for value, expected in (("", False), ("0", False), ("1", True), ("true", True)):
        monkeypatch.setenv("FACEBOOK_HUMAN_AGENT_APPROVED", value)
        provider = Sender()
        provider.container = SimpleNamespace(dependencies=[storage], spawn_managed_thread=eventlet.spawn,
                                             service_name="notification")
        provider.setup()
        assert provider.get_dependency(worker_ctx=None).human_agent_approved is expected


# -- Instagram Direct ----------------------------------------------------------------------------------

def test_an_instagram_complaint_is_answered_in_its_thread_through_the_linked_page(world):
    reply_to = instagram()
    complaint_id, filed = world.file(reply_to)
    [ack] = world.settled(filed)
    answered = world.respond(complaint_id)  # routed, then the agency's answer
    [answer] = world.settled(answered)
    calls = world.graph.ok()
    assert [c.what for c in calls] == ["send"] * 3
    assert all((c.page_id, c.token, c.recipient, c.messaging_type, c.tag) ==
               (PAGE, "page-token-1", {"id": reply_to["psid"]}, "RESPONSE", None) for c in calls)
    assert (ack["channel"], answer["channel"], answer["state"]) == ("messenger", "messenger", "sent")
    notified = world.events("CitizenNotified")
    assert len(notified) == 3 and all(e["data"]["platform"] == "instagram" and e["data"]["channel"] == "messenger"
                                      for e in notified)
    # Its own rate limiter: Meta counts Instagram's Send API per Instagram account.
    assert (PAGE, "instagram_send") in world.loop.limiters and (PAGE, "send") not in world.loop.limiters


def test_instagram_s_outside_window_refusal_is_listed_for_the_desk(world):
    world.graph.fail_next(graph_error(10, 2534022))
    complaint_id, filed = world.file(instagram())
    [row] = world.settled(filed)
    assert (row["state"], row["reason"], row["code"]) == ("undeliverable", "outside_window", 10)
    assert row["last_error"] == "outside_window:10/2534022" and row["attempts"] == 1
    [failed] = world.events("CitizenNotificationFailed")
    assert failed["data"]["listed_for_desk"] and failed["data"]["permanent"]
    assert world.graph.ok() == []


def test_an_instagram_rate_limit_pauses_instagram_sends_not_the_page_s_messenger(world):
    world.graph.fail_next(graph_error(80002, transient=True))
    _complaint_id, filed = world.file(instagram())
    [row] = world.settled(filed)
    assert (row["state"], row["attempts"], row["last_error"]) == ("sent", 2, "rate_limited:80002/None")
    assert world.loop.limiters[(PAGE, "instagram_send")]._blocked_until > float("-inf")
    _other, on_messenger = world.file(messenger())
    assert world.settled(on_messenger)[0]["state"] == "sent"
    assert world.loop.limiters[(PAGE, "send")]._blocked_until == float("-inf")


@pytest.mark.parametrize("approved", [False, True])
def test_a_late_instagram_answer_uses_human_agent_only_when_approved(world, approved):
    world.loop.human_agent_approved = approved
    complaint_id, filed = world.file(instagram(), last_message_at=utc_now() - timedelta(days=3))
    assert world.settled(filed)[0]["reason"] == "outside_24h_automated"
    [row] = world.settled(world.respond(complaint_id))
    if approved:
        assert (row["state"], row["messaging_type"], row["tag"]) == ("sent", "MESSAGE_TAG", "HUMAN_AGENT")
        [call] = world.graph.ok()
        assert (call.messaging_type, call.tag) == ("MESSAGE_TAG", "HUMAN_AGENT")
    else:
        assert (row["state"], row["reason"]) == ("undeliverable", "human_agent_not_approved")
        assert world.graph.calls == []
