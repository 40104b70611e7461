"""Routing's record of each complaint's evidence (table ``evidence``): which attachments intake
keeps, and whether each is stored (with the digest that names its bytes) or lost. Written by the
consumer from intake's events, in its transaction; the handlers may meet the events in any order
(they travel on different queues), so a settlement seen before the filing is kept, and noting an
attachment never undoes a settlement."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping, Optional

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from shared.core.events import isoformat_utc
from services.routing.adapters import tables

e = tables.evidence


def note(connection: Connection, complaint_id: str, attachments: Iterable[Mapping[str, Any]],
         now: datetime) -> int:
    """The attachments of a filing or an amendment that intake downloads (those with a
    ``media_id``), as pending unless already known; returns how many were new."""
    added = 0
    for attachment in attachments:
        media_id = attachment.get("media_id") if isinstance(attachment, Mapping) else None
        if not media_id or _row(connection, complaint_id, str(media_id)) is not None:
            continue
        connection.execute(e.insert().values(
            complaint_id=complaint_id, media_id=str(media_id), kind=str(attachment.get("type") or "file")[:32],
            state="pending", noted_at=isoformat_utc(now), updated_at=isoformat_utc(now)))
        added += 1
    return added


def settle(connection: Connection, complaint_id: str, data: Mapping[str, Any], now: datetime) -> None:
    """``EvidenceStored``: the attachment is stored (digest, type, size) or lost (reason)."""
    values = {"kind": str(data.get("type") or "file")[:32], "state": data["state"], "digest": data.get("digest"),
              "content_type": data.get("content_type"), "size": data.get("size"), "reason": data.get("reason"),
              "updated_at": isoformat_utc(now)}
    media_id = str(data["media_id"])
    if _row(connection, complaint_id, media_id) is None:
        connection.execute(e.insert().values(complaint_id=complaint_id, media_id=media_id,
                                             noted_at=isoformat_utc(now), **values))
    else:
        connection.execute(update(e).where(e.c.complaint_id == complaint_id, e.c.media_id == media_id)
                           .values(**values))


def of_complaint(connection: Connection, complaint_id: str) -> list[dict]:
    rows = connection.execute(select(e).where(e.c.complaint_id == complaint_id)
                              .order_by(e.c.noted_at, e.c.media_id)).mappings()
    return [{"media_id": row["media_id"], "type": row["kind"], "state": row["state"], "digest": row["digest"],
             "content_type": row["content_type"], "size": row["size"], "reason": row["reason"]} for row in rows]


def stored(connection: Connection, complaint_id: str, digest: str) -> Optional[dict]:
    row = connection.execute(select(e.c.digest, e.c.content_type, e.c.size).where(
        e.c.complaint_id == complaint_id, e.c.digest == digest, e.c.state == "stored").limit(1)).mappings().first()
    return dict(row) if row is not None else None


def _row(connection: Connection, complaint_id: str, media_id: str):
    return connection.execute(select(e.c.state).where(e.c.complaint_id == complaint_id,
                                                      e.c.media_id == media_id)).first()
