"""The append-only event store every emitting service keeps in its own database.

Envelope columns follow the design. ``position`` is gap-free: it is taken as ``max + 1`` while
holding the table's write lock (SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL an explicit
``LOCK TABLE``), so a rolled-back transaction never leaves a hole the way a sequence would.
``(complaint_id, version)`` is unique: two writers that read the same version of a complaint
cannot both append (optimistic concurrency). An ``outbox`` row is written with every event in
the same transaction; the relay deletes it once the broker confirmed the publish, so the events
table itself is never updated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

from sqlalchemy import (BigInteger, Column, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, func, select, text)
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from shared.core.events import Envelope, isoformat_utc, new_envelope, utc_now, validate_data
from shared.core.events.catalogue import LATEST_VERSION, SOURCES, InvalidEvent, is_current, upcast

MAX_PAGE = 1000


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


class EventStore:
    def __init__(self, source: str, metadata: MetaData):
        self.source = source
        self.events, self.outbox = event_tables(metadata)
        # What leaves the store (``events_since``, the relay) is at each type's latest version.
        # Stateless upcasters run here; a source whose upcasters need a complaint's history sets
        # ``lift_old(connection, events) -> events`` (routing does).
        self.lift_old: Callable[[Connection, list[dict[str, Any]]], list[dict[str, Any]]] | None = None

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
        if connection.dialect.name == "postgresql":
            # Serialises appenders (readers are not blocked) so positions stay gap-free.
            connection.execute(text(f"LOCK TABLE {self.events.name} IN SHARE ROW EXCLUSIVE MODE"))
        position = connection.execute(
            select(func.coalesce(func.max(self.events.c.position), 0))).scalar_one()
        versions = self.current_versions(connection, {item.complaint_id for item in pending})
        rows, envelopes = [], []
        for item in pending:
            current = versions[item.complaint_id]
            if item.expected_version is not None and item.expected_version != current:
                raise ConcurrencyError(
                    f"complaint {item.complaint_id} is at version {current}, "
                    f"expected {item.expected_version}")
            position += 1
            versions[item.complaint_id] = current + 1
            envelope = new_envelope(
                event_id=item.event_id or _uuid4(),
                event_type=item.event_type,
                schema_version=item.schema_version or LATEST_VERSION[item.event_type],
                source=self.source,
                position=position,
                complaint_id=item.complaint_id,
                version=current + 1,
                occurred_at=isoformat_utc(item.occurred_at or utc_now()),
                data=item.data,
            )
            envelopes.append(envelope)
            rows.append({"position": position, "event_id": envelope.event_id,
                         "event_type": envelope.event_type, "schema_version": envelope.schema_version,
                         "source": self.source, "complaint_id": envelope.complaint_id,
                         "version": envelope.version, "occurred_at": envelope.occurred_at,
                         "data": json.dumps(envelope.data, ensure_ascii=False, separators=(",", ":"))})
        try:
            connection.execute(self.events.insert(), rows)
        except IntegrityError as error:
            raise ConcurrencyError(f"concurrent append rejected: {error.orig}") from None
        connection.execute(self.outbox.insert(), [{"position": r["position"]} for r in rows])
        return envelopes

    # -- reading ---------------------------------------------------------------------------
    def current_version(self, connection: Connection, complaint_id: str) -> int:
        version: int = connection.execute(
            select(func.coalesce(func.max(self.events.c.version), 0))
            .where(self.events.c.complaint_id == complaint_id)).scalar_one()
        return version

    def current_versions(self, connection: Connection, complaint_ids: Iterable[str]) -> dict[str, int]:
        """The current version of each complaint (0 when it has none), in one query per 500 ids
        instead of one per complaint: a large append is dominated by these look-ups otherwise."""
        ids = list(complaint_ids)
        if len(ids) == 1:
            return {ids[0]: self.current_version(connection, ids[0])}
        versions = dict.fromkeys(ids, 0)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = connection.execute(
                select(self.events.c.complaint_id, func.max(self.events.c.version))
                .where(self.events.c.complaint_id.in_(chunk))
                .group_by(self.events.c.complaint_id))
            for complaint_id, version in rows:
                versions[complaint_id] = int(version)
        return versions

    def last_position(self, connection: Connection) -> int:
        position: int = connection.execute(
            select(func.coalesce(func.max(self.events.c.position), 0))).scalar_one()
        return position

    def events_since(self, connection: Connection, position: int, limit: int = MAX_PAGE) -> list[dict[str, Any]]:
        position, limit = int(position), max(0, min(int(limit), MAX_PAGE))
        rows = connection.execute(
            select(self.events).where(self.events.c.position > position)
            .order_by(self.events.c.position).limit(limit)).mappings()
        return self._current(connection, [self._to_dict(row) for row in rows])

    def events_for(self, connection: Connection, complaint_id: str) -> list[dict[str, Any]]:
        rows = connection.execute(
            select(self.events).where(self.events.c.complaint_id == complaint_id)
            .order_by(self.events.c.version)).mappings()
        return [self._to_dict(row) for row in rows]

    def unpublished(self, connection: Connection, limit: int = 500) -> list[dict[str, Any]]:
        rows = connection.execute(
            select(self.events).join(self.outbox, self.outbox.c.position == self.events.c.position)
            .order_by(self.events.c.position).limit(limit)).mappings()
        return self._current(connection, [self._to_dict(row) for row in rows])

    def _current(self, connection: Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if all(is_current(event) for event in events):
            return events  # the everyday case: nothing recorded before an upgrade
        if self.lift_old is not None:
            return self.lift_old(connection, events)
        return [event if is_current(event) else upcast(event) for event in events]

    def mark_published(self, connection: Connection, positions: list[int]) -> None:
        if positions:
            connection.execute(self.outbox.delete().where(self.outbox.c.position.in_(positions)))

    def outbox_size(self, connection: Connection) -> int:
        return connection.execute(select(func.count()).select_from(self.outbox)).scalar_one()

    @staticmethod
    def _to_dict(row: RowMapping) -> dict[str, Any]:
        envelope = dict(row)
        envelope["data"] = json.loads(envelope["data"])
        envelope["position"] = int(envelope["position"])
        return envelope


def _uuid4() -> str:
    import uuid
    return str(uuid.uuid4())
