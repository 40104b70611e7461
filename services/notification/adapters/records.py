"""Notification's record of a complaint: reading its recorded events in order, and whether it is
confidential now (the sender asks again before a public reply); what is remembered of a comment
(its private reply refused or spent, its removal); and the writes the event handlers make
(``application/handling.py``) — the complaint's row, its recorded events, the messages they cause."""
from __future__ import annotations

import json
from typing import Any, Optional

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.core.events import isoformat_utc, utc_now
from services.notification.adapters import tables
from services.notification.domain import composer
from services.notification.domain.delivery import CommentState


def confidential_now(connection, complaint_id: str) -> bool:
    """Whether the complaint is confidential now (the sender asks before a public reply)."""
    row = connection.execute(select(tables.complaints.c.confidential).where(
        tables.complaints.c.complaint_id == complaint_id)).first()
    filed_confidential = bool(row and row[0])
    return composer.current_confidentiality(complaint_history(connection, complaint_id),
                                            filed_confidential)


def complaint_history(connection, complaint_id: str) -> list[dict]:
    """The complaint's recorded events as envelopes (event_type, occurred_at, data) in order:
    ComplaintFiled first, then routing's events by version, stopping at the first missing one —
    or at one recorded before routing's events carried the lifecycle (revision 8b2c4d6e1f3a has
    the catch-up record it again, with its lifecycle)."""
    rows = connection.execute(select(tables.complaint_events).where(
        tables.complaint_events.c.complaint_id == complaint_id)).mappings().all()
    history = [dict(r, data=json.loads(r["data"])) for r in rows if r["source"] == "intake"]
    routing = sorted((r for r in rows if r["source"] == "routing"), key=lambda r: r["version"])
    for expected, row in enumerate(routing, start=1):
        data = json.loads(row["data"])
        if row["version"] != expected or "lifecycle" not in data:
            break
        history.append(dict(row, data=data))
    return history


# -- what is remembered of a comment ----------------------------------------------------------------
def comment_state(connection, comment_id: Optional[str]) -> Optional[CommentState]:
    """What is remembered of the comment (None: nothing)."""
    if not comment_id:
        return None
    row = connection.execute(select(tables.comment_states).where(
        tables.comment_states.c.comment_id == comment_id)).mappings().first()
    if row is None:
        return None
    return CommentState(private_reply_closed=row["private_reply_closed"], removed=row["removed_at"] is not None)


def remember_comment(tx, comment_id: str, **values: Any) -> None:
    """Insert or update the comment's row (inside the caller's transaction). A private reply once
    closed stays closed, a removal stays recorded: callers only ever add facts."""
    values = dict(values, updated_at=isoformat_utc(utc_now()))
    table = tables.comment_states
    dialect = tx.connection.dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        tx.execute(insert.values(comment_id=comment_id, **values)
                   .on_conflict_do_update(index_elements=[table.c.comment_id], set_=values))
        return
    found = tx.execute(select(table.c.comment_id).where(table.c.comment_id == comment_id)).first()
    if found:
        tx.execute(table.update().where(table.c.comment_id == comment_id).values(**values))
    else:
        tx.execute(table.insert().values(comment_id=comment_id, **values))


# -- notification's record of a complaint, written by the event handlers -----------------------------
def complaint_row(tx, complaint_id: str) -> Optional[dict]:
    """The complaint's row (None: not known yet), locked for the transaction on PostgreSQL:
    intake's and routing's handlers may race on one complaint."""
    query = select(tables.complaints).where(tables.complaints.c.complaint_id == complaint_id)
    if tx.connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = tx.execute(query).mappings().first()
    return dict(row) if row else None


def ensure_complaint(tx, complaint_id: str) -> dict:
    """The complaint's row, made (not filed yet, nothing known) when it has none."""
    row = complaint_row(tx, complaint_id)
    if row is None:
        tx.execute(tables.complaints.insert().values(
            complaint_id=complaint_id, filed=False, confidential=False, private_reply_used=False,
            updated_at=isoformat_utc(utc_now())))
        row = complaint_row(tx, complaint_id)
    assert row is not None
    return row


def file_complaint(tx, complaint_id: str, values: dict, known: bool) -> None:
    """Write what ``ComplaintFiled`` says of the complaint: one UPDATE of the row when it is
    ``known`` (a routing event came first), else one INSERT — not a placeholder row written and
    then updated."""
    values = dict(values, updated_at=isoformat_utc(utc_now()))
    if known:
        tx.execute(update(tables.complaints).where(tables.complaints.c.complaint_id == complaint_id)
                   .values(**values))
    else:
        tx.execute(tables.complaints.insert().values(
            complaint_id=complaint_id, **{"confidential": False, "private_reply_used": False, **values}))


def update_complaint(tx, complaint_id: str, **values: Any) -> None:
    values["updated_at"] = isoformat_utc(utc_now())
    tx.execute(update(tables.complaints).where(tables.complaints.c.complaint_id == complaint_id)
               .values(**values))


def filed_complaint_by_code(tx, tracking_code: str) -> Optional[dict]:
    """The filed complaint with this tracking code (any case), or None."""
    row = tx.execute(select(tables.complaints).where(
        func.upper(tables.complaints.c.tracking_code) == tracking_code.upper(),
        tables.complaints.c.filed.is_(True))).mappings().first()
    return dict(row) if row else None


def recorded_event_data(tx, event_id: str) -> Optional[str]:
    """The data kept of an event already recorded (JSON text), or None."""
    return tx.execute(select(tables.complaint_events.c.data).where(
        tables.complaint_events.c.event_id == event_id)).scalar()


def record_event(tx, *, event_id: str, complaint_id: str, source: str, version: int, event_type: str,
                 occurred_at: Optional[str], data: dict) -> None:
    tx.execute(tables.complaint_events.insert().values(
        event_id=event_id, complaint_id=complaint_id, source=source, version=version, event_type=event_type,
        occurred_at=occurred_at, data=json.dumps(data, ensure_ascii=False), planned=False))


def replace_event_data(tx, event_id: str, data: dict) -> None:
    tx.execute(update(tables.complaint_events).where(tables.complaint_events.c.event_id == event_id)
               .values(data=json.dumps(data, ensure_ascii=False)))


def mark_planned(tx, event_ids: list[str]) -> None:
    """These events' messages are recorded (one statement for all of them)."""
    if event_ids:
        tx.execute(update(tables.complaint_events).where(tables.complaint_events.c.event_id.in_(event_ids))
                   .values(planned=True))


# -- outgoing messages as the handlers record them ----------------------------------------------------
def last_seq(tx, lane: str) -> int:
    return tx.execute(select(func.max(tables.outgoing.c.seq)).where(tables.outgoing.c.lane == lane)).scalar() or 0


def message_recorded(connection, message_id: str) -> bool:
    return connection.execute(select(tables.outgoing.c.message_id)
                              .where(tables.outgoing.c.message_id == message_id)).first() is not None


def record_pending_message(tx, **values: Any) -> None:
    """A message to send (``state`` pending, due now): the sender takes it from here."""
    tx.execute(tables.outgoing.insert().values(**values))


def resolutions_between(connection, resolved_type: str, not_before: str, asked_before: str) -> list:
    """(complaint_id, event_id) of each resolution recorded between the two times."""
    e = tables.complaint_events
    return list(connection.execute(select(e.c.complaint_id, e.c.event_id).where(
        e.c.event_type == resolved_type, e.c.occurred_at <= asked_before, e.c.occurred_at >= not_before)).all())
