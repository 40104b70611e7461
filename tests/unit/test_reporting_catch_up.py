"""Reporting's consumer on a real SQLite file: a page handled in one transaction
(``handle_many``) gives the same projection as events pushed one by one in any order, and
redelivered or replayed events change nothing."""
from __future__ import annotations

import random
from datetime import datetime, timezone

from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select

from services.reporting.adapters import repository, tables
from services.reporting.service import ReportingHandlers, build_store
from shared.core.consumer import EventConsumer
from tests.support.reporting_seed import Seeder


def consumer_for(path):
    store = build_store(f"sqlite:///{path}")
    store.prepare()  # migrate, then the projection tables
    return store, EventConsumer(store.database, store.quarantine, ReportingHandlers(store).table(), store.checkpoints,
                                store.processed, store.failures, service="reporting")


def dump(store):
    with store.database.read() as connection:
        projection = tables.projection(repository.current_generation(connection))
        return {table.name.rsplit("_g", 1)[0]: sorted(map(repr, connection.execute(select(table))))
                for table in projection.tables}


def test_pages_and_single_events_in_any_order_agree(tmp_path):
    seeder = Seeder(tmp_path / "sources")
    seeder.history(150, datetime(2020, 1, 1, tzinfo=timezone.utc), months=3)
    seeder.flush()
    logs = {source: store.events_since(0, 1000) for source, store in seeder.stores.items()}

    paged_store, paged = consumer_for(tmp_path / "paged.db")
    for source, events in logs.items():
        outcomes = paged.handle_many(events, source)
        assert outcomes.get("failed", 0) == 0 and outcomes.get("quarantined", 0) == 0
        assert paged.checkpoint(source) == events[-1]["position"]

    pushed_store, pushed = consumer_for(tmp_path / "pushed.db")
    shuffled = [(source, event) for source, events in logs.items() for event in events]
    random.Random(3).shuffle(shuffled)
    for source, event in shuffled:
        pushed.handle(event, source)
    assert dump(pushed_store) == dump(paged_store)

    before = dump(paged_store)
    for source, events in logs.items():           # replayed page, redelivered single events
        assert set(paged.handle_many(events, source)) == {"duplicate"}
        assert {paged.handle(event, source) for event in events[:20]} == {"duplicate"}
    assert dump(paged_store) == before
    seeder.dispose()


def test_a_batch_of_pushed_events_derives_each_complaint_once_and_agrees_with_one_by_one(tmp_path):
    """Group commit on the live path: a batch records every event's fact, then derives each of
    its complaints once (before: once per event), and ends where events handled one by one end."""
    seeder = Seeder(tmp_path / "sources")
    seeder.history(60, datetime(2020, 1, 1, tzinfo=timezone.utc), months=2)
    seeder.flush()
    deliveries = [(raw, source) for source, store in seeder.stores.items()
                  for raw in store.events_since(0, 1000)]
    deliveries.sort(key=lambda delivery: delivery[0]["occurred_at"])   # as they would arrive

    single_store, single = consumer_for(tmp_path / "single.db")
    for raw, source in deliveries:
        assert single.handle(raw, source) in ("handled", "ignored")

    batch_store, batched = consumer_for(tmp_path / "batched.db")
    with batch_store.database.read() as connection:
        facts = tables.projection(repository.current_generation(connection)).facts.name
    derivations = []

    def count(_conn, _cursor, statement, _parameters, _context, _many):
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {facts}" in statement:
            derivations.append(statement)
    sqlalchemy_event.listen(batch_store.database.engine, "before_cursor_execute", count)
    expected = 0
    for start in range(0, len(deliveries), 50):
        chunk = deliveries[start:start + 50]
        assert set(batched.handle_batch(chunk)) <= {"handled", "ignored"}
        expected += len({raw["complaint_id"] for raw, _source in chunk
                         if repository.fact_from_event(raw) is not None})
    sqlalchemy_event.remove(batch_store.database.engine, "before_cursor_execute", count)
    assert len(deliveries) > expected   # the batches hold several events of a complaint
    assert len(derivations) == expected
    assert dump(batch_store) == dump(single_store)
    seeder.dispose()
