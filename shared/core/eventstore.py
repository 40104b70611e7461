"""The append-only event store every emitting service keeps in its own database.

Envelope columns follow the design. ``position`` is gap-free and in commit order: it is taken as
``max + 1`` while holding the one lock every appender of the database takes — SQLite's write lock
(``BEGIN IMMEDIATE``), and on PostgreSQL a transaction-scoped advisory lock
(``pg_advisory_xact_lock``) — so a rolled-back transaction never leaves a hole the way a sequence
would, and the next appender reads ``max`` only after the previous one has committed and become
visible (PostgreSQL releases a transaction's locks after its commit is visible), so a reader never
sees position N+1 before N. The advisory lock serialises appenders only: unlike the table lock it
replaces, it does not conflict with readers, vacuum or anything else touching the table.
``(complaint_id, version)`` is unique: two writers that read the same version of a complaint
cannot both append (optimistic concurrency). An ``outbox`` row is written with every event in
the same transaction; the relay deletes it once the broker confirmed the publish, so the events
table itself is never updated.

The append path runs SQL compiled once per dialect (``_Statements``): a single-event append is
one statement for the lock, the head position and the complaint's version, and one for the event
and outbox rows (PostgreSQL: both in one round trip; SQLite: in-process calls). Rows read back are
``StoredEnvelope`` dicts: the store validated them when it appended them, so a consumer in the
same process need not validate them again (``shared.core.events.envelope``).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import (BigInteger, Column, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, bindparam, func, select)
from sqlalchemy.engine import Connection, Dialect, RowMapping
from sqlalchemy.exc import IntegrityError

from shared.core.db import execute_driver
from shared.core.events import isoformat_utc, utc_now, validate_data
from shared.core.events.catalogue import LATEST_VERSION, SOURCES, InvalidEvent, is_current, upcast
from shared.core.events.envelope import Envelope, StoredEnvelope
from shared.core.jsontext import dumps, loads

MAX_PAGE = 1000
#: Most (position, event id) pairs ``event_ids_since`` answers at once.
MAX_ID_PAGE = 10000
#: Events per multi-row INSERT when a transaction appends many on PostgreSQL.
INSERT_PAGE = 200

#: The key of the transaction-scoped advisory lock every appender takes on PostgreSQL. Advisory
#: locks are per database, and each service has a database of its own, so one constant suffices
#: ("NTBevent" in ASCII, as a signed 64-bit integer).
APPEND_LOCK_KEY = 0x4E54426576656E74

_EVENT_COLUMNS = ("position", "event_id", "event_type", "schema_version", "source", "complaint_id",
                  "version", "occurred_at", "data")


def _envelope_of_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """An ``events`` row in ``_EVENT_COLUMNS`` order as its envelope (what ``EventStore._to_dict``
    makes of a mapping of the same row)."""
    position, event_id, event_type, schema_version, source, complaint_id, version, occurred_at, data = row
    return StoredEnvelope(position=int(position), event_id=event_id, event_type=event_type,
                          schema_version=schema_version, source=source, complaint_id=complaint_id,
                          version=version, occurred_at=occurred_at, data=loads(data))


class ConcurrencyError(RuntimeError):
    """The complaint changed since it was read: reload and decide again."""


@dataclass
class PendingEvent:
    """An event a unit of work wants to record; the store fills in the envelope."""

    event_type: str
    complaint_id: str
    data: dict[str, Any]
    expected_version: int | None = None
    schema_version: int | None = None
    occurred_at: datetime | None = None
    event_id: str | None = None


def event_tables(metadata: MetaData) -> tuple[Table, Table]:
    if "events" in metadata.tables:  # the store may be built twice on one metadata (tools, tests)
        return metadata.tables["events"], metadata.tables["outbox"]
    events = Table(
        "events", metadata,
        Column("position", BigInteger, primary_key=True, autoincrement=False),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("event_type", String(64), nullable=False),
        Column("schema_version", Integer, nullable=False),
        Column("source", String(32), nullable=False),
        Column("complaint_id", String(36), nullable=False),
        Column("version", Integer, nullable=False),
        Column("occurred_at", String(40), nullable=False),
        Column("data", Text, nullable=False),
        UniqueConstraint("complaint_id", "version", name="uq_events_complaint_version"),
    )
    outbox = Table(
        "outbox", metadata,
        Column("position", BigInteger, primary_key=True, autoincrement=False),
    )
    return events, outbox


class _Statements:
    """The hot paths' SQL for one dialect, written once (no statement building, no cache-key
    computation per call). Positional parameters in the driver's own style."""

    def __init__(self, dialect: Dialect, events: Table, outbox: Table):
        self.postgresql = dialect.name == "postgresql"
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        ev, ob = events.name, outbox.name
        lock = f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY}); " if self.postgresql else ""
        last = f"SELECT coalesce(max(position), 0) FROM {ev}"
        version = f"SELECT coalesce(max(version), 0) FROM {ev} WHERE complaint_id = {mark}"
        self.last_position = last
        self.current_version = version
        # On PostgreSQL the lock and the read travel in one round trip as two statements: each
        # statement of a simple query takes its own snapshot (READ COMMITTED), so the read sees
        # every append committed before the lock was granted.
        self.head = lock + last
        self.head_one = f"{lock}SELECT ({last}), ({version})"
        self.insert_events = (f"INSERT INTO {ev} ({', '.join(_EVENT_COLUMNS)}) "
                              f"VALUES ({', '.join([mark] * len(_EVENT_COLUMNS))})")
        self.insert_outbox = f"INSERT INTO {ob} (position) VALUES ({mark})"
        # The relay's read of what is still to publish, oldest first (columns in _EVENT_COLUMNS' order).
        self.unpublished = (f"SELECT {', '.join('e.' + column for column in _EVENT_COLUMNS)} FROM {ev} e "
                            f"JOIN {ob} o ON o.position = e.position ORDER BY e.position LIMIT {mark}")
        self.since = (f"SELECT {', '.join(_EVENT_COLUMNS)} FROM {ev} WHERE position > {mark} "
                      f"ORDER BY position LIMIT {mark}")
        self.ids_since = f"SELECT position, event_id FROM {ev} WHERE position > {mark} ORDER BY position LIMIT {mark}"
        self.delete_outbox_one = f"DELETE FROM {ob} WHERE position = {mark}"
        self.delete_outbox_any = f"DELETE FROM {ob} WHERE position = ANY({mark})"   # PostgreSQL: a list
        # PostgreSQL, on a connection in autocommit: the delete in a transaction of its own that
        # does not wait for its commit to reach the disk, the four statements in one round trip.
        self.delete_outbox_unsynced = (f"BEGIN; SET LOCAL synchronous_commit TO OFF; "
                                       f"{self.delete_outbox_any}; COMMIT")
        # One event on PostgreSQL: both rows in one round trip.
        self.insert_one = f"{self.insert_events}; {self.insert_outbox}" if self.postgresql else None
        self._mark, self._events_name, self._outbox_name = mark, ev, ob
        self._pages: dict[int, str] = {}

    def insert_page(self, rows: int) -> str:
        """PostgreSQL: ``rows`` events and their outbox rows as two multi-row INSERTs in one round
        trip (psycopg2's ``executemany`` sends one statement per row)."""
        statement = self._pages.get(rows)
        if statement is None:
            one = "(" + ", ".join([self._mark] * len(_EVENT_COLUMNS)) + ")"
            statement = self._pages[rows] = (
                f"INSERT INTO {self._events_name} ({', '.join(_EVENT_COLUMNS)}) VALUES "
                + ", ".join([one] * rows)
                + f"; INSERT INTO {self._outbox_name} (position) VALUES "
                + ", ".join([f"({self._mark})"] * rows))
        return statement


class EventStore:
    def __init__(self, source: str, metadata: MetaData):
        self.source = source
        self.events, self.outbox = event_tables(metadata)
        # What leaves the store (``events_since``, the relay) is at each type's latest version.
        # Stateless upcasters run here; a source whose upcasters need a complaint's history sets
        # ``lift_old(connection, events) -> events`` (routing does).
        self.lift_old: Callable[[Connection, list[dict[str, Any]]], list[dict[str, Any]]] | None = None
        self._statements: dict[str, _Statements] = {}
        # Statements built once; SQLAlchemy caches their compiled form per engine.
        events, outbox = self.events, self.outbox
        self._versions_of = (
            select(events.c.complaint_id, func.max(events.c.version))
            .where(events.c.complaint_id.in_(bindparam("ids", expanding=True)))
            .group_by(events.c.complaint_id))
        self._for = (select(events).where(events.c.complaint_id == bindparam("complaint_id"))
                     .order_by(events.c.version))
        self._outbox_size = select(func.count()).select_from(outbox)

    def _sql(self, connection: Connection) -> _Statements:
        dialect = connection.dialect
        statements = self._statements.get(dialect.name)
        if statements is None:
            statements = self._statements[dialect.name] = _Statements(dialect, self.events, self.outbox)
        return statements

    # -- writing ---------------------------------------------------------------------------
    def append(self, connection: Connection, pending: Iterable[PendingEvent]) -> list[Envelope]:
        pending = list(pending)
        if not pending:
            return []
        for item in pending:
            owner = SOURCES.get(item.event_type)
            if owner != self.source:
                raise InvalidEvent(f"{self.source} cannot record {item.event_type} (owner: {owner})")
            validate_data(item.event_type, item.schema_version or LATEST_VERSION[item.event_type],
                          item.data)
        sql = self._sql(connection)
        complaint_ids = {item.complaint_id for item in pending}
        if len(complaint_ids) == 1:  # the everyday case: lock, head and version in one go
            complaint_id = pending[0].complaint_id
            position, current = execute_driver(connection, sql.head_one, (complaint_id,)).fetchone()
            versions = {complaint_id: int(current)}
        else:
            position = execute_driver(connection, sql.head).fetchone()[0]
            versions = self.current_versions(connection, complaint_ids)
        position = int(position)
        rows, envelopes = [], []
        source = self.source
        for item in pending:
            current = versions[item.complaint_id]
            if item.expected_version is not None and item.expected_version != current:
                raise ConcurrencyError(
                    f"complaint {item.complaint_id} is at version {current}, "
                    f"expected {item.expected_version}")
            position += 1
            versions[item.complaint_id] = current + 1
            occurred_at = isoformat_utc(item.occurred_at or utc_now())
            envelope = Envelope(
                event_id=item.event_id or str(uuid.uuid4()),
                event_type=item.event_type,
                schema_version=item.schema_version or LATEST_VERSION[item.event_type],
                source=source,
                position=position,
                complaint_id=item.complaint_id,
                version=current + 1,
                occurred_at=occurred_at,
                data=item.data,
            )
            envelopes.append(envelope)
            rows.append((position, envelope.event_id, envelope.event_type, envelope.schema_version,
                         source, envelope.complaint_id, envelope.version, occurred_at,
                         dumps(envelope.data)))
        try:
            if len(rows) == 1 and sql.insert_one is not None:
                execute_driver(connection, sql.insert_one, rows[0] + (rows[0][0],))
            elif sql.postgresql:  # a batch: pages of multi-row VALUES, one round trip each
                for start in range(0, len(rows), INSERT_PAGE):
                    page = rows[start:start + INSERT_PAGE]
                    parameters = [value for row in page for value in row] + [row[0] for row in page]
                    execute_driver(connection, sql.insert_page(len(page)), parameters)
            else:
                execute_driver(connection, sql.insert_events, rows, many=True)
                execute_driver(connection, sql.insert_outbox, [(row[0],) for row in rows], many=True)
        except IntegrityError as error:
            raise ConcurrencyError(f"concurrent append rejected: {error.orig}") from None
        return envelopes

    # -- reading ---------------------------------------------------------------------------
    def current_version(self, connection: Connection, complaint_id: str) -> int:
        return int(execute_driver(connection, self._sql(connection).current_version,
                                  (complaint_id,)).fetchone()[0])

    def current_versions(self, connection: Connection, complaint_ids: Iterable[str]) -> dict[str, int]:
        """The current version of each complaint (0 when it has none), in one query per 500 ids
        instead of one per complaint: a large append is dominated by these look-ups otherwise."""
        ids = list(complaint_ids)
        if len(ids) == 1:
            return {ids[0]: self.current_version(connection, ids[0])}
        versions = dict.fromkeys(ids, 0)
        for start in range(0, len(ids), 500):
            rows = connection.execute(self._versions_of, {"ids": ids[start:start + 500]})
            for complaint_id, version in rows:
                versions[complaint_id] = int(version)
        return versions

    def last_position(self, connection: Connection) -> int:
        return int(execute_driver(connection, self._sql(connection).last_position).fetchone()[0])

    def events_since(self, connection: Connection, position: int, limit: int = MAX_PAGE) -> list[dict[str, Any]]:
        """Up to ``limit`` (at most MAX_PAGE) envelopes after ``position``, ascending: straight from
        the driver, each row made into its envelope at once (a rebuild reads every log this way;
        SQLAlchemy's result rows and mappings were a third of what a page cost)."""
        position, limit = int(position), max(0, min(int(limit), MAX_PAGE))
        rows = execute_driver(connection, self._sql(connection).since, (position, limit)).fetchall()
        return self._current(connection, [_envelope_of_row(row) for row in rows])

    def event_ids_since(self, connection: Connection, position: int, limit: int = MAX_ID_PAGE) -> list[list[Any]]:
        """``[position, event_id]`` of each event after ``position``, ascending, at most
        min(limit, MAX_ID_PAGE): what a consumer needs to check the events it was pushed against
        this log, without the envelopes."""
        position, limit = int(position), max(0, min(int(limit), MAX_ID_PAGE))
        rows = execute_driver(connection, self._sql(connection).ids_since, (position, limit)).fetchall()
        return [[int(row[0]), str(row[1])] for row in rows]

    def events_for(self, connection: Connection, complaint_id: str) -> list[dict[str, Any]]:
        rows = connection.execute(self._for, {"complaint_id": complaint_id}).mappings()
        return [self._to_dict(row) for row in rows]

    def unpublished(self, connection: Connection, limit: int = 500) -> list[dict[str, Any]]:
        """Events still in the outbox, oldest first (the relay reads this every round: straight
        from the driver, rows zipped into envelopes)."""
        rows = execute_driver(connection, self._sql(connection).unpublished, (int(limit),)).fetchall()
        return self._current(connection, [self._to_dict(dict(zip(_EVENT_COLUMNS, row))) for row in rows])

    def _current(self, connection: Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if all(is_current(event) for event in events):
            return events  # the everyday case: nothing recorded before an upgrade
        if self.lift_old is not None:
            return self.lift_old(connection, events)
        return [event if is_current(event) else upcast(event) for event in events]

    def mark_published(self, connection: Connection, positions: list[int], unsynced: bool = False) -> None:
        """Drop the outbox rows of published events: one statement for all of them, straight to
        the driver (the relay runs this after every publish round; building the DELETE was most
        of its cost). ``unsynced`` (PostgreSQL, ``connection`` in autocommit — the relay's lock
        session): in a transaction of its own with ``synchronous_commit`` off, sent as one round
        trip; elsewhere the caller's transaction decides (``Database.unsynced``)."""
        if not positions:
            return
        statements = self._sql(connection)
        if statements.postgresql:
            delete = statements.delete_outbox_unsynced if unsynced else statements.delete_outbox_any
            execute_driver(connection, delete, ([int(p) for p in positions],))
        else:
            execute_driver(connection, statements.delete_outbox_one, [(int(p),) for p in positions], many=True)

    def outbox_size(self, connection: Connection) -> int:
        return connection.execute(self._outbox_size).scalar_one()

    @staticmethod
    def _to_dict(row: RowMapping | Mapping[str, Any]) -> dict[str, Any]:
        # A StoredEnvelope: validated when it was appended, so not validated again in-process.
        envelope = StoredEnvelope(row)
        envelope["data"] = loads(envelope["data"])
        envelope["position"] = int(envelope["position"])
        return envelope
