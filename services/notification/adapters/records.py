"""Reading notification's record of a complaint: its recorded events in order, and whether it is
confidential now (the sender asks again before a public reply)."""
from __future__ import annotations

import json

from sqlalchemy import select

from services.notification.adapters import tables
from services.notification.domain import composer


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
