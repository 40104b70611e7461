"""The idempotent consumer against real databases (SQLite and PostgreSQL): a redelivered event
changes nothing, checkpoints stay contiguous under out-of-order delivery, invalid events are
quarantined and replayable, a handler that keeps failing is quarantined instead of looping,
and catch-up pulls exactly what push missed."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from shared.core.consumer import MAX_HANDLER_FAILURES, CatchUp, EventConsumer, HandlerRejected
from shared.core.events.catalogue import LATEST_VERSION
from tests.support.lifecycle import snapshot
from tests.support.effects_store import effects_store

SOURCE = "routing"


def envelope(position, event_type="ComplaintResolved", data=None, complaint_id=None):
    return {
        "event_id": str(uuid.uuid4()), "event_type": event_type,
        "schema_version": LATEST_VERSION[event_type], "source": SOURCE,
        "position": position, "complaint_id": complaint_id or str(uuid.uuid4()), "version": 1,
        "occurred_at": "2026-11-01T00:00:00Z",
        "data": data if data is not None else {"actor": f"a{position}", "lifecycle": snapshot("selesai")},
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with effects_store(request.param, tmp_path) as service_store:
        yield service_store


class Recorder:
    """A handler with a visible effect: one row per handled event."""

    def __init__(self, store):
        self.effects = store.metadata.tables["effects"]
        self.fail_positions: set[int] = set()
        self.reject_positions: set[int] = set()

    def __call__(self, tx, env):
        if env.position in self.reject_positions:
            raise HandlerRejected("cannot apply this one")
        tx.execute(self.effects.insert().values(position=env.position, actor=env.data["actor"]))
        if env.position in self.fail_positions:
            raise RuntimeError("database hiccup")


def make_consumer(store, handler):
    return EventConsumer(store.database, store.quarantine, {"ComplaintResolved": handler},
                         store.checkpoints, store.processed, store.failures)


def effects(store):
    with store.database.read() as connection:
        return [row.position for row in connection.execute(select(store.metadata.tables["effects"]))]


def test_redelivered_event_changes_nothing(store):
    consumer = make_consumer(store, Recorder(store))
    event = envelope(1)
    assert consumer.handle(event, SOURCE) == "handled"
    assert consumer.handle(event, SOURCE) == "duplicate"
    assert consumer.handle(dict(event), SOURCE) == "duplicate"
    assert effects(store) == [1]
    assert consumer.checkpoint(SOURCE) == 1


def test_out_of_order_delivery_keeps_a_contiguous_checkpoint(store):
    consumer = make_consumer(store, Recorder(store))
    events = {p: envelope(p) for p in range(1, 6)}
    for position in (3, 1, 5):
        consumer.handle(events[position], SOURCE)
    assert consumer.checkpoint(SOURCE) == 1
    consumer.handle(events[2], SOURCE)
    assert consumer.checkpoint(SOURCE) == 3
    consumer.handle(events[4], SOURCE)
    assert consumer.checkpoint(SOURCE) == 5
    for event in events.values():
        assert consumer.handle(event, SOURCE) == "duplicate"
    assert sorted(effects(store)) == [1, 2, 3, 4, 5]


def test_invalid_event_is_quarantined_counted_and_replayable(store):
    recorder = Recorder(store)
    consumer = make_consumer(store, recorder)
    bad = envelope(1, data={"who": "missing actor"})
    assert consumer.handle(bad, SOURCE) == "quarantined"
    # Pushed, its claimed position is not believed (a poison message must not take the real
    # event's place): catch-up reads that position from the source's own log.
    assert consumer.checkpoint(SOURCE) == 0
    assert consumer.handle(bad, SOURCE, pulled=True) == "quarantined"
    assert consumer.checkpoint(SOURCE) == 1  # the position counts as handled; nothing is stuck
    with store.database.read() as connection:
        [_pushed, item] = store.quarantine.list(connection)
    assert "actor" in item["reason"] and item["position"] == 1
    assert consumer.handle(envelope(2), SOURCE) == "handled"
    # Replaying the invalid event as it is fails again and stays quarantined with the count.
    with store.database.read() as connection:
        full = store.quarantine.get(connection, item["item_id"])
    assert consumer.replay(full, "ops") == "still_quarantined"
    with store.database.read() as connection:
        assert store.quarantine.list(connection)[1]["attempts"] == 2


def test_rejected_event_is_quarantined_then_replayed_after_a_fix(store):
    recorder = Recorder(store)
    recorder.reject_positions.add(1)
    consumer = make_consumer(store, recorder)
    assert consumer.handle(envelope(1), SOURCE) == "quarantined"
    assert effects(store) == []  # the handler's partial writes were rolled back
    recorder.reject_positions.clear()  # "the fix"
    with store.database.read() as connection:
        item = store.quarantine.get(connection, store.quarantine.list(connection)[0]["item_id"])
    assert consumer.replay(item, "ops") == "replayed"
    assert effects(store) == [1]
    with store.database.read() as connection:
        assert store.quarantine.list(connection) == []


def test_a_failing_handler_is_retried_then_quarantined_not_looped(store):
    recorder = Recorder(store)
    recorder.fail_positions.add(1)
    consumer = make_consumer(store, recorder)
    event = envelope(1)
    for _ in range(MAX_HANDLER_FAILURES):
        with pytest.raises(RuntimeError):
            consumer.handle(event, SOURCE)
    assert effects(store) == []  # every failed attempt rolled back
    assert consumer.checkpoint(SOURCE) == 1  # quarantined after the last allowed failure
    assert consumer.handle(event, SOURCE) == "duplicate"
    with store.database.read() as connection:
        assert "database hiccup" in store.quarantine.list(connection)[0]["reason"]


def test_a_pulled_page_of_pushed_events_is_confirmed_at_once(store):
    """Catch-up re-reads every pushed event to check it against the log. A page of such repeats is
    confirmed with one read and one move of the marker (issue 17: four statements an event made
    catch-up a quarter of reporting's time under load); the records it covers are forgotten, and
    what follows the run is still decided one by one."""
    from sqlalchemy import event as sa_event

    consumer = make_consumer(store, Recorder(store))
    log = [envelope(p) for p in range(1, 301)]
    assert consumer.handle_batch([(raw, SOURCE) for raw in log[:250]]) == ["handled"] * 250
    statements = []
    listener = lambda *args: statements.append(args[2])   # noqa: E731 - (conn, cursor, statement, …)
    sa_event.listen(store.database.engine, "before_cursor_execute", listener)
    try:
        outcomes = consumer.handle_many(log, SOURCE)
    finally:
        sa_event.remove(store.database.engine, "before_cursor_execute", listener)
    assert outcomes == {"duplicate": 250, "handled": 50}
    assert consumer.confirmed(SOURCE) == 300 and consumer.checkpoint(SOURCE) == 300
    assert sorted(effects(store)) == list(range(1, 301))
    with store.database.read() as connection:
        left = list(connection.execute(select(store.processed.c.position)
                                       .where(store.processed.c.source == SOURCE)).scalars())
    assert sorted(left) == [-300] + list(range(251, 301))   # the new ones: until the next pull confirms them
    # 250 repeats: a handful of statements, not 4 x 250; the 50 new events cost ~8 each.
    assert len(statements) < 50 * 9 + 20, len(statements)   # one by one: ~1,400


def test_catch_up_pulls_what_push_missed(store):
    consumer = make_consumer(store, Recorder(store))
    log = [envelope(p) for p in range(1, 1201)]
    consumer.handle(log[1], SOURCE)      # pushed: position 2
    consumer.handle(log[1099], SOURCE)   # pushed: position 1100
    calls = []

    def fetch(source, position, limit):
        calls.append(position)
        return [e for e in log if e["position"] > position][:limit]

    pulled = CatchUp(consumer, [SOURCE], fetch).run_once()
    assert pulled[SOURCE] == 1200
    assert consumer.checkpoint(SOURCE) == 1200
    assert sorted(effects(store)) == list(range(1, 1201))
    assert calls == [0, 1000]
