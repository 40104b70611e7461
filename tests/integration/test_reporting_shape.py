"""Reporting's projection knows its shape (real SQLite, the sources' logs read through a plain
``fetch``): a fresh database records the code's fingerprint; a live generation built with another
shape keeps answering, as the database has it, while the live path leaves it alone; the start-up
check rebuilds it from the logs and records the new fingerprint."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import inspect, select, update

from services.reporting.domain import projections
from services.reporting.adapters import repository, tables
from services.reporting.service import ReportingHandlers, SourceLogs, build_store
from shared.core.consumer import EventConsumer
from tests.support.reporting_seed import Seeder


@pytest.fixture()
def sources(tmp_path):
    seeder = Seeder(tmp_path / "sources")
    seeder.history(60, datetime(2020, 1, 1, tzinfo=timezone.utc), months=2)
    last = seeder.flush()
    calls: list[tuple] = []

    def fetch(source, position, limit):
        calls.append((source, position))
        return seeder.stores[source].events_since(position, limit)
    yield seeder, fetch, calls, last
    seeder.dispose()


def reporting(path):
    store = build_store(f"sqlite:///{path}")
    store.prepare()  # migrate, then ensure_live
    consumer = EventConsumer(store.database, store.quarantine, ReportingHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures, service="reporting")
    return store, consumer


def state(store) -> dict:
    with store.database.read() as connection:
        return dict(connection.execute(select(tables.projection_state)).mappings().one())


def test_a_fresh_database_records_the_codes_fingerprint_and_needs_no_rebuild(tmp_path, sources):
    _seeder, fetch, calls, _last = sources
    store, _consumer = reporting(tmp_path / "reporting.db")
    assert state(store)["fingerprint"] == repository.shape_fingerprint()
    assert repository.shape_is_current(store.database)
    logs = SourceLogs()
    logs.setup()
    assert logs.rebuild_if_shape_changed(store, fetch) is None and calls == []
    store.database.dispose()


def test_the_fingerprint_follows_the_projection_version_and_the_kept_fields(monkeypatch):
    code = repository.shape_fingerprint()
    try:
        monkeypatch.setattr(repository, "PROJECTION_VERSION", projections.PROJECTION_VERSION + 1)
        repository.shape_fingerprint.cache_clear()
        assert repository.shape_fingerprint() != code
        monkeypatch.undo()
        monkeypatch.setattr(repository, "KEPT_FIELDS", {**projections.KEPT_FIELDS, "ComplaintAmended": ()})
        repository.shape_fingerprint.cache_clear()
        assert repository.shape_fingerprint() != code
    finally:
        monkeypatch.undo()
        repository.shape_fingerprint.cache_clear()
    assert repository.shape_fingerprint() == code


def test_a_changed_fingerprint_rebuilds_in_the_background_and_records_the_new_one(tmp_path, sources):
    seeder, fetch, calls, last = sources
    path = tmp_path / "reporting.db"
    store, consumer = reporting(path)
    logs_of = {source: fetch(source, 0, 1000) for source in last}
    for source, events in logs_of.items():
        consumer.handle_many(events, source)
    code = seeder.complaints[0]["tracking_code"]
    with store.database.read() as connection:
        before = repository.complaint_by_tracking_code(connection, code)
    store.database.dispose()

    # The database as an older release left it: another fingerprint, a column the code added missing.
    store = build_store(f"sqlite:///{path}")
    with store.database.transaction() as tx:
        tx.execute(update(tables.projection_state).values(fingerprint="an-older-shape"))
        tx.connection.exec_driver_sql("ALTER TABLE complaints_g1 DROP COLUMN agency_names")
    store.prepare()                                   # start-up: migrate, ensure_live
    assert not repository.shape_is_current(store.database)
    assert state(store)["generation"] == 1

    # Until the rebuild is done the old generation answers, read as the database has it …
    with store.database.read() as connection:
        row, answers = repository.complaint_by_tracking_code(connection, code)
        assert row["public_status"] == before[0]["public_status"] and row["agency_names"] == {}
        assert len(repository.month_complaints(connection, row["month"])) >= 1
    # … and the live path leaves it alone (the rebuild will set the checkpoints it continues from).
    consumer = EventConsumer(store.database, store.quarantine, ReportingHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures, service="reporting")
    late = seeder.filed(datetime(2020, 3, 1, tzinfo=timezone.utc), "sosial", "5271", index=999)
    last = seeder.flush()
    outcomes = consumer.handle_many(fetch("intake", last["intake"] - 1, 1000), "intake")
    assert set(outcomes) == {"handled"}  # skipped without failing on the old tables
    with store.database.read() as connection:
        assert repository.complaint_by_tracking_code(connection, late["tracking_code"]) is None

    # The start-up check (the service's ``rebuild_when_shape_changed`` timer) rebuilds.
    logs = SourceLogs()
    logs.setup()
    calls.clear()
    result = logs.rebuild_if_shape_changed(store, fetch)
    assert result is not None and result["generation"] == 2 and result["events"] == sum(last.values())
    assert {source for source, _position in calls} == {"intake", "routing", "notification"}
    assert state(store)["fingerprint"] == repository.shape_fingerprint()
    assert repository.shape_is_current(store.database) and logs.progress["phase"] == "done"
    with store.database.read() as connection:
        row, answers = repository.complaint_by_tracking_code(connection, code)
        assert (row, answers) == before  # same events, same code: the same rows, now in the new shape
        assert repository.complaint_by_tracking_code(connection, late["tracking_code"]) is not None
        checkpoints = dict(connection.execute(select(store.checkpoints.c.source, store.checkpoints.c.position)).all())
    assert checkpoints == last
    with store.database.read() as connection:
        names = {name for (name,) in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "complaints_g2" in names and "complaints_g1" not in names  # the old shape is gone

    # Nothing more to do on the next tick, and the live path writes into the new generation.
    assert logs.rebuild_if_shape_changed(store, fetch) is None
    again = seeder.filed(datetime(2020, 3, 2, tzinfo=timezone.utc), "sosial", "5271", index=1000)
    last = seeder.flush()
    consumer.handle_many(fetch("intake", last["intake"] - 1, 1000), "intake")
    with store.database.read() as connection:
        assert repository.complaint_by_tracking_code(connection, again["tracking_code"]) is not None
    store.database.dispose()


def test_a_rebuild_on_postgresql_equals_the_live_projection(postgres_url, sources, monkeypatch):
    """The rebuild's bulk path off SQLite (SQLAlchemy's multi-row inserts, a streamed read in
    complaint order, indexes made after the rows), at chunk boundaries: the live rows exactly."""
    _seeder, fetch, _calls, last = sources
    store, consumer = reporting_at(postgres_url)
    for source in last:
        consumer.handle_many(fetch(source, 0, 1000), source)

    def dump():
        with store.database.read() as connection:
            projection = tables.projection(repository.current_generation(connection))
            return {table.name.rsplit("_g", 1)[0]: sorted(map(repr, connection.execute(select(table))))
                    for table in projection.tables}
    live = dump()

    def indexes(generation):
        with store.database.read() as connection:
            return {name: sorted(index["name"].replace(f"_g{generation}", "_g")
                                 for index in inspect(connection).get_indexes(f"{name}_g{generation}"))
                    for name in ("facts", "complaints", "assignments", "answers")}
    made_by_create_all = indexes(1)
    monkeypatch.setattr(repository, "FACT_CHUNK", 37)
    result = repository.rebuild(store.database, fetch, store.checkpoints, store.processed, store.failures,
                                page=25, chunk=7)
    assert result["generation"] == 2 and result["events"] == sum(last.values())
    assert dump() == live
    with store.database.read() as connection:
        assert repository.current_generation(connection) == 2
    assert indexes(2) == made_by_create_all and made_by_create_all["complaints"]
    store.database.dispose()


def reporting_at(url):
    store = build_store(url)
    store.prepare()
    consumer = EventConsumer(store.database, store.quarantine, ReportingHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures, service="reporting")
    return store, consumer
