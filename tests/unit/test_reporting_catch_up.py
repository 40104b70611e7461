"""Reporting's consumer on a real SQLite file: a page handled in one transaction
(``handle_many``) gives the same projection as events pushed one by one in any order, and
redelivered or replayed events change nothing."""
from __future__ import annotations

import random
from datetime import datetime, timezone

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
