"""Notification's record of a complaint: reading its recorded events in order, and whether it is
confidential now (the sender asks again before a public reply); what is remembered of a comment
(its private reply refused or spent, its removal); and the writes the event handlers make
(``application/handling.py``) — the complaint's row, its recorded events, the messages they cause."""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Optional

from sqlalchemy import bindparam, func, select, update

from shared.core.fast_sql import fast
from shared.core.db import insert_on_conflict
from shared.core.events import isoformat_utc, utc_now
from services.notification.adapters import tables
from services.notification.domain import composer
from services.notification.domain.delivery import CommentState

# The hot paths' statements, built once and executed with a parameters dict: building them on
# every call (coercions, cache keys) was ~40% of notification's CPU. Bind names are prefixed
# ``b_`` so that they never collide with a column named in an INSERT's VALUES or an UPDATE's SET.
_complaints, _events, _outgoing = tables.complaints, tables.complaint_events, tables.outgoing
_CONFIDENTIAL = select(_complaints.c.confidential).where(_complaints.c.complaint_id == bindparam("b_complaint_id"))
_HISTORY = select(_events).where(_events.c.complaint_id == bindparam("b_complaint_id"))
_COMMENT_STATE = select(tables.comment_states).where(
    tables.comment_states.c.comment_id == bindparam("b_comment_id"))
_COMMENT_FOUND = select(tables.comment_states.c.comment_id).where(
    tables.comment_states.c.comment_id == bindparam("b_comment_id"))
_UPDATE_COMMENT = tables.comment_states.update().where(
    tables.comment_states.c.comment_id == bindparam("b_comment_id"))
_INSERT_COMMENT = tables.comment_states.insert()
_COMPLAINT = select(_complaints).where(_complaints.c.complaint_id == bindparam("b_complaint_id"))
_COMPLAINT_LOCKED = _COMPLAINT.with_for_update()
_INSERT_COMPLAINT = _complaints.insert()
# SET: the columns named in the parameters dict (besides ``b_complaint_id``).
_UPDATE_COMPLAINT = update(_complaints).where(_complaints.c.complaint_id == bindparam("b_complaint_id"))
_FILED_BY_CODE = select(_complaints).where(func.upper(_complaints.c.tracking_code) == bindparam("b_code"),
                                           _complaints.c.filed.is_(True))
_EVENT_DATA = select(_events.c.data).where(_events.c.event_id == bindparam("b_event_id"))
_INSERT_EVENT = _events.insert()
_REPLACE_EVENT_DATA = update(_events).where(_events.c.event_id == bindparam("b_event_id")).values(
    data=bindparam("b_data"))
_MARK_PLANNED = update(_events).where(_events.c.event_id.in_(bindparam("b_event_ids", expanding=True))).values(
    planned=True)
_LAST_SEQ = select(func.max(_outgoing.c.seq)).where(_outgoing.c.lane == bindparam("b_lane"))
_MESSAGE_RECORDED = select(_outgoing.c.message_id).where(_outgoing.c.message_id == bindparam("b_message_id"))
_INSERT_MESSAGE = _outgoing.insert()
# Run straight on the driver where they can be (``shared.core.fast_sql``).
_CONFIDENTIAL = fast(_CONFIDENTIAL)
_HISTORY = fast(_HISTORY)
_COMMENT_STATE = fast(_COMMENT_STATE)
_COMMENT_FOUND = fast(_COMMENT_FOUND)
_UPDATE_COMMENT = fast(_UPDATE_COMMENT)
_INSERT_COMMENT = fast(_INSERT_COMMENT)
_COMPLAINT = fast(_COMPLAINT)
_COMPLAINT_LOCKED = fast(_COMPLAINT_LOCKED)
_INSERT_COMPLAINT = fast(_INSERT_COMPLAINT)
_UPDATE_COMPLAINT = fast(_UPDATE_COMPLAINT)
_FILED_BY_CODE = fast(_FILED_BY_CODE)
_EVENT_DATA = fast(_EVENT_DATA)
_INSERT_EVENT = fast(_INSERT_EVENT)
_REPLACE_EVENT_DATA = fast(_REPLACE_EVENT_DATA)
_LAST_SEQ = fast(_LAST_SEQ)
_MESSAGE_RECORDED = fast(_MESSAGE_RECORDED)
_INSERT_MESSAGE = fast(_INSERT_MESSAGE)

def confidential_now(connection, complaint_id: str) -> bool:
    """Whether the complaint is confidential now (the sender asks before a public reply)."""
    row = connection.execute(_CONFIDENTIAL, {"b_complaint_id": complaint_id}).first()
    filed_confidential = bool(row and row[0])
    return composer.current_confidentiality(complaint_history(connection, complaint_id),
                                            filed_confidential)


def complaint_history(connection, complaint_id: str) -> list[dict]:
    """The complaint's recorded events as envelopes (event_type, occurred_at, data) in order:
    ComplaintFiled first, then routing's events by version, stopping at the first missing one —
    or at one recorded before routing's events carried the lifecycle (revision 8b2c4d6e1f3a has
    the catch-up record it again, with its lifecycle)."""
    rows = connection.execute(_HISTORY, {"b_complaint_id": complaint_id}).mappings().all()
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
    row = connection.execute(_COMMENT_STATE, {"b_comment_id": comment_id}).mappings().first()
    if row is None:
        return None
    return CommentState(private_reply_closed=row["private_reply_closed"], removed=row["removed_at"] is not None)


def remember_comment(tx, comment_id: str, **values: Any) -> None:
    """Insert or update the comment's row (inside the caller's transaction). A private reply once
    closed stays closed, a removal stays recorded: callers only ever add facts."""
    values = dict(values, updated_at=isoformat_utc(utc_now()))
    if tx.connection.dialect.name in ("postgresql", "sqlite"):
        tx.execute(_upsert_comment(tuple(values)), {"comment_id": comment_id, **values})
        return
    found = tx.execute(_COMMENT_FOUND, {"b_comment_id": comment_id}).first()
    if found:
        tx.execute(_UPDATE_COMMENT, {"b_comment_id": comment_id, **values})
    else:
        tx.execute(_INSERT_COMMENT, {"comment_id": comment_id, **values})


@lru_cache(maxsize=None)
def _upsert_comment(columns: tuple[str, ...]):
    """INSERT … ON CONFLICT (comment_id) DO UPDATE SET these columns, built once per set of
    columns (the same text on both dialects, so compiled once too)."""
    return insert_on_conflict(tables.comment_states, update_on="comment_id", columns=("comment_id", *columns))


# -- notification's record of a complaint, written by the event handlers -----------------------------
def complaint_row(tx, complaint_id: str) -> Optional[dict]:
    """The complaint's row (None: not known yet), locked for the transaction on PostgreSQL:
    intake's and routing's handlers may race on one complaint."""
    query = _COMPLAINT_LOCKED if tx.connection.dialect.name == "postgresql" else _COMPLAINT
    row = tx.execute(query, {"b_complaint_id": complaint_id}).mappings().first()
    return dict(row) if row else None


def ensure_complaint(tx, complaint_id: str) -> dict:
    """The complaint's row, made (not filed yet, nothing known) when it has none."""
    row = complaint_row(tx, complaint_id)
    if row is None:
        tx.execute(_INSERT_COMPLAINT, dict(
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
        tx.execute(_UPDATE_COMPLAINT, {"b_complaint_id": complaint_id, **values})
    else:
        tx.execute(_INSERT_COMPLAINT, {"complaint_id": complaint_id, "confidential": False,
                                       "private_reply_used": False, **values})


def update_complaint(tx, complaint_id: str, **values: Any) -> None:
    values["updated_at"] = isoformat_utc(utc_now())
    tx.execute(_UPDATE_COMPLAINT, {"b_complaint_id": complaint_id, **values})


def filed_complaint_by_code(tx, tracking_code: str) -> Optional[dict]:
    """The filed complaint with this tracking code (any case), or None."""
    row = tx.execute(_FILED_BY_CODE, {"b_code": tracking_code.upper()}).mappings().first()
    return dict(row) if row else None


def recorded_event_data(tx, event_id: str) -> Optional[str]:
    """The data kept of an event already recorded (JSON text), or None."""
    return tx.execute(_EVENT_DATA, {"b_event_id": event_id}).scalar()


def record_event(tx, *, event_id: str, complaint_id: str, source: str, version: int, event_type: str,
                 occurred_at: Optional[str], data: dict) -> None:
    tx.execute(_INSERT_EVENT, dict(
        event_id=event_id, complaint_id=complaint_id, source=source, version=version, event_type=event_type,
        occurred_at=occurred_at, data=json.dumps(data, ensure_ascii=False), planned=False))


def replace_event_data(tx, event_id: str, data: dict) -> None:
    tx.execute(_REPLACE_EVENT_DATA, {"b_event_id": event_id, "b_data": json.dumps(data, ensure_ascii=False)})


def mark_planned(tx, event_ids: list[str]) -> None:
    """These events' messages are recorded (one statement for all of them)."""
    if event_ids:
        tx.execute(_MARK_PLANNED, {"b_event_ids": list(event_ids)})


# -- outgoing messages as the handlers record them ----------------------------------------------------
def last_seq(tx, lane: str) -> int:
    return tx.execute(_LAST_SEQ, {"b_lane": lane}).scalar() or 0


def message_recorded(connection, message_id: str) -> bool:
    return connection.execute(_MESSAGE_RECORDED, {"b_message_id": message_id}).first() is not None


def record_pending_message(tx, **values: Any) -> None:
    """A message to send (``state`` pending, due now): the sender takes it from here."""
    tx.execute(_INSERT_MESSAGE, values)


def resolutions_between(connection, resolved_type: str, not_before: str, asked_before: str) -> list:
    """(complaint_id, event_id) of each resolution recorded between the two times."""
    e = tables.complaint_events
    return list(connection.execute(select(e.c.complaint_id, e.c.event_id).where(
        e.c.event_type == resolved_type, e.c.occurred_at <= asked_before, e.c.occurred_at >= not_before)).all())
