"""One contract suite for the event store, run against every backend: SQLite (WAL) and
PostgreSQL. Appends, gap-free positions, optimistic concurrency, reads by position and by
complaint, the outbox, and atomicity with the state change."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import Column, MetaData, String, Table, select, text

from shared.core.db import Database
from shared.core.events import InvalidEvent
from shared.core.eventstore import ConcurrencyError, EventStore, PendingEvent
from tests.support.lifecycle import snapshot


CLOSED = snapshot("selesai")


def resolved(complaint_id, actor="desk", **kw):
    return PendingEvent("ComplaintResolved", complaint_id, {"actor": actor, "lifecycle": CLOSED}, **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        cleanup = None
    else:
        from tests.support import infra
        url = infra.create_postgres_database()
        cleanup = lambda: infra.drop_postgres_database(url)  # noqa: E731
    metadata = MetaData()
    store = EventStore("routing", metadata)
    Table("state", metadata, Column("key", String(36), primary_key=True), Column("value", String(50)))
    db = Database("routing", url, metadata, store)
    db.create_all()
    yield db
    db.dispose()
    if cleanup:
        cleanup()


def test_sqlite_runs_in_wal_mode(tmp_path):
    metadata = MetaData()
    db = Database("routing", f"sqlite:///{tmp_path / 'wal.db'}", metadata, EventStore("routing", metadata))
    db.create_all()
    with db.read() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_append_assigns_envelope_positions_and_versions(database):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    with database.transaction() as tx:
        first = tx.append([resolved(a), resolved(b), resolved(a, actor="x")])
    assert [e.position for e in first] == [1, 2, 3]
    assert [e.version for e in first] == [1, 1, 2]
    assert all(e.source == "routing" and e.schema_version == 2 for e in first)  # the latest version
    assert first[0].occurred_at.endswith("Z")
    with database.read() as connection:
        log = database.event_store.events_since(connection, 0)
    assert [e["position"] for e in log] == [1, 2, 3]
    assert log[2]["data"] == {"actor": "x", "lifecycle": CLOSED}
    assert set(log[0]) == {"event_id", "event_type", "schema_version", "source", "position",
                           "complaint_id", "version", "occurred_at", "data"}


def test_events_since_is_strictly_greater_ascending_and_capped(database):
    cid = str(uuid.uuid4())
    with database.transaction() as tx:
        tx.append([resolved(cid, actor=str(i)) for i in range(1205)])
    with database.read() as connection:
        store = database.event_store
        assert [e["position"] for e in store.events_since(connection, 3, 2)] == [4, 5]
        assert len(store.events_since(connection, 0, 5000)) == 1000
        assert store.events_since(connection, 1000, 1000)[0]["position"] == 1001
        assert store.events_since(connection, 1205, 10) == []
        assert [e["version"] for e in store.events_for(connection, cid)][:3] == [1, 2, 3]


def test_optimistic_concurrency_rejects_a_stale_writer(database):
    cid = str(uuid.uuid4())
    with database.transaction() as tx:
        tx.append([resolved(cid, expected_version=0)])
    with pytest.raises(ConcurrencyError):
        with database.transaction() as tx:
            tx.append([resolved(cid, expected_version=0)])
    with database.read() as connection:
        assert database.event_store.last_position(connection) == 1


def test_duplicate_complaint_version_is_refused_by_the_database(database):
    cid = str(uuid.uuid4())
    with database.transaction() as tx:
        tx.append([resolved(cid)])
    events = database.event_store.events
    with pytest.raises(Exception):
        with database.transaction() as tx:
            tx.execute(events.insert().values(position=2, event_id=str(uuid.uuid4()), event_type="ComplaintResolved",
                                              schema_version=1, source="routing", complaint_id=cid, version=1,
                                              occurred_at="2026-01-01T00:00:00Z", data="{}"))


def test_state_change_and_events_commit_or_roll_back_together(database):
    state = database.metadata.tables["state"]
    cid = str(uuid.uuid4())
    with pytest.raises(RuntimeError):
        with database.transaction() as tx:
            tx.execute(state.insert().values(key=cid, value="changed"))
            tx.append([resolved(cid)])
            raise RuntimeError("crash before commit")
    with database.read() as connection:
        assert connection.execute(select(state)).all() == []
        assert database.event_store.events_since(connection, 0) == []
    with database.transaction() as tx:
        tx.execute(state.insert().values(key=cid, value="changed"))
        tx.append([resolved(cid)])
    with database.read() as connection:
        assert len(connection.execute(select(state)).all()) == 1
        assert len(database.event_store.events_since(connection, 0)) == 1


def test_positions_stay_gap_free_after_a_rollback(database):
    with database.transaction() as tx:
        tx.append([resolved(str(uuid.uuid4()))])
    with pytest.raises(RuntimeError):
        with database.transaction() as tx:
            tx.append([resolved(str(uuid.uuid4()))])
            raise RuntimeError("rolled back")
    with database.transaction() as tx:
        tx.append([resolved(str(uuid.uuid4()))])
    with database.read() as connection:
        assert [e["position"] for e in database.event_store.events_since(connection, 0)] == [1, 2]


def test_concurrent_appenders_get_unique_gap_free_positions(database):
    errors = []

    def writer():
        try:
            for _ in range(20):
                with database.transaction() as tx:
                    tx.append([resolved(str(uuid.uuid4()))])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.read() as connection:
        positions = [e["position"] for e in database.event_store.events_since(connection, 0)]
    assert positions == list(range(1, 81))


def test_invalid_event_data_is_refused_at_append(database):
    with pytest.raises(InvalidEvent):
        with database.transaction() as tx:
            tx.append([PendingEvent("ComplaintResolved", str(uuid.uuid4()), {"who": "nobody"})])
    with pytest.raises(InvalidEvent):
        with database.transaction() as tx:
            tx.append([PendingEvent("ComplaintFiled", str(uuid.uuid4()), {})])  # not routing's event


def test_outbox_lists_unpublished_until_marked(database):
    with database.transaction() as tx:
        tx.append([resolved(str(uuid.uuid4())) for _ in range(3)])
    store = database.event_store
    with database.read() as connection:
        assert [e["position"] for e in store.unpublished(connection)] == [1, 2, 3]
    with database.transaction() as tx:
        store.mark_published(tx.connection, [1, 2])
    with database.read() as connection:
        assert [e["position"] for e in store.unpublished(connection)] == [3]
        assert len(store.events_since(connection, 0)) == 3  # the log itself is never changed
