"""The gateway's own database: the feed log its relay publishes outside readers' feeds from.

``feed_items`` is append-only, one row per item for one reader, with a gap-free ``position``
(the relay's order) and a gap-free ``reader_position`` per reader (the order a reader sees, so it
can tell a gap); ``feed_outbox`` lists the items not yet confirmed by the broker, as the services'
event store does for their events (``shared/core/eventstore.py``). ``feed_follows`` remembers which
complaints a reader has, so the event that takes one away still reaches it. The consumer tables
(checkpoints, processed events, quarantine) come from ``shared.core.store.ServiceStore``."""
from __future__ import annotations

import json
from typing import Any, Iterable

from sqlalchemy import (BigInteger, Column, Integer, MetaData, String, Table, Text, UniqueConstraint, delete,
                        func, select, text)
from sqlalchemy.engine import Connection

from shared.core.events import isoformat_utc, utc_now
from services.gateway.domain.feed import FeedItem

metadata = MetaData()

feed_items = Table(
    "feed_items", metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("item_id", String(36), nullable=False, unique=True),
    Column("reader", String(64), nullable=False),
    Column("reader_position", BigInteger, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("complaint_id", String(36), nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("reader", "reader_position", name="uq_feed_items_reader_position"),
)

feed_outbox = Table(
    "feed_outbox", metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
)

feed_follows = Table(
    "feed_follows", metadata,
    Column("reader", String(64), primary_key=True),
    Column("complaint_id", String(36), primary_key=True),
    # The routing version of the last event that left the complaint with the reader's agencies:
    # an older event arriving late (events come per type, out of order) does not end the follow.
    Column("version", Integer, nullable=False),
)


class FeedLog:
    """Appends items and hands the relay what is unpublished (the event store's interface)."""

    def followed(self, connection: Connection, reader: str, complaint_id: str) -> int | None:
        """The routing version up to which ``reader`` has the complaint, or None."""
        return connection.execute(select(feed_follows.c.version).where(
            feed_follows.c.reader == reader, feed_follows.c.complaint_id == complaint_id)).scalar()

    def follow(self, connection: Connection, reader: str, complaint_id: str, version: int,
               follows: bool) -> None:
        known = self.followed(connection, reader, complaint_id)
        if follows:
            if known is None:
                connection.execute(feed_follows.insert().values(reader=reader, complaint_id=complaint_id,
                                                                version=version))
            elif version > known:
                connection.execute(feed_follows.update().where(
                    feed_follows.c.reader == reader, feed_follows.c.complaint_id == complaint_id)
                    .values(version=version))
        elif known is not None and version > known:
            connection.execute(delete(feed_follows).where(
                feed_follows.c.reader == reader, feed_follows.c.complaint_id == complaint_id))

    def append(self, connection: Connection, items: Iterable[FeedItem]) -> int:
        """Record items (and their outbox rows) in the caller's transaction; returns how many."""
        items = list(items)
        if not items:
            return 0
        if connection.dialect.name == "postgresql":
            # Serialises appenders so both positions stay gap-free (as the event store does).
            connection.execute(text("LOCK TABLE feed_items IN SHARE ROW EXCLUSIVE MODE"))
        position = connection.execute(select(func.coalesce(func.max(feed_items.c.position), 0))).scalar_one()
        for item in items:
            position += 1
            reader_position = connection.execute(
                select(func.coalesce(func.max(feed_items.c.reader_position), 0))
                .where(feed_items.c.reader == item.reader)).scalar_one() + 1
            body = {"feed_item_id": item.item_id, "position": reader_position, **item.body}
            connection.execute(feed_items.insert().values(
                position=position, item_id=item.item_id, reader=item.reader, reader_position=reader_position,
                event_type=item.event_type, complaint_id=item.complaint_id,
                recorded_at=isoformat_utc(utc_now()),
                body=json.dumps(body, ensure_ascii=False, separators=(",", ":"))))
            connection.execute(feed_outbox.insert().values(position=position))
        return len(items)

    def unpublished(self, connection: Connection, limit: int = 500) -> list[dict[str, Any]]:
        rows = connection.execute(
            select(feed_items).join(feed_outbox, feed_outbox.c.position == feed_items.c.position)
            .order_by(feed_items.c.position).limit(limit)).mappings()
        return [{"position": int(row["position"]), "event_id": row["item_id"], "event_type": row["event_type"],
                 "reader": row["reader"], "body": json.loads(row["body"])} for row in rows]

    def mark_published(self, connection: Connection, positions: list[int], unsynced: bool = False) -> None:
        """``unsynced`` as ``EventStore.mark_published`` takes it; here the delete simply commits
        with the connection (the feed log's relay rounds are few)."""
        if positions:
            connection.execute(delete(feed_outbox).where(feed_outbox.c.position.in_(positions)))

    def outbox_size(self, connection: Connection) -> int:
        return int(connection.execute(select(func.count()).select_from(feed_outbox)).scalar_one())

    def items_of(self, connection: Connection, reader: str) -> list[dict[str, Any]]:
        """Everything recorded for one reader, in its order (for tests and operators)."""
        rows = connection.execute(select(feed_items.c.body).where(feed_items.c.reader == reader)
                                  .order_by(feed_items.c.reader_position))
        return [json.loads(row[0]) for row in rows]
