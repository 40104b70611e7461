"""Reading notification's record of a complaint: its recorded events in order, and whether it is
confidential now (the sender asks again before a public reply); and what is remembered of a
comment (its private reply refused or spent, its removal)."""
from __future__ import annotations

import json
from typing import Any, Optional

from sqlalchemy import select
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
