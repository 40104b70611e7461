"""One contract suite for the event store, run against every backend: SQLite (WAL) and
PostgreSQL. Appends, gap-free positions, optimistic concurrency, reads by position and by
complaint, the outbox, and atomicity with the state change.

The append path runs driver-level SQL and, on PostgreSQL, serialises appenders with an advisory
lock instead of a table lock; the tests after the first block pin what that must keep: conflicts
refused, positions gap-free and visible in order while several processes append (and some roll
back), the outbox row in the event's transaction, no table lock, and envelopes from outside the
process validated completely."""
from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, select, text

from shared.core.consumer import read_envelope
from shared.core.db import Database
from shared.core.events import InvalidEvent, validate_envelope
from shared.core.events.envelope import StoredEnvelope
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


def test_a_transaction_of_many_events_spanning_insert_pages_keeps_every_event_and_outbox_row(database):
    # PostgreSQL writes a big append as multi-row INSERT pages (INSERT_PAGE events each): a page
    # boundary must lose, repeat or reorder nothing.
    from shared.core.eventstore import INSERT_PAGE
    complaint_ids = [str(uuid.uuid4()) for _ in range(7)]
    count = 2 * INSERT_PAGE + 37
    with database.transaction() as tx:
        appended = tx.append([resolved(complaint_ids[i % 7], actor=f"a{i}") for i in range(count)])
    assert [e.position for e in appended] == list(range(1, count + 1))
    with database.read() as connection:
        log = database.event_store.events_since(connection, 0, limit=count)
        unpublished = database.event_store.unpublished(connection, limit=count + 10)
    assert [(e["position"], e["data"]["actor"], e["event_id"]) for e in log] == \
        [(e.position, f"a{e.position - 1}", e.event_id) for e in appended]
    assert [e["position"] for e in unpublished] == list(range(1, count + 1))
    versions = {}
    for event in log:
        versions[event["complaint_id"]] = versions.get(event["complaint_id"], 0) + 1
        assert event["version"] == versions[event["complaint_id"]]


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


def test_events_since_reads_the_envelopes_the_mapped_read_reads(database):
    """``events_since`` builds envelopes straight from the driver's rows; ``events_for`` still
    goes through SQLAlchemy's mappings: the same envelopes, key order and value types included."""
    cids = [str(uuid.uuid4()) for _ in range(3)]
    with database.transaction() as tx:
        tx.append([resolved(cid, actor=f"desk {i} ü") for i in range(4) for cid in cids])
    with database.read() as connection:
        store = database.event_store
        since = store.events_since(connection, 0)
        mapped = sorted((e for cid in cids for e in store.events_for(connection, cid)),
                        key=lambda e: e["position"])
    assert [list(e.items()) for e in since] == [list(e.items()) for e in mapped]
    assert all(type(e) is StoredEnvelope for e in since)
    assert [[type(value) for value in e.values()] for e in since] == \
        [[type(value) for value in e.values()] for e in mapped]


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


def test_the_relay_marks_published_events_without_waiting_for_the_disk(database):
    # The relay's delete of outbox rows may be undone by a power cut at no cost but a republish
    # (consumers ignore repeats), so it commits without an fsync (Database.unsynced); everything
    # else keeps synchronous commits.
    with database.transaction() as tx:
        tx.append([resolved(str(uuid.uuid4())) for _ in range(4)])
    store = database.event_store
    with database.unsynced() as connection:
        store.mark_published(connection, [1, 3])
        if database.dialect == "postgresql":
            assert connection.execute(text("SHOW synchronous_commit")).scalar() == "off"
        else:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1   # NORMAL
    with database.read() as connection:
        assert [e["position"] for e in store.unpublished(connection)] == [2, 4]
        if database.dialect == "postgresql":
            assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"
        else:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2   # FULL


# -- what the cheaper append path must keep ------------------------------------------------------
def _open(url):
    metadata = MetaData()
    return Database("routing", url, metadata, EventStore("routing", metadata))


def _append_in_process(url, count, start, done):
    """A separate process appending ``count`` single-event transactions (every third one to a
    shared complaint, every fifth one rolled back after appending)."""
    database = _open(url)
    shared = "00000000-0000-4000-8000-000000000001"
    start.wait()
    for i in range(count):
        try:
            with database.transaction() as tx:
                tx.append([resolved(shared if i % 3 == 0 else str(uuid.uuid4()), actor=str(i))])
                if i % 5 == 4:
                    raise _Rollback()
        except _Rollback:
            pass
    database.dispose()
    done.put(True)


class _Rollback(Exception):
    pass


def test_positions_gap_free_and_visible_in_order_under_appends_from_several_processes(database):
    """Three processes append (to a shared complaint and to new ones, some rolling back) while
    this process reads ``events_since`` from its checkpoint as consumers do: every page it reads
    starts right after the checkpoint and is contiguous — position N+1 never visible before N —
    and the shared complaint's versions are 1..n with no appender refused."""
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    per_process, processes = 30, 3
    workers = [context.Process(target=_append_in_process, args=(database.url, per_process, start, done))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    start.set()
    checkpoint, reads, finished = 0, 0, 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        while not done.empty():  # before the read: a read after every worker finished sees all
            done.get()
            finished += 1
        all_finished = finished == processes
        with database.read() as connection:
            page = database.event_store.events_since(connection, checkpoint, 1000)
        positions = [event["position"] for event in page]
        assert positions == list(range(checkpoint + 1, checkpoint + 1 + len(page))), positions[:5]
        checkpoint += len(page)
        reads += 1
        if all_finished and not page:
            break
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    committed = processes * (per_process - per_process // 5)
    assert checkpoint == committed and reads > 1
    with database.read() as connection:
        shared = database.event_store.events_for(connection, "00000000-0000-4000-8000-000000000001")
        assert [event["version"] for event in shared] == list(range(1, len(shared) + 1))
        assert database.event_store.outbox_size(connection) == committed


def test_appends_to_one_complaint_from_several_threads_see_each_others_versions(database):
    """Without an expected version an append takes the complaint's newest version as it is once
    the appender holds the lock: threads appending to one complaint are never refused."""
    cid, errors = str(uuid.uuid4()), []

    def writer(n):
        try:
            for i in range(15):
                with database.transaction() as tx:
                    tx.append([resolved(cid, actor=f"{n}-{i}")])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.read() as connection:
        log = database.event_store.events_for(connection, cid)
    assert [event["version"] for event in log] == list(range(1, 61))
    assert sorted(event["position"] for event in log) == list(range(1, 61))


def test_stale_writers_racing_on_one_complaint_exactly_one_wins_each_version(database):
    cid = str(uuid.uuid4())
    with database.transaction() as tx:
        tx.append([resolved(cid)])
    barrier, outcomes = threading.Barrier(4), []

    def writer():
        barrier.wait()
        try:
            with database.transaction() as tx:
                tx.append([resolved(cid, expected_version=1)])
            outcomes.append("appended")
        except ConcurrencyError:
            outcomes.append("refused")

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["appended", "refused", "refused", "refused"]
    with database.read() as connection:
        assert [e["version"] for e in database.event_store.events_for(connection, cid)] == [1, 2]


def test_a_duplicate_event_id_is_refused_and_the_next_append_works(database):
    event_id = str(uuid.uuid4())
    with database.transaction() as tx:
        tx.append([resolved(str(uuid.uuid4()), event_id=event_id)])
    for batch in (1, 3):  # the single-event statement and the batched one
        with pytest.raises(ConcurrencyError):
            with database.transaction() as tx:
                tx.append([resolved(str(uuid.uuid4()), event_id=event_id)]
                          + [resolved(str(uuid.uuid4())) for _ in range(batch - 1)])
    with database.transaction() as tx:
        assert [e.position for e in tx.append([resolved(str(uuid.uuid4()))])] == [2]
    with database.read() as connection:
        assert [e["position"] for e in database.event_store.unpublished(connection)] == [1, 2]


def test_the_outbox_row_is_written_in_the_events_transaction(database):
    store = database.event_store
    for batch in (1, 4):
        with pytest.raises(RuntimeError):
            with database.transaction() as tx:
                envelopes = tx.append([resolved(str(uuid.uuid4())) for _ in range(batch)])
                # inside the transaction: the event and its outbox row, together
                assert [e["position"] for e in store.unpublished(tx.connection)] == [e.position for e in envelopes]
                raise RuntimeError("rolled back")
        with database.read() as connection:
            assert store.outbox_size(connection) == 0 and store.events_since(connection, 0) == []
    with database.transaction() as tx:
        tx.append([resolved(str(uuid.uuid4()))])
        tx.append([resolved(str(uuid.uuid4())) for _ in range(3)])
    with database.read() as connection:
        assert [e["position"] for e in store.unpublished(connection)] == [1, 2, 3, 4]


def test_postgresql_appenders_take_no_table_lock(tmp_path):
    """While an append is uncommitted, VACUUM's lock on the events table (SHARE UPDATE
    EXCLUSIVE) and a plain insert elsewhere in the table's lock space are still granted — the
    old ``LOCK TABLE … SHARE ROW EXCLUSIVE`` refused both — and a reader is not blocked; a second
    appender waits, then appends after the first one's commit."""
    from tests.support import infra
    url = infra.create_postgres_database()
    database = _open(url)
    database.create_all()
    other = create_engine(url)
    try:
        with database.transaction() as tx:
            tx.append([resolved(str(uuid.uuid4()))])
            with other.connect() as connection:
                connection.execute(text("SET lock_timeout = '2s'"))
                connection.execute(text("LOCK TABLE events IN SHARE UPDATE EXCLUSIVE MODE NOWAIT"))
                connection.rollback()
                assert connection.execute(text("SELECT count(*) FROM events")).scalar() == 0
                connection.rollback()
            second: list = []
            thread = threading.Thread(target=lambda: second.append(_append_one(database)))
            thread.start()
            thread.join(0.5)
            assert thread.is_alive()  # waiting for the first appender's lock
        thread.join(30)
        assert second == [2]
    finally:
        other.dispose()
        database.dispose()
        infra.drop_postgres_database(url)


def _append_one(database):
    with database.transaction() as tx:
        return tx.append([resolved(str(uuid.uuid4()))])[0].position


def test_envelopes_read_back_in_process_skip_the_schemas_but_not_the_source_check(database):
    with database.transaction() as tx:
        tx.append([resolved(str(uuid.uuid4()))])
    with database.read() as connection:
        stored = database.event_store.events_since(connection, 0)[0]
    assert type(stored) is StoredEnvelope
    assert read_envelope(stored, "routing").event_type == "ComplaintResolved"
    with pytest.raises(InvalidEvent, match="expected 'intake'"):
        validate_envelope(stored, expected_source="intake")


def test_a_corrupt_or_foreign_envelope_from_outside_is_still_validated(database):
    """What arrives from the broker or an RPC reply is JSON: a plain dict, validated completely
    however it was made — even a stored envelope sent on, or a copy of one."""
    with database.transaction() as tx:
        tx.append([resolved(str(uuid.uuid4()))])
    with database.read() as connection:
        stored = database.event_store.events_since(connection, 0)[0]
    received = json.loads(json.dumps(stored))  # what a consumer gets from the broker
    assert type(received) is dict
    assert read_envelope(received, "routing").position == 1
    corrupt = dict(received, data={"who": "nobody"})
    with pytest.raises(InvalidEvent, match="ComplaintResolved"):
        read_envelope(corrupt, "routing")
    with pytest.raises(InvalidEvent, match="envelope"):
        read_envelope(dict(received, event_id="not-a-uuid"), "routing")
    with pytest.raises(InvalidEvent, match="envelope"):
        read_envelope(dict(stored, position=0), "routing")  # a copy is no longer a stored envelope
    foreign = dict(received, event_type="ComplaintFiled", source="intake")
    with pytest.raises(InvalidEvent):
        read_envelope(foreign, "routing")


def test_the_relay_marks_published_events_on_its_lock_session_in_one_unsynced_transaction(database):
    # On PostgreSQL the relay reads and marks on the session that holds its lock (autocommit):
    # the delete is a transaction of its own with synchronous_commit off, and leaves the session
    # as it found it — idle, synchronous_commit on.
    from shared.core.exclusive import KeptLock
    if database.dialect != "postgresql":
        pytest.skip("SQLite's relay marks through Database.unsynced (above)")
    with database.transaction() as tx:
        tx.append([resolved(str(uuid.uuid4())) for _ in range(4)])
    store, lock = database.event_store, KeptLock(database.engine, "outbox-relay")
    assert lock.take()
    try:
        session = lock.session
        assert [e["position"] for e in store.unpublished(session)] == [1, 2, 3, 4]
        store.mark_published(session, [1, 3], unsynced=True)
        dbapi = session.connection.dbapi_connection
        assert dbapi.autocommit and dbapi.status == 1   # no transaction left open
        assert session.execute(text("SHOW synchronous_commit")).scalar() == "on"
        assert [e["position"] for e in store.unpublished(session)] == [2, 4]
    finally:
        lock.let_go()
    with database.read() as connection:
        assert [e["position"] for e in store.unpublished(connection)] == [2, 4]
