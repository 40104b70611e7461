"""The media ledger (table ``media``): which attachments intake keeps the bytes of, and where each
download stands. ``register`` runs inside the transaction that records the complaint, message or
amendment bringing the attachment (so none is forgotten); the downloader claims, settles and
announces rows in short transactions of their own, never around a download."""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from sqlalchemy import bindparam, select, update

from shared.core.db import Transaction
from shared.core.events import isoformat_utc
from shared.core.eventstore import PendingEvent
from shared.core.events import types as ev
from services.intake.adapters import tables
from services.intake.domain import media as rules

m = tables.media
# register's statements (every message with an attachment), built once (building them per call
# was a third of the service's CPU) and executed with a parameters dict (bind names ``b_*``).
_ROW_FOR_LINK = select(m.c.media_id).where(m.c.complaint_id == bindparam("b_complaint_id"),
                                           m.c.url_hash == bindparam("b_url_hash"))
_INSERT_MEDIA = m.insert()


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def register(tx: Transaction, complaint_id: str, attachments: Iterable[Mapping[str, Any]], now: datetime,
             *, from_meta: bool) -> list[dict[str, Any]]:
    """The attachments as the event will carry them: each one intake downloads (``from_meta``:
    it came with a Meta webhook, or a complaint of a Meta channel) gets its ``media_id`` — a new
    pending row, or the row of the same link already on this complaint."""
    kept: list[dict[str, Any]] = []
    for attachment in attachments:
        item = dict(attachment)
        if rules.wanted(item, from_meta):
            item["media_id"] = _row_for(tx, str(complaint_id), item, now)
        kept.append(item)
    return kept


def _row_for(tx: Transaction, complaint_id: str, attachment: dict[str, Any], now: datetime) -> str:
    link_hash = url_hash(attachment["url"])
    existing = tx.execute(_ROW_FOR_LINK, {"b_complaint_id": complaint_id, "b_url_hash": link_hash}).scalar()
    if existing is not None:
        return str(existing)
    media_id = str(uuid.uuid4())
    at = isoformat_utc(now)
    tx.execute(_INSERT_MEDIA, dict(media_id=media_id, complaint_id=complaint_id,
                                   kind=str(attachment.get("type") or "file")[:32], url=attachment["url"],
                                   url_hash=link_hash, state=rules.PENDING, attempts=0, next_attempt_at=at,
                                   created_at=at))
    return media_id


def due(connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Pending rows whose next attempt is due (claimed rows wait for their lease to end)."""
    rows = connection.execute(
        select(m.c.media_id, m.c.attempts, m.c.next_attempt_at)
        .where(m.c.state == rules.PENDING, m.c.next_attempt_at <= isoformat_utc(now))
        .order_by(m.c.next_attempt_at, m.c.created_at).limit(limit)).mappings()
    return [dict(row) for row in rows]


def pending_count(connection) -> int:
    from sqlalchemy import func
    return int(connection.execute(select(func.count()).select_from(m).where(m.c.state == rules.PENDING)).scalar()
               or 0)


def claim(tx: Transaction, media_id: str, attempts: int, next_attempt_at: str | None, now: datetime,
          lease_seconds: float) -> dict[str, Any] | None:
    """Take a due row for one attempt (compare-and-set, so two downloaders never both try it);
    the attempt counts now, so a download that crashes the process still uses one up. The lease
    brings the row back if this process dies before settling it."""
    claimed = tx.execute(update(m).where(
        m.c.media_id == media_id, m.c.state == rules.PENDING, m.c.attempts == attempts,
        m.c.next_attempt_at == next_attempt_at).values(
        attempts=attempts + 1,
        next_attempt_at=isoformat_utc(now + timedelta(seconds=lease_seconds)))).rowcount
    if claimed != 1:
        return None
    row = tx.execute(select(m).where(m.c.media_id == media_id)).mappings().first()
    return dict(row) if row is not None else None


def retry_later(tx: Transaction, media_id: str, attempts: int, reason: str, at: datetime) -> bool:
    return tx.execute(update(m).where(m.c.media_id == media_id, m.c.state == rules.PENDING,
                                      m.c.attempts == attempts)
                      .values(next_attempt_at=isoformat_utc(at), reason=reason[:500])).rowcount == 1


def settle(tx: Transaction, row: Mapping[str, Any], state: str, now: datetime, *, reason: str | None = None,
           digest: str | None = None, content_type: str | None = None, size: int | None = None) -> bool:
    """Mark the claimed row stored or lost and append ``EvidenceStored`` in the same transaction.
    False when the row is no longer this attempt's (another downloader settled it)."""
    changed = tx.execute(update(m).where(
        m.c.media_id == row["media_id"], m.c.state == rules.PENDING, m.c.attempts == row["attempts"]).values(
        state=state, reason=reason[:500] if reason else None, digest=digest, content_type=content_type,
        size=size, settled_at=isoformat_utc(now), next_attempt_at=None,
        url=None)).rowcount  # the link is of no use any more (and a bearer of access)
    if changed != 1:
        return False
    tx.append([PendingEvent(ev.EVIDENCE_STORED, row["complaint_id"], {
        "media_id": row["media_id"], "type": row["kind"], "state": state, "digest": digest,
        "content_type": content_type, "size": size, "reason": reason})])
    return True


def stored(connection, complaint_id: str, digest: str) -> dict[str, Any] | None:
    """A stored file of this complaint with this digest (any of its rows), or None."""
    row = connection.execute(select(m.c.digest, m.c.content_type, m.c.size).where(
        m.c.complaint_id == str(complaint_id), m.c.digest == digest, m.c.state == rules.STORED)
        .limit(1)).mappings().first()
    return dict(row) if row is not None else None


def for_complaint(connection, complaint_id: str) -> list[dict[str, Any]]:
    rows = connection.execute(select(
        m.c.media_id, m.c.kind, m.c.state, m.c.attempts, m.c.reason, m.c.digest, m.c.content_type, m.c.size,
        m.c.created_at, m.c.settled_at).where(m.c.complaint_id == str(complaint_id))
        .order_by(m.c.created_at, m.c.media_id)).mappings()
    return [dict(row) for row in rows]
