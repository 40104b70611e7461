"""Group commit of pushed events (``EventConsumer.handle_batch``, issue 17) against real databases
(SQLite and PostgreSQL): a batch ends exactly where the same deliveries handled one by one end; a
whole batch delivered again changes nothing; events are handled in delivery order and the
checkpoint stays contiguous; one poison message (invalid, rejected or failing) is dealt with alone
while the rest commit; a forged pushed event in a batch still cannot shadow the real one; a batch
whose transaction fails is handled again one event at a time."""
from __future__ import annotations

import random

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared.core.consumer import MAX_HANDLER_FAILURES, CatchUp, EventConsumer
from shared.core.store import ServiceStore
from tests.integration.test_consumer import SOURCE, Recorder, effects, envelope, make_consumer
from tests.support.lifecycle import snapshot
from tests.support.effects_store import effects_store

OTHER = "intake"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with effects_store(request.param, tmp_path) as service_store:
        yield service_store


def delivered(events, source=SOURCE):
    return [(event, source) for event in events]


def state(store):
    """Everything the consumer keeps: effects (in the order applied), checkpoints, records, failures."""
    with store.database.read() as connection:
        applied = [(row.position, row.actor) for row in connection.execute(
            select(store.metadata.tables["effects"]).order_by(store.metadata.tables["effects"].c.id))]
        checkpoints = sorted(tuple(row) for row in connection.execute(
            select(store.checkpoints.c.source, store.checkpoints.c.position)))
        processed = sorted(tuple(row) for row in connection.execute(select(store.processed)))
        failures = sorted(tuple(row) for row in connection.execute(
            select(store.failures.c.source, store.failures.c.position, store.failures.c.failures)))
    return applied, checkpoints, processed, failures


def test_a_batch_ends_where_the_same_deliveries_one_by_one_end(store, tmp_path):
    events = [envelope(p) for p in range(1, 41)]
    random.Random(17).shuffle(events)          # several queues: positions arrive out of order
    deliveries = delivered(events[:25]) + delivered(events[:5]) + delivered(events[25:])
    batched = make_consumer(store, Recorder(store))
    outcomes = batched.handle_batch(deliveries)
    assert outcomes == ["handled"] * 25 + ["duplicate"] * 5 + ["handled"] * 15
    batch_state = state(store)

    other = ServiceStore("reporting", store.metadata, emits_events=False, url=f"sqlite:///{tmp_path / 'one.db'}")
    other.database.create_all()
    try:
        one_by_one = make_consumer(other, Recorder(other))
        assert [one_by_one.handle(raw, source) for raw, source in deliveries] == outcomes
        assert state(other) == batch_state
    finally:
        other.database.dispose()
    assert batched.checkpoint(SOURCE) == 40
    # Handled in delivery order (what one worker per message did, in the order the broker gave).
    assert [position for position, _ in batch_state[0]] == [event["position"] for event in events]


def test_the_whole_batch_delivered_again_changes_nothing(store):
    consumer = make_consumer(store, Recorder(store))
    batch = delivered([envelope(p) for p in (2, 1, 3, 5)])
    assert consumer.handle_batch(batch) == ["handled"] * 4
    before = state(store)
    # The broker gives the whole batch again (e.g. the acks were lost with the connection).
    assert consumer.handle_batch(batch) == ["duplicate"] * 4
    assert consumer.handle_batch(batch[::-1]) == ["duplicate"] * 4
    assert state(store) == before
    assert consumer.checkpoint(SOURCE) == 3   # 4 is still missing: contiguous, not the highest seen


def test_sources_keep_their_own_checkpoints_in_one_batch(store):
    recorder = Recorder(store)
    effects_table = store.metadata.tables["effects"]

    def on_comment_removed(tx, env):
        tx.execute(effects_table.insert().values(position=env.position, actor=env.data["comment_id"]))
    consumer = EventConsumer(store.database, store.quarantine,
                             {"ComplaintResolved": recorder, "CitizenCommentRemoved": on_comment_removed},
                             store.checkpoints, store.processed, store.failures)
    routing = [envelope(p) for p in (1, 2, 3)]
    intake = [dict(envelope(p, "CitizenCommentRemoved", data={"comment_id": f"c{p}"}), source=OTHER)
              for p in (1, 2)]
    batch = [(routing[0], SOURCE), (intake[0], OTHER), (routing[2], SOURCE), (intake[1], OTHER),
             (routing[1], SOURCE)]
    assert consumer.handle_batch(batch) == ["handled"] * 5
    assert consumer.checkpoint(SOURCE) == 3 and consumer.checkpoint(OTHER) == 2
    assert [p for p, _ in state(store)[0]] == [1, 1, 3, 2, 2]   # delivery order, across sources too


def test_one_poison_message_does_not_hold_back_the_rest(store):
    recorder = Recorder(store)
    recorder.fail_positions.add(2)      # a handler that raises (RuntimeError after its write)
    recorder.reject_positions.add(4)    # a handler that rejects the event
    consumer = make_consumer(store, recorder)
    invalid = envelope(6, data={"who": "missing actor"})
    events = [envelope(p) for p in range(1, 6)]
    batch = delivered(events) + [(invalid, SOURCE)] + [({"not": "an event"}, SOURCE)]
    outcomes = consumer.handle_batch(batch)
    assert outcomes == ["handled", "failed", "handled", "quarantined", "handled", "quarantined", "quarantined"]
    assert sorted(effects(store)) == [1, 3, 5]     # the failing handler's write rolled back alone
    assert consumer.checkpoint(SOURCE) == 1        # 2 failed: not recorded, so not passed
    with store.database.read() as connection:
        reasons = [item["reason"] for item in store.quarantine.list(connection)]
    assert len(reasons) == 3 and any("cannot apply" in reason for reason in reasons)
    # The failing one is counted per delivery and quarantined after MAX_HANDLER_FAILURES, as
    # ``handle`` does; then nothing is stuck.
    for attempt in range(2, MAX_HANDLER_FAILURES + 1):
        assert consumer.handle_batch(delivered(events)) == ["duplicate", "failed", "duplicate",
                                                            "duplicate", "duplicate"]
    assert consumer.checkpoint(SOURCE) == 5
    assert consumer.handle_batch(delivered(events[1:2])) == ["duplicate"]
    with store.database.read() as connection:
        assert any("database hiccup" in item["reason"] for item in store.quarantine.list(connection))
    assert sorted(effects(store)) == [1, 3, 5]


def test_a_forged_pushed_event_in_a_batch_does_not_shadow_the_real_one(store):
    consumer = make_consumer(store, Recorder(store))
    log = [envelope(p, data={"actor": f"officer-{p}", "lifecycle": snapshot("selesai")}) for p in (1, 2, 3)]
    forged = envelope(2, data={"actor": "forger", "lifecycle": snapshot("selesai")})
    # The forger's event arrives first, in the same batch as the real one at its position.
    assert consumer.handle_batch([(forged, SOURCE), (log[0], SOURCE), (log[1], SOURCE), (log[2], SOURCE)]) == [
        "handled", "handled", "deferred", "handled"]
    CatchUp(consumer, [SOURCE], lambda _s, position, limit: [e for e in log if e["position"] > position][:limit],
            batch=True).run_once()
    with store.database.read() as connection:
        actors = sorted((row.position, row.actor) for row in connection.execute(
            select(store.metadata.tables["effects"])))
        forged_items = [item for item in store.quarantine.list(connection) if item["kind"] == "forged"]
    assert [a for a in actors if a[1] != "forger"] == [(1, "officer-1"), (2, "officer-2"), (3, "officer-3")]
    assert [(item["source"], item["position"]) for item in forged_items] == [(SOURCE, 2)]
    assert consumer.confirmed(SOURCE) == 3
    assert consumer.handle_batch(delivered(log)) == ["duplicate"] * 3


def test_a_batch_whose_transaction_fails_is_handled_one_by_one(store):
    recorder = Recorder(store)
    raised = []

    def handler(tx, env):
        if env.position == 3 and not raised:
            raised.append(3)
            raise IntegrityError("INSERT …", {}, Exception("a concurrent writer got there first"))
        recorder(tx, env)
    consumer = EventConsumer(store.database, store.quarantine, {"ComplaintResolved": handler},
                             store.checkpoints, store.processed, store.failures)
    events = [envelope(p) for p in range(1, 6)]
    assert consumer.handle_batch(delivered(events)) == ["handled"] * 5
    assert sorted(effects(store)) == [1, 2, 3, 4, 5]   # nothing twice: the batch was rolled back first
    assert consumer.checkpoint(SOURCE) == 5


class Log:
    """A source's log as ``events_since`` serves it, counting what each pull read."""

    def __init__(self, events):
        self.events = events
        self.read: list[int] = []

    def fetch(self, _source, position, limit):
        page = [e for e in self.events if e["position"] > position][:limit]
        self.read.extend(e["position"] for e in page)
        return page


def test_catch_up_does_not_race_push_while_push_moves_the_checkpoint(store):
    # Push keeps moving the checkpoint: a round only confirms what was pushed (up to the
    # checkpoint) and leaves the events still on their way to push — pulling them too had each
    # event handled twice under load (shared.core.consumer.CatchUp.horizon).
    consumer = make_consumer(store, Recorder(store))
    log = Log([envelope(p) for p in range(1, 31)])
    progress: dict[str, int] = {}
    consumer.handle_batch(delivered(log.events[:10]))
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress).run_once()
    assert log.read == list(range(1, 31))            # the first round reads the whole log
    assert consumer.confirmed(SOURCE) == 30 and sorted(effects(store)) == list(range(1, 31))

    log.events += [envelope(p) for p in range(31, 61)]
    consumer.handle_batch(delivered(log.events[30:40]))   # push moved the checkpoint to 40
    log.read.clear()
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress).run_once()
    assert log.read == list(range(31, 41))           # confirmed up to the checkpoint, no further
    assert consumer.confirmed(SOURCE) == 40 and sorted(effects(store)) == list(range(1, 41))

    consumer.handle_batch(delivered(log.events[40:60]))
    log.read.clear()
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress).run_once()
    assert log.read == list(range(41, 61)) and consumer.confirmed(SOURCE) == 60


def test_catch_up_reads_the_whole_log_once_the_checkpoint_stands_still(store):
    # An event push never delivered holds the checkpoint while later ones are handled: the next
    # round finds it still and reads on to the end of the log, filling the gap.
    consumer = make_consumer(store, Recorder(store))
    log = Log([envelope(p) for p in range(1, 21)])
    progress: dict[str, int] = {}
    consumer.handle_batch(delivered(log.events[:5]))
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress).run_once()
    log.events += [envelope(p) for p in range(21, 31)]
    consumer.handle_batch(delivered([e for e in log.events[20:30] if e["position"] != 22]))  # 22 lost
    assert consumer.checkpoint(SOURCE) == 21
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress).run_once()
    assert 22 not in effects(store)                  # the round push moved the checkpoint in
    log.read.clear()
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress).run_once()
    assert 22 in log.read and sorted(effects(store)) == list(range(1, 31))
    assert consumer.checkpoint(SOURCE) == 30 and consumer.confirmed(SOURCE) == 30


def ids_of(log):
    def fetch_ids(_source, position, limit):
        return [[e["position"], e["event_id"]] for e in log.events if e["position"] > position][:limit]
    return fetch_ids


def test_catch_up_confirms_pushed_events_by_id_without_pulling_them_again(store):
    consumer = make_consumer(store, Recorder(store))
    log = Log([envelope(p) for p in range(1, 21)])
    progress: dict[str, int] = {}
    consumer.handle_batch(delivered(log.events))
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress, fetch_ids=ids_of(log)).run_once()
    assert consumer.confirmed(SOURCE) == 20                # the first round reads the log (no horizon yet)
    log.events += [envelope(p) for p in range(21, 41)]
    consumer.handle_batch(delivered(log.events[20:]))
    log.read.clear()
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress, fetch_ids=ids_of(log)).run_once()
    assert log.read == [] and consumer.confirmed(SOURCE) == 40   # confirmed from ids, no envelope pulled
    assert sorted(effects(store)) == list(range(1, 41))


def test_an_id_that_does_not_match_hands_over_to_the_full_pull(store):
    # A forged push at position 25: the ids confirm up to 24, the full pull from there finds the
    # real event, applies it and reports the impostor, exactly as before.
    consumer = make_consumer(store, Recorder(store))
    log = Log([envelope(p, data={"actor": f"officer-{p}", "lifecycle": snapshot("selesai")}) for p in range(1, 11)])
    progress: dict[str, int] = {}
    consumer.handle_batch(delivered(log.events))
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress, fetch_ids=ids_of(log)).run_once()
    log.events += [envelope(p, data={"actor": f"officer-{p}", "lifecycle": snapshot("selesai")}) for p in range(11, 31)]
    forged = envelope(25, data={"actor": "forger", "lifecycle": snapshot("selesai")})
    consumer.handle_batch(delivered([forged] + [e for e in log.events[10:] if e["position"] != 25]))
    log.read.clear()
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress, fetch_ids=ids_of(log)).run_once()
    assert log.read[0] == 25 and consumer.confirmed(SOURCE) == 30
    with store.database.read() as connection:
        forged_items = [item for item in store.quarantine.list(connection) if item["kind"] == "forged"]
        actors = dict((row.position, row.actor) for row in connection.execute(
            select(store.metadata.tables["effects"])) if row.actor != "forger")
    assert [(item["source"], item["position"]) for item in forged_items] == [(SOURCE, 25)]
    assert actors[25] == "officer-25"


def test_a_source_that_cannot_list_ids_is_pulled_as_before(store):
    consumer = make_consumer(store, Recorder(store))
    log = Log([envelope(p) for p in range(1, 11)])
    progress: dict[str, int] = {}

    def old_release(_source, _position, _limit):
        raise RuntimeError("MethodNotFound: event_ids_since")
    consumer.handle_batch(delivered(log.events))
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress, fetch_ids=old_release).run_once()
    log.events += [envelope(p) for p in range(11, 21)]
    consumer.handle_batch(delivered(log.events[10:]))
    log.read.clear()
    CatchUp(consumer, [SOURCE], log.fetch, batch=True, progress=progress, fetch_ids=old_release).run_once()
    assert log.read == list(range(11, 21)) and consumer.confirmed(SOURCE) == 20


def test_a_batch_whose_handlers_all_succeed_takes_no_savepoints(store):
    # Savepoints are for the batch with a failing handler (run again with them); the common batch
    # needs none — they were two statements and SQLAlchemy's nested-transaction work an event.
    from sqlalchemy import event as sqlalchemy_event
    statements = []
    sqlalchemy_event.listen(store.database.engine, "savepoint", lambda *args: statements.append("SAVEPOINT"))
    consumer = make_consumer(store, Recorder(store))
    assert consumer.handle_batch(delivered([envelope(p) for p in range(1, 11)])) == ["handled"] * 10
    assert statements == [] and sorted(effects(store)) == list(range(1, 11))


def test_the_checkpoint_moves_over_a_long_run_of_handled_positions_filled_by_one_event(store):
    """Positions 2..350 were handled (pushed) while 1 was missing: the batch that brings 1 moves
    the checkpoint over all of them — more than one page of records — and stops at the next gap."""
    from shared.core.consumer import ADVANCE_FIRST_PAGE
    consumer = make_consumer(store, Recorder(store))
    events = {p: envelope(p) for p in range(1, 360)}
    later = [events[p] for p in range(2, 360) if p != 351]
    assert consumer.handle_batch(delivered(later)) == ["handled"] * len(later)
    assert consumer.checkpoint(SOURCE) == 0
    assert 349 > 32 * ADVANCE_FIRST_PAGE   # several pages, growing
    assert consumer.handle_batch(delivered([events[1]])) == ["handled"]
    assert consumer.checkpoint(SOURCE) == 350
    # Delivered again, below and above the checkpoint: duplicates, read at their own positions.
    assert consumer.handle_batch(delivered([events[350], events[355], events[1]])) == ["duplicate"] * 3
    assert consumer.handle_batch(delivered([events[351]])) == ["handled"]
    assert consumer.checkpoint(SOURCE) == 359


class _RoundTrips:
    """Counts the statements the consumer sends: SQLAlchemy's, and its own driver-level ones."""

    def __init__(self, store, monkeypatch):
        import shared.core.consumer as consumer_module
        from sqlalchemy import event
        self.count = 0
        engine, real = store.database.engine, consumer_module.execute_driver

        def counted(*args, **kwargs):
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(consumer_module, "execute_driver", counted)
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args):
        self.count += 1


def test_a_pulled_page_ends_where_the_same_events_pulled_one_by_one_end(store, tmp_path, monkeypatch):
    """Catch-up handles a page of pulled events in one transaction: the records, the confirmed
    position and the checkpoint end exactly where ``handle(pulled=True)`` one by one ends — with
    pushed events recorded above the confirmed position, a forged one among them, and events the
    consumer has no handler for — and the page's own statements are a fixed number, not a few an
    event (five an event before: a read of its record, its record, a read of the checkpoint, the
    forgetting of confirmed records and the new marker)."""
    events = [envelope(p) for p in range(1, 31)]
    for position in (7, 8, 9):    # a type without a handler: recorded as ignored
        events[position - 1] = envelope(position, event_type="ComplaintDismissed", data={
            "reason": "spam", "duplicate_of": None, "actor": "desk", "lifecycle": snapshot("selesai")})
    forged = dict(envelope(12), event_id="00000000-0000-4000-8000-000000000012")
    pushed = delivered([events[3], events[4], forged, events[19]])

    def run(target, count=None):
        consumer = make_consumer(target, Recorder(target))
        consumer.handle_batch(pushed)
        trips = _RoundTrips(target, monkeypatch) if count else None
        if count:
            outcomes = consumer.handle_many(events, SOURCE)
        else:
            outcomes = {}
            for event in events:
                outcome = consumer.handle(event, SOURCE, pulled=True)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes, trips, consumer

    page_outcomes, trips, page_consumer = run(store, count=True)
    other = ServiceStore("reporting", store.metadata, emits_events=False, url=f"sqlite:///{tmp_path / 'one.db'}")
    other.database.create_all()
    try:
        one_outcomes, _, one_consumer = run(other)
        assert page_outcomes == one_outcomes
        page_state, one_state = state(store), state(other)
        assert sorted(page_state[0]) == sorted(one_state[0])      # the same effects
        assert page_state[1] == one_state[1]                      # checkpoints
        assert page_state[3] == one_state[3]                      # failures
        assert page_consumer.confirmed(SOURCE) == one_consumer.confirmed(SOURCE) == 30
        # Records at or below the confirmed position say nothing any more (a page keeps those its
        # own checkpoint had not passed until the next confirmation forgets them, as it did
        # before); the marker is the same.
        assert [row for row in page_state[2] if row[1] <= 0] == [row for row in one_state[2] if row[1] <= 0]
    finally:
        other.database.dispose()
    # Besides each handled event's savepoint, its release and its effect (3 statements; the three
    # events without a handler take none): a fixed number.
    handled = sum(1 for event in events if event["event_type"] == "ComplaintResolved")
    assert trips.count <= 3 * handled + 15, trips.count
