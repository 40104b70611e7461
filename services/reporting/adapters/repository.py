"""Reporting's persistence: applying facts to the live projection, reading it for the reports,
and rebuilding a new generation from the sources' logs while the live one keeps serving.

The projection knows its shape: ``shape_fingerprint`` hashes its tables' columns, the fields kept
as facts and ``projections.PROJECTION_VERSION``; ``projection_state.fingerprint`` is the one the
live generation was built with. When they differ (new code), the live generation is kept for
reading, as the database has it, while ``rebuild`` makes one of the current shape; the live path
leaves the old one alone meanwhile (see ``apply_event``)."""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path
from operator import itemgetter
from typing import Callable, Iterable

from sqlalchemy import Column, MetaData, Table, bindparam, delete, func, inspect, select, text, update
from sqlalchemy.schema import CreateTable, DropTable

from shared.core.fast_sql import fast
from shared.core import jsontext
from shared.core.db import Database, insert_on_conflict
from shared.core.events import InvalidEvent, isoformat_utc, utc_now, validate_envelope
from shared.core.events.catalogue import LATEST_VERSION, NeedsHistory, is_current, upcast
from shared.core.events.envelope import StoredEnvelope
from shared.core.reference import CLOSED_STATUSES, OPEN_STATUSES
from services.reporting.adapters import tables
from shared.core.events import fast_check
from shared.core.events import types as ev
from services.reporting.domain.projections import (DATA_UNUSED, KEPT_FIELDS, LIFECYCLE_FIELDS,
                                                   PROJECTION_VERSION, derive, fact_data,
                                                   fact_from_event)

log = logging.getLogger("reporting")

SOURCES = ("intake", "routing", "notification")
Fetch = Callable[[str, int, int], list]


# -- the projection's shape ------------------------------------------------------------------------
@lru_cache(maxsize=None)
def shape_fingerprint() -> str:
    """A hash of what the projection's rows mean: its tables' columns and indexes (generation
    suffixes left out), the fields kept from each event, and ``PROJECTION_VERSION``."""
    def columns(table):
        return [[c.name, str(c.type), bool(c.nullable), bool(c.primary_key), bool(c.unique)]
                for c in table.columns]
    shape = {
        "version": PROJECTION_VERSION,
        "kept": {event_type: list(fields) for event_type, fields in KEPT_FIELDS.items()},
        "lifecycle": list(LIFECYCLE_FIELDS),
        "tables": {table.name.rsplit("_g", 1)[0]: {
            "columns": columns(table),
            "indexes": sorted(sorted(index.columns.keys()) for index in table.indexes)}
            for table in tables.projection(0).tables},
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode("utf-8")).hexdigest()


# -- the live generation ------------------------------------------------------------------------
# Built once: building them (and their cache keys) on every batch was 14 % of reporting's CPU.
_LIVE_STATE = select(tables.projection_state.c.generation, tables.projection_state.c.fingerprint).where(
    tables.projection_state.c.name == "live")
_LIVE_STATE_LOCKED = _LIVE_STATE.with_for_update(read=True)
# Run straight on the driver where they can be (``shared.core.fast_sql``).
_LIVE_STATE = fast(_LIVE_STATE)
_LIVE_STATE_LOCKED = fast(_LIVE_STATE_LOCKED)


def live_state(connection, lock: bool = False) -> tuple[int, str | None]:
    """(generation, the fingerprint of the shape it was built with). ``lock``: hold the row
    (PostgreSQL) until the transaction ends, so a rebuild cannot switch generations under it."""
    row = connection.execute(_LIVE_STATE_LOCKED if lock else _LIVE_STATE).first()
    return (int(row[0]), row[1]) if row else (1, shape_fingerprint())


def current_generation(connection) -> int:
    return live_state(connection)[0]


def shape_is_current(database: Database) -> bool:
    with database.read() as connection:
        return live_state(connection)[1] == shape_fingerprint()


def ensure_live(database: Database, consumer_tables: Iterable) -> bool:
    """Create the live generation's tables. On a database that has none yet, record the code's
    fingerprint and forget what the consumer handled before (an older projection), so catch-up
    fills the new one from the logs. Returns whether the live generation has the code's shape;
    when not, ``rebuild`` must replace it (the service starts one in the background)."""
    with database.transaction() as tx:
        state = tx.execute(select(tables.projection_state)).first()
        if state is None:
            tx.execute(tables.projection_state.insert().values(
                name="live", generation=1, fingerprint=shape_fingerprint()))
            for table in consumer_tables:
                tx.execute(delete(table))
        generation, fingerprint = live_state(tx.connection)
    # Only missing tables are created: an older generation keeps its own shape until replaced.
    tables.projection(generation).metadata.create_all(database.engine)
    current = fingerprint == shape_fingerprint()
    if not current:
        log.warning("projection generation %s was built with another shape (%s, code: %s); "
                    "it serves until a rebuild replaces it", generation, fingerprint,
                    shape_fingerprint())
    return current


# -- applying one event (the live path) --------------------------------------------------------
def apply_event(tx, envelope: dict) -> None:
    # A catch-up page is one transaction: read the live generation once for it.
    target = getattr(tx, "reporting_target", None)
    if target is None:
        generation, fingerprint = live_state(tx.connection, lock=True)
        # A live generation of another shape cannot take the code's rows. It is being replaced:
        # the rebuild reads every log itself and then sets the consumer's checkpoints to where it
        # read, so what is skipped here is handled again, into the new generation.
        target = tx.reporting_target = (tables.projection(generation)
                                        if fingerprint == shape_fingerprint() else False)
    if target is False:
        return
    pending = getattr(tx, "reporting_derivations", None)
    if pending is None:
        pending = tx.reporting_derivations = Derivations(tx.connection, target)
        tx.before_commit.append(pending.derive)
    pending.record(envelope)


class _Statements:
    """Statements built once per generation and dialect (building them per event costs more
    than running them)."""

    def __init__(self, projection: tables.Projection, dialect: str):
        facts, complaints = projection.facts, projection.complaints
        self.insert_fact = insert_on_conflict(facts)
        self.fact_columns = tuple(facts.columns.keys())
        self.facts_of = select(facts).where(facts.c.complaint_id == bindparam("cid"))
        self.upsert_complaint = insert_on_conflict(complaints, update_on="complaint_id")
        self.complaint_columns = tuple(complaints.columns.keys())
        self.delete_assignments = delete(projection.assignments).where(
            projection.assignments.c.complaint_id == bindparam("cid"))
        self.delete_answers = delete(projection.answers).where(
            projection.answers.c.complaint_id == bindparam("cid"))
        self.insert_assignments = projection.assignments.insert()
        self.insert_answers = projection.answers.insert()
        # PostgreSQL: a transaction-scoped lock per complaint, taken in id order (no deadlock
        # between two transactions with several complaints each) — see ``Derivations.derive``.
        self.lock_complaints = text(
            "SELECT count(pg_advisory_xact_lock(:lock_class, hashtext(cid))) FROM "
            "(SELECT unnest(CAST(:cids AS text[])) AS cid ORDER BY 1) AS ordered"
        ).bindparams(lock_class=DERIVATION_LOCK_CLASS) if dialect == "postgresql" else None
        # Run straight on the driver where they can be (``shared.core.fast_sql``; the inserts of
        # several rows at once still go through SQLAlchemy).
        for name in ("insert_fact", "facts_of", "upsert_complaint", "delete_assignments", "delete_answers"):
            setattr(self, name, fast(getattr(self, name)))


def _every_column(row: dict, columns: tuple[str, ...]) -> dict:
    """A row for a text INSERT: every column named (NULL where the row has none, as an ORM
    insert leaves it)."""
    return {name: row.get(name) for name in columns}


@lru_cache(maxsize=None)
def _statements(generation: int, dialect: str) -> _Statements:
    return _Statements(tables.projection(generation), dialect)


def apply_to(connection, projection: tables.Projection, envelope: dict) -> None:
    """Record the event's fact and derive its complaint's rows again, at once."""
    pending = Derivations(connection, projection)
    pending.record(envelope)
    pending.derive()


class Derivations:
    """Facts recorded now, their complaints' rows derived once at the end: a batch of pushed
    events (or a catch-up page) with three events of one complaint derives it once, not three
    times — the derivation (every fact of the complaint read back, its rows rewritten) was most
    of what an event cost reporting. ``derive`` must run before the transaction commits;
    ``apply_event`` registers it as the transaction's last step."""

    def __init__(self, connection, projection: tables.Projection):
        self.connection = connection
        self.sql = _statements(projection.generation, connection.dialect.name)
        # complaint id -> (a routing fact came: assignments change, a response came: answers change)
        self.pending: dict[str, tuple[bool, bool]] = {}

    def record(self, envelope: dict) -> None:
        fact = fact_from_event(envelope)
        if fact is None:
            return
        cid = fact["complaint_id"]
        self.connection.execute(self.sql.insert_fact, _every_column(_fact_row(fact), self.sql.fact_columns))
        routing, responded = self.pending.get(cid, (False, False))
        # Only routing facts shape assignments, and only responses the answers.
        self.pending[cid] = (routing or fact["source"] == "routing",
                             responded or (fact["source"] == "routing"
                                           and fact["event_type"] == ev.COMPLAINT_RESPONDED))

    def derive(self) -> None:
        connection, sql = self.connection, self.sql
        pending, self.pending = self.pending, {}
        if sql.lock_complaints is not None and pending:
            # Reporting takes each source's events side by side: two transactions may bring
            # facts of one complaint at once. Under READ COMMITTED the second would read the
            # facts before the first commits, wait on the first's row, then overwrite it with
            # what it read — losing the first's facts from the row. Locked per complaint, the
            # second waits here, and its read (a new snapshot per statement) sees the first's.
            # SQLite needs none: its second writer cannot insert a fact until the first commits.
            connection.execute(sql.lock_complaints, {"cids": sorted(pending)})
        for cid, (routing, responded) in pending.items():
            derived = derive(cid, [_fact_from_row(row) for row in
                                   connection.execute(sql.facts_of, {"cid": cid}).mappings()])
            connection.execute(sql.upsert_complaint, _every_column(_complaint_row(derived["complaint"]),
                                                                   sql.complaint_columns))
            if routing:
                connection.execute(sql.delete_assignments, {"cid": cid})
                if derived["assignments"]:
                    connection.execute(sql.insert_assignments, derived["assignments"])
            if responded:
                connection.execute(sql.delete_answers, {"cid": cid})
                if derived["answers"]:
                    connection.execute(sql.insert_answers, derived["answers"])


def _fact_row(fact: dict) -> dict:
    return dict(fact, data=jsontext.dumps_sorted(fact["data"]))


def _fact_from_row(row) -> dict:
    fact = dict(row)
    fact["data"] = jsontext.loads(fact["data"])
    return fact


_JSON_COLUMNS = {"lead_agencies": list, "coordinating_agencies": list, "agency_names": dict}


def _complaint_row(row: dict) -> dict:
    return dict(row, **{name: jsontext.dumps_sorted(row[name]) for name in _JSON_COLUMNS})


# -- reading -----------------------------------------------------------------------------------
def _in_code_shape(row, table) -> dict:
    """A row with every column the code declares (None where an older generation has none)."""
    out = dict.fromkeys(table.columns.keys())
    out.update(row)
    return out


def decode_complaint(row) -> dict:
    row = _in_code_shape(row, tables.projection(0).complaints)
    for name, empty in _JSON_COLUMNS.items():
        row[name] = jsontext.loads(row[name]) if row[name] else empty()
    return row


def _assignment(row) -> dict:
    return _in_code_shape(row, tables.projection(0).assignments)


_as_built: dict[tuple, tables.Projection] = {}


def live(connection) -> tables.Projection:
    """The live generation's tables: as the code declares them, or — while a rebuild replaces a
    generation of another shape — as the database has them, so reports keep answering."""
    generation, fingerprint = live_state(connection)
    if fingerprint == shape_fingerprint():
        return tables.projection(generation)
    key = (id(connection.engine), generation, fingerprint)
    if key not in _as_built:
        names = [table.name for table in tables.projection(generation).tables]
        meta = MetaData()
        meta.reflect(bind=connection, only=names)
        _as_built[key] = tables.Projection(generation, meta, *(meta.tables[name] for name in names))
    return _as_built[key]


def month_complaints(connection, month: str) -> list[dict]:
    c = live(connection).complaints
    rows = connection.execute(select(c).where(c.c.filed.is_(True), c.c.month == month)).mappings()
    return [decode_complaint(row) for row in rows]


def filed_complaints(connection, month: str | None = None) -> list[dict]:
    """Every filed complaint's row (of one month, ``YYYY-MM``, when given)."""
    c = live(connection).complaints
    query = select(c).where(c.c.filed.is_(True))
    if month is not None:
        query = query.where(c.c.month == month)
    return [decode_complaint(row) for row in connection.execute(query).mappings()]


def complaint_by_tracking_code(connection, tracking_code: str) -> tuple[dict, list[dict]] | None:
    projection = live(connection)
    c, a = projection.complaints, projection.answers
    row = connection.execute(
        select(c).where(c.c.tracking_code == tracking_code, c.c.filed.is_(True))).mappings().first()
    if row is None:
        return None
    answers = connection.execute(select(a).where(a.c.complaint_id == row["complaint_id"])
                                 .order_by(a.c.version)).mappings().all()
    return decode_complaint(row), [dict(answer) for answer in answers]


def agency_assignments(connection, agency_code: str) -> list[dict]:
    a = live(connection).assignments
    return [_assignment(row) for row in connection.execute(select(a).where(a.c.agency_code == agency_code)).mappings()]


def agency_names(connection) -> dict[str, str]:
    """Display names the events carried, per agency (the latest assignment's, if they differ)."""
    a = live(connection).assignments
    if "agency_name" not in a.c:
        return {}
    latest = func.max(a.c.assigned_at)
    query = (select(a.c.agency_code, a.c.agency_name, latest).where(a.c.agency_name.is_not(None))
             .group_by(a.c.agency_code, a.c.agency_name))
    ordered = sorted(connection.execute(query), key=lambda row: (row[2] or "", row[1]))
    return {code: name for code, name, _at in ordered}


def month_assignments(connection, month: str) -> list[dict]:
    projection = live(connection)
    a, c = projection.assignments, projection.complaints
    query = (select(a).join(c, c.c.complaint_id == a.c.complaint_id)
             .where(c.c.filed.is_(True), c.c.month == month))
    return [_assignment(row) for row in connection.execute(query).mappings()]


def trend_counts(connection, months: list[str]) -> list[dict]:
    c = live(connection).complaints
    query = (select(c.c.month, c.c.category, c.c.region_code, func.count().label("n"))
             .where(c.c.filed.is_(True), c.c.month.in_(months))
             .group_by(c.c.month, c.c.category, c.c.region_code))
    return [dict(row) for row in connection.execute(query).mappings()]


def open_complaints_with_deadline(connection) -> list[dict]:
    c = live(connection).complaints
    query = select(c).where(c.c.filed.is_(True), c.c.public_status.in_(OPEN_STATUSES),
                            c.c.next_due_at.is_not(None))
    return [decode_complaint(row) for row in connection.execute(query).mappings()]


# -- rebuilding --------------------------------------------------------------------------------
#: Facts written per transaction while reading the logs, complaints derived per transaction after.
FACT_CHUNK = 10_000
COMPLAINT_CHUNK = 2_000
#: Helper threads SQLite may use for the rebuild's sort (``PRAGMA threads``).
SORT_THREADS = 2



#: The facts' and the complaints' JSON columns are written as ``jsontext.dumps_sorted`` writes them,
#: on the live path and by the rebuild alike (equal values, equal text), and read by ``jsontext.loads``.
_encode_fact_data = _encode_sorted = jsontext.dumps_sorted
_decode_fact_data = jsontext.loads


_FACT_COLUMNS = ("source", "complaint_id", "version", "event_type", "occurred_at", "data")
#: The facts as phase 2 reads them: the complaint first, the order they are sorted in.
_FACT_READ_COLUMNS = ("complaint_id", "source", "version", "event_type", "occurred_at", "data")


class _BulkWriter:
    """Writes many rows of a generation's tables in one statement each: on SQLite straight
    through the driver (``executemany`` of a prepared INSERT, rows as tuples in the table's
    column order — the same values SQLAlchemy would bind), elsewhere through SQLAlchemy's own
    multi-row insert (PostgreSQL batches them in ``INSERT … VALUES`` pages)."""

    def __init__(self, connection):
        self.raw = connection.dialect.name == "sqlite"

    def write(self, connection, table, rows: list[tuple]) -> None:
        if not rows:
            return
        names = tuple(table.columns.keys())
        if self.raw:
            connection.exec_driver_sql(
                f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                rows)
        else:
            connection.execute(table.insert(), [dict(zip(names, row)) for row in rows])


def _tuple_maker(names: tuple[str, ...]):
    """row dict → tuple in ``names`` order, the JSON columns encoded as ``_complaint_row`` does."""
    get = itemgetter(*names)
    encoded = [index for index, name in enumerate(names) if name in _JSON_COLUMNS]
    if not encoded:
        return get

    def make(row: dict) -> tuple:
        values = list(get(row))
        for index in encoded:
            values[index] = _encode_sorted(values[index])
        return tuple(values)
    return make


@contextlib.contextmanager
def _collector_paused():
    """The cyclic garbage collector off while a rebuild runs (back on after, however it ends).
    A rebuild keeps tens of thousands of young containers alive at a time (a page of decoded
    envelopes, a chunk of rows), so the collector ran every few hundred of them and traversed
    them again and again: 15 % of a rebuild. What it builds holds no cycles — reference
    counting frees it — and whatever cycles the rest of the process makes meanwhile wait for
    the next collection. Nested pauses (two rebuilds at once) keep it off until the last ends."""
    global _PAUSES, _ENABLE_AFTER
    with _PAUSE_LOCK:
        if _PAUSES == 0:
            _ENABLE_AFTER = gc.isenabled()  # already off (a caller's choice): leave it off
            gc.disable()
        _PAUSES += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _PAUSES -= 1
            if _PAUSES == 0 and _ENABLE_AFTER:
                gc.enable()


_PAUSES, _ENABLE_AFTER = 0, False
_PAUSE_LOCK = threading.Lock()


def rebuild(database: Database, fetch: Fetch, checkpoints, processed, failures,
            sources: Iterable[str] = SOURCES, page: int = 1000, chunk: int = COMPLAINT_CHUNK,
            progress: dict | None = None, helper_reads: dict[str, str] | None = None) -> dict:
    """Fill generation n+1 from every source's log, switch to it in one transaction (with the
    consumer's checkpoints set to where the rebuild read up to), drop the old generation.

    Two passes, memory bounded by a chunk whatever the history's size: (1) each page read is
    checked (``_read``: the store's own envelopes as they are, plain JSON by ``fast_check``,
    else the catalogue) and its facts appended to a keyless staging table, a chunk per
    transaction, then copied into the facts table sorted by complaint by one set-based
    statement; (2) the facts are read back in that order, a complaint's rows derived from its
    facts (``projections.derive``, as the live path does), a chunk of complaints written per
    transaction. The new generation's rows are written without waiting for the disk
    (``Database.unsynced``): until the switch nothing reads them, and a power cut before it
    costs a rebuild again; the switch itself commits durably (and with it, on SQLite, the
    write-ahead log those writes are in). The live generation keeps serving meanwhile.

    ``helper_reads``: sources whose log a helper process may read in phase 1 beside this one
    (``_ReadHelper``), and how it reaches them (``rpc``, or a store's database URL)."""
    with _collector_paused():
        return _rebuild(database, fetch, checkpoints, processed, failures, list(sources), page, chunk,
                        progress if progress is not None else {}, helper_reads or {})


def _rebuild(database: Database, fetch: Fetch, checkpoints, processed, failures, sources: list[str],
             page: int, chunk: int, progress: dict, helper_reads: dict[str, str]) -> dict:
    started = time.monotonic()
    with database.read() as connection:
        old_generation = current_generation(connection)
    new = tables.projection(old_generation + 1)
    new.metadata.drop_all(database.engine)     # leftovers of an interrupted rebuild
    # The tables now, their secondary indexes once they are filled (building an index from the
    # rows is a sort; keeping it while rows arrive in random complaint order is not).
    with database.unsynced() as connection:
        for table in new.tables:
            connection.execute(CreateTable(table))

    def create_indexes(*filled) -> None:
        with database.unsynced() as connection:
            for table in filled:
                for index in sorted(table.indexes, key=lambda index: index.name):
                    index.create(connection)

    positions = {source: 0 for source in sources}
    events = skipped = facts_staged = 0
    progress.update(events=0, phase="reading")

    writer: _BulkWriter | None = None

    def write(rows_by_table: list[tuple], connection=None) -> None:
        nonlocal writer
        with _unsynced(database, connection) as tx:
            writer = writer or _BulkWriter(tx)
            for table, rows in rows_by_table:
                writer.write(tx, table, rows)
        time.sleep(0)  # let the live service answer between chunks (green under eventlet)

    # Facts arrive in log order, i.e. in random complaint order. They are appended to a
    # temporary table without keys (the connection's own: no write-ahead log, nothing synced,
    # gone with the connection), then copied from there sorted by complaint in one statement
    # (the database sorts): the facts table is written sequentially and lies in the order phase
    # 2 reads it, each complaint's facts together, so reading them is one sequential pass.
    staging = _staging(new.facts)
    with database.unsynced_engine.connect() as bulk:
        # A pooled connection keeps its temporary tables: one an interrupted rebuild left on it
        # goes first, and this one goes with the connection, closed however the reading ends
        # (closing drops it at once — SQLite deletes the file — where a DROP TABLE of a million
        # rows frees them page by page: 5 % of a rebuild).
        if bulk.dialect.name == "sqlite":
            # The sort below may use a helper thread of SQLite's own (the driver lets go of the
            # interpreter lock meanwhile): on two cores its sort took 3.8 s instead of 4.6 (1M).
            bulk.connection.dbapi_connection.execute(f"PRAGMA threads = {SORT_THREADS}")
        with _unsynced(database, bulk) as tx:
            tx.execute(DropTable(staging, if_exists=True))
            tx.execute(CreateTable(staging))
        # Phase 1 on two cores where it pays: a helper process reads the largest log (routing's)
        # while this one reads the others.
        reader = _ReadHelper.start(database, sources, positions, page, helper_reads)
        progress["read_helper"] = reader is not None
        try:
            buffer: list[tuple] = []

            def read_here(source: str) -> None:
                nonlocal buffer, events, skipped, facts_staged
                for batch in _pages(fetch, source, positions, page):
                    skipped += _facts_of_page(batch, source, buffer)
                    events += len(batch)
                    progress["events"] = events
                    if len(buffer) >= FACT_CHUNK:
                        facts_staged += len(buffer)
                        write([(staging, buffer)], bulk)
                        buffer = []

            for source in sources:
                if reader is None or source != reader.source:
                    read_here(source)
            result = None
            if reader is not None:
                try:
                    result = progress["read_helper_result"] = reader.finish()
                except RuntimeError as error:
                    # Its file is dropped; this process reads that log itself, as without a helper.
                    log.warning("rebuild: %s; reading %s's log here", error, reader.source)
                    progress["read_helper"] = False
                    reader.abandon()
                    read_here(reader.source)
                    reader = None
            facts_staged += len(buffer)
            write([(staging, buffer)], bulk)
            buffer = []
            sources_of_facts = [staging.name]
            if reader is not None and result is not None:
                log.info("rebuild: %s events of %s's log read by the helper process in %ss",
                         result["events"], reader.source, result.get("seconds"))
                events += result["events"]
                skipped += result["skipped"]
                facts_staged += result["facts"]
                positions[reader.source] = max(positions[reader.source], result["position"])
                progress["events"] = events
                # Attached outside a transaction (SQLite refuses otherwise); detached when this
                # connection is closed below.
                bulk.connection.dbapi_connection.execute("ATTACH DATABASE ? AS read_helper", (str(reader.out_path),))
                sources_of_facts.append(f"read_helper.{READ_HELPER_TABLE}")
            with _unsynced(database, bulk) as tx:
                columns = ", ".join(_FACT_COLUMNS)
                union = " UNION ALL ".join(f"SELECT {columns} FROM {name}" for name in sources_of_facts)
                tx.exec_driver_sql(f"INSERT INTO {new.facts.name} ({columns}) SELECT {columns} FROM ({union}) "
                                   "AS read_facts ORDER BY complaint_id, source, version")
        finally:
            bulk.invalidate()
            if reader is not None:
                reader.abandon()
    create_indexes(new.facts)  # phase 2 reads the facts in complaint order

    read_at = time.monotonic()
    progress.update(events=events, phase="writing", read_seconds=round(read_at - started, 3))
    # Phase 2 on two cores where it pays: a helper process derives the complaints from the
    # middle of the facts on, into a file of its own, while this one derives the first half.
    helper = _DeriveHelper.start(database, new, facts_staged, chunk)
    progress["derive_helper"] = helper is not None
    try:
        with database.read(streaming=True) as reader:
            for rows_by_table in _derived_chunks(new, _facts_in_complaint_order(
                    reader, new.facts, chunk * 5, before=helper.first if helper else None), chunk):
                write(rows_by_table)
        if helper is not None:
            progress["derive_helper_result"] = helper.finish()
    finally:
        if helper is not None:
            helper.abandon()
    create_indexes(new.complaints, new.assignments, new.answers)
    progress["derive_seconds"] = round(time.monotonic() - read_at, 3)

    # Events recorded while the bulk was written: read them now (no RPC inside a transaction),
    # apply them and switch in one transaction.
    tail = [(source, envelope) for source in sources
            for envelope in _pull(fetch, source, positions, page)]
    with database.transaction() as tx:
        for _source, envelope in tail:
            events += 1
            if envelope is None:
                skipped += 1
            else:
                apply_to(tx.connection, new, envelope)
        tx.execute(update(tables.projection_state).where(tables.projection_state.c.name == "live")
                   .values(generation=new.generation, rebuilt_at=isoformat_utc(utc_now()),
                           rebuilt_events=events, fingerprint=shape_fingerprint()))
        # From here the consumer continues where the rebuild stopped reading; whatever the old
        # generation handled after that is handled again, into the new one.
        tx.execute(delete(processed))
        tx.execute(delete(failures))
        now = isoformat_utc(utc_now())
        for source, position in positions.items():
            tx.execute(delete(checkpoints).where(checkpoints.c.source == source))
            tx.execute(checkpoints.insert().values(source=source, position=position, updated_at=now))
    drop_other_generations(database, new.generation)
    seconds = round(time.monotonic() - started, 3)
    log.info("projections rebuilt: generation %s, %s events (%s skipped) in %ss",
             new.generation, events, skipped, seconds)
    return {"events": events, "seconds": seconds, "generation": new.generation, "skipped": skipped}


def _staging(facts) -> Table:
    """A temporary keyless table with the facts table's columns, the rebuild's facts as they
    are read."""
    return Table(f"{facts.name}_staging", MetaData(),
                 *(Column(column.name, column.type, nullable=column.nullable) for column in facts.columns),
                 prefixes=["TEMPORARY"])


@contextlib.contextmanager
def _unsynced(database: Database, connection=None):
    """A transaction whose commit does not wait for the disk (``Database.unsynced``), on
    ``connection`` when given (the rebuild's temporary table lives on one connection)."""
    if connection is None:
        with database.unsynced() as tx:
            yield tx
        return
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        yield connection


#: The first key of the transaction-scoped advisory locks reporting takes per complaint on
#: PostgreSQL (``Derivations.derive``); the two-key form is a lock space of its own, apart from
#: the one-key locks of the event store and ``shared.core.exclusive``.
DERIVATION_LOCK_CLASS = 20_517

#: Facts from which a rebuild on SQLite derives the second half of the complaints in a helper
#: process (it starts in ≈0.3 s; at 100,000 events it already saved ≈0.4 s of 2.5).
DERIVE_HELPER_MIN_FACTS = 50_000
_ROOT = Path(__file__).resolve().parents[3]


#: The table of facts a rebuild's read helper writes into its file.
READ_HELPER_TABLE = "facts_read"


class _ReadHelper:
    """Part of phase 1 of a rebuild on two cores (SQLite): a process of its own (``read_helper``)
    reads one source's log — the largest of those ``helper_reads`` names: routing's, about two
    events in three — checks its events and writes their facts into a file of its own, while the
    rebuild reads the other logs; then the rebuild sorts both into the facts table with one
    statement. The helper reads as the service does (over RPC, with reporting's own broker
    settings) or, for the bench and tests, straight from the store's database. Python runs one
    thread at a time in a process, so a second process is what uses the second core. When the
    helper fails, the rebuild reads that log itself (a warning says why); one left behind is
    killed and its file removed."""

    PREFERRED = ("routing", "intake", "notification")

    def __init__(self, source: str, out_path: Path, process: subprocess.Popen):
        self.source, self.out_path, self.process = source, out_path, process

    @classmethod
    def start(cls, database: Database, sources: list[str], positions: dict, page: int,
              helper_reads: dict[str, str]) -> "_ReadHelper | None":
        path = database.engine.url.database
        source = next((name for name in cls.PREFERRED if name in sources and name in helper_reads), None)
        if database.dialect != "sqlite" or source is None or len(sources) < 2 or not path or path == ":memory:":
            return None
        out_path = Path(f"{path}.read-helper-{source}")
        _remove(out_path)
        process = _spawn_helper("read_helper", str(out_path), source, str(positions[source]), str(page),
                                helper_reads[source])
        return cls(source, out_path, process)

    def finish(self) -> dict:
        """Waits for the helper; what it reported (events, facts, skipped, the position read up
        to, its seconds and peak RSS)."""
        return _helper_report(self.process, "read helper")

    def abandon(self) -> None:
        _stop_helper(self.process, self.out_path)


class _DeriveHelper:
    """Phase 2 of a rebuild on two cores (SQLite): a process of its own
    (``derive_helper``) derives the complaints from ``first`` on — the complaint at the middle
    fact — into a file of its own, while the rebuild derives the ones before; then its rows are
    copied in by one ``INSERT … SELECT`` a table, which SQLite runs in C. Both halves go through
    ``_derived_chunks``: the same rules, the same rows. Python runs one thread at a time in a
    process, so a second process is what uses the second core; PostgreSQL rebuilds derive in
    one (its driver is greened under eventlet in the service). A helper that fails fails the
    rebuild (the live generation keeps serving); one left behind is killed and its file removed."""

    def __init__(self, database: Database, projection: tables.Projection, first: str, out_path: Path,
                 process: subprocess.Popen):
        self.database, self.projection, self.first = database, projection, first
        self.out_path, self.process = out_path, process

    @classmethod
    def start(cls, database: Database, projection: tables.Projection, facts: int,
              chunk: int) -> "_DeriveHelper | None":
        path = database.engine.url.database
        if database.dialect != "sqlite" or facts < DERIVE_HELPER_MIN_FACTS or not path or path == ":memory:":
            return None
        with database.read() as connection:
            first = connection.exec_driver_sql(
                f"SELECT complaint_id FROM {projection.facts.name} ORDER BY complaint_id LIMIT 1 OFFSET ?",
                (facts // 2,)).scalar()
        if first is None:
            return None
        out_path = Path(f"{path}.g{projection.generation}-derive-helper")
        _remove(out_path)
        process = _spawn_helper("derive_helper", str(path), str(projection.generation), first, str(out_path),
                                str(chunk))
        return cls(database, projection, first, out_path, process)

    def finish(self) -> dict:
        """Waits for the helper, copies its rows in; what it reported (complaints, seconds, its
        peak RSS)."""
        result = _helper_report(self.process, "derive helper")
        with self.database.unsynced_engine.connect() as connection:
            # Attached on a connection of its own, closed after (detaching with it).
            connection.connection.dbapi_connection.execute("ATTACH DATABASE ? AS derive_helper",
                                                           (str(self.out_path),))
            try:
                with _unsynced(self.database, connection) as tx:
                    for table in (self.projection.complaints, self.projection.assignments,
                                  self.projection.answers):
                        tx.exec_driver_sql(f"INSERT INTO {table.name} SELECT * FROM derive_helper.{table.name}")
            finally:
                connection.invalidate()
        return result

    def abandon(self) -> None:
        _stop_helper(self.process, self.out_path)


def _spawn_helper(module: str, *arguments: str) -> subprocess.Popen:
    """``python -m services.reporting.adapters.<module> <arguments>``: this interpreter and this
    environment, the project's root importable."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", f"services.reporting.adapters.{module}", *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=_ROOT, env=environment)


def _helper_report(process: subprocess.Popen, what: str) -> dict:
    """Waits for a rebuild's helper process; the JSON line it printed last, or RuntimeError with
    its exit code and the end of its error output."""
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the rebuild's {what} failed (exit {process.returncode}): "
                           f"{err.decode('utf-8', 'replace')[-2000:]}")
    result: dict = json.loads(out.decode("utf-8").strip().splitlines()[-1])
    return result


def _stop_helper(process: subprocess.Popen, out_path: Path) -> None:
    """A helper still running is killed; its file goes."""
    if process.poll() is None:
        process.kill()
        process.wait()
    _remove(out_path)


def _remove(path: Path) -> None:
    for leftover in (path, Path(f"{path}-journal")):
        leftover.unlink(missing_ok=True)


def _facts_in_complaint_order(reader, facts, size: int, before: str | None = None):
    """Every fact row (``_FACT_READ_COLUMNS``) of the complaints before ``before`` (None: all),
    ordered by complaint, in lists of ``size``; on SQLite straight from the driver's cursor,
    elsewhere streamed by SQLAlchemy (the derive helper reads the rest: ``_sqlite_fact_rows``)."""
    if reader.dialect.name == "sqlite":
        yield from _sqlite_fact_rows(reader.connection.dbapi_connection, facts.name, size, None, before)
        return
    query = select(*(facts.c[name] for name in _FACT_READ_COLUMNS)).order_by(facts.c.complaint_id)
    if before is not None:
        query = query.where(facts.c.complaint_id < before)
    yield from reader.execution_options(stream_results=True, yield_per=size).execute(query).partitions()


def _sqlite_fact_rows(dbapi_connection, facts_name: str, size: int, first: str | None, before: str | None):
    bounds, parameters = [], []
    if first is not None:
        bounds.append("complaint_id >= ?"), parameters.append(first)
    if before is not None:
        bounds.append("complaint_id < ?"), parameters.append(before)
    where = f" WHERE {' AND '.join(bounds)}" if bounds else ""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"SELECT {', '.join(_FACT_READ_COLUMNS)} FROM {facts_name}{where} ORDER BY complaint_id",
                       parameters)
        while True:
            rows = cursor.fetchmany(size)
            if not rows:
                return
            yield rows
    finally:
        cursor.close()


def _derived_chunks(projection: tables.Projection, partitions, chunk: int):
    """``[(table, rows)]`` of a chunk of complaints at a time — the complaints', assignments' and
    answers' rows (tuples in column order) that ``derive`` makes of their facts, ordered by
    complaint (``partitions``: ``_facts_in_complaint_order``)."""
    complaint_tuple = _tuple_maker(tuple(projection.complaints.columns.keys()))
    assignment_tuple = _tuple_maker(tuple(projection.assignments.columns.keys()))
    answer_tuple = _tuple_maker(tuple(projection.answers.columns.keys()))
    complaints: list[tuple] = []
    assignments: list[tuple] = []
    answers: list[tuple] = []
    for complaint_id, facts in _complaints_in_order(partitions):
        rows = derive(complaint_id, facts)
        complaints.append(complaint_tuple(rows["complaint"]))
        if rows["assignments"]:
            assignments.extend(map(assignment_tuple, rows["assignments"]))
        if rows["answers"]:
            answers.extend(map(answer_tuple, rows["answers"]))
        if len(complaints) >= chunk:
            yield [(projection.complaints, complaints), (projection.assignments, assignments),
                   (projection.answers, answers)]
            complaints, assignments, answers = [], [], []
    if complaints:
        yield [(projection.complaints, complaints), (projection.assignments, assignments),
               (projection.answers, answers)]


def _complaints_in_order(partitions):
    """(complaint id, its facts as ``derive`` takes them) for fact rows ordered by complaint.
    The data of facts ``derive`` only counts is not decoded (``DATA_UNUSED``)."""
    loads, unused = _decode_fact_data, DATA_UNUSED
    current_id, current = None, []
    for partition in partitions:
        for complaint_id, source, version, event_type, occurred_at, data in partition:
            if complaint_id != current_id:
                if current_id is not None:
                    yield current_id, current
                current_id, current = complaint_id, []
            current.append({"source": source, "complaint_id": complaint_id, "version": version,
                            "event_type": event_type, "occurred_at": occurred_at,
                            "data": {} if event_type in unused else loads(data)})
    if current_id is not None:
        yield current_id, current


def _read(raw, source: str):
    """The envelope at its type's latest version, or None when the catalogue rejects it. The
    store's own envelopes read in this process (``StoredEnvelope``) were validated when the
    store appended them; a plain JSON object (an RPC reply) the quick check accepts is the
    catalogue's verdict already (``fast_check``); anything else is checked and lifted as the
    consumer does."""
    if type(raw) is StoredEnvelope and raw["source"] == source and is_current(raw):
        return raw
    if type(raw) is dict and fast_check.accepts(raw, source):
        return raw
    try:
        return upcast(validate_envelope(raw, expected_source=source))
    except (InvalidEvent, NeedsHistory):
        return None


def _facts_of_page(batch: list, source: str, out: list[tuple]) -> int:
    """Appends the fact rows of a page's events to ``out`` (as ``_fact_row`` makes them, in the
    facts table's column order); returns how many events were invalid (skipped)."""
    bad = 0
    append, encode, read, latest = out.append, _encode_fact_data, _read, LATEST_VERSION
    for raw in batch:
        # The store's own envelopes at their latest version, inline (``_read`` says the same).
        if not (type(raw) is StoredEnvelope and raw["source"] == source
                and raw["schema_version"] >= latest.get(raw["event_type"], 0)):
            raw = read(raw, source)
            if raw is None:
                bad += 1
                continue
        envelope = raw
        event_type = envelope["event_type"]
        data = fact_data(event_type, envelope["data"])
        if data is not None:
            append((envelope["source"], envelope["complaint_id"], int(envelope["version"]), event_type,
                    envelope["occurred_at"], encode(data)))
    return bad


def page_end(batch: list, after: int) -> int:
    """Where the next page of a source's log starts: the highest position a page read after
    ``after`` carries (``after`` for a page without one)."""
    return max((raw["position"] for raw in batch if isinstance(raw, dict) and isinstance(raw.get("position"), int)),
               default=after)


def _pages(fetch: Fetch, source: str, positions: dict, page: int):
    """Yields the pages of a source's log after positions[source], advancing it."""
    while True:
        batch = fetch(source, positions[source], page)
        positions[source] = max(positions[source], page_end(batch, positions[source]))
        if batch:
            yield batch
        if len(batch) < page:
            return


def _pull(fetch: Fetch, source: str, positions: dict, page: int):
    """Yields validated envelopes at their type's latest version (None for an invalid one) after
    positions[source], advancing it."""
    for batch in _pages(fetch, source, positions, page):
        for raw in batch:
            yield _read(raw, source)


def drop_other_generations(database: Database, keep: int) -> None:
    names = inspect(database.engine).get_table_names()
    for generation in sorted({int(name.rsplit("_g", 1)[1]) for name in names
                              if name.startswith("complaints_g") and name.rsplit("_g", 1)[1].isdigit()}):
        if generation == keep:
            continue
        try:
            tables.projection(generation).metadata.drop_all(database.engine)
        except Exception as error:  # a reader still on it: the next rebuild drops it
            log.warning("could not drop projection generation %s: %s", generation, error)


def find_complaints(connection, tracking_codes=None, category=None, filed_from=None, filed_to=None,
                    open_only=None, limit: int = 200) -> list[tuple[dict, list[dict]]]:
    """Complaints for Open311's ``GET requests``: newest first, with their answers."""
    projection = live(connection)
    c, a = projection.complaints, projection.answers
    query = select(c).where(c.c.filed.is_(True))
    if tracking_codes:
        query = query.where(c.c.tracking_code.in_(list(tracking_codes)))
    if category:
        query = query.where(c.c.category == category)
    if filed_from:
        query = query.where(c.c.filed_at >= filed_from)
    if filed_to:
        query = query.where(c.c.filed_at <= filed_to)
    if open_only is True:
        query = query.where(c.c.public_status.in_(OPEN_STATUSES))
    elif open_only is False:
        query = query.where(c.c.public_status.in_(CLOSED_STATUSES))
    rows = connection.execute(query.order_by(c.c.filed_at.desc()).limit(limit)).mappings().all()
    found = []
    for row in rows:
        answers = connection.execute(select(a).where(a.c.complaint_id == row["complaint_id"])
                                     .order_by(a.c.version)).mappings().all()
        found.append((decode_complaint(row), [dict(answer) for answer in answers]))
    return found
