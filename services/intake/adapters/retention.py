"""Intake's retention rules (``shared.core.retention``): the webhook inbox holds Meta's raw bodies
— commenters' names, message texts — and ``seen_items`` one dedupe key per delivered item; both
would otherwise grow forever.

* ``INTAKE_INBOX_BODY_RETENTION_DAYS`` [30]: the raw body of a *processed* webhook is blanked
  (what it filed lives on in the complaint and its events); pending bodies are never touched.
* ``INTAKE_INBOX_RETENTION_DAYS`` [90]: processed inbox rows are deleted.
* ``INTAKE_SEEN_RETENTION_DAYS`` [90]: dedupe keys are deleted (Meta redelivers within hours).
"""
from __future__ import annotations

from sqlalchemy import delete, func, select, update

from shared.core.db import Database
from shared.core.retention import RetentionRule
from services.intake.adapters import tables

inbox = tables.webhook_inbox
seen = tables.seen_items


def blank_processed_bodies(database: Database, cutoff: str, batch: int) -> int:
    due = (inbox.c.state == "processed") & (inbox.c.processed_at < cutoff) & (inbox.c.body != "")
    with database.read() as connection:  # no write lock at all when there is nothing to prune
        ids = list(connection.execute(select(inbox.c.inbox_id).where(due)
                                      .order_by(inbox.c.inbox_id).limit(batch)).scalars())
    if ids:
        with database.transaction() as tx:
            tx.execute(update(inbox).where(inbox.c.inbox_id.in_(ids), due).values(body=""))
    return len(ids)


def delete_processed_rows(database: Database, cutoff: str, batch: int) -> int:
    due = (inbox.c.state == "processed") & (inbox.c.processed_at < cutoff)
    with database.read() as connection:
        # The newest row stays: SQLite would hand its id out again, and a reused id would meet
        # the old body's quarantine keys (``quarantine:<inbox_id>:<item>``) in seen_items.
        newest = connection.execute(select(func.max(inbox.c.inbox_id))).scalar()
        ids = list(connection.execute(select(inbox.c.inbox_id).where(due, inbox.c.inbox_id != newest)
                                      .order_by(inbox.c.inbox_id).limit(batch)).scalars())
    if ids:
        with database.transaction() as tx:
            tx.execute(delete(inbox).where(inbox.c.inbox_id.in_(ids), due))
    return len(ids)


def delete_old_seen_items(database: Database, cutoff: str, batch: int) -> int:
    due = seen.c.seen_at < cutoff
    with database.read() as connection:
        keys = list(connection.execute(select(seen.c.item_key).where(due)
                                       .order_by(seen.c.seen_at).limit(batch)).scalars())
    if keys:
        with database.transaction() as tx:
            tx.execute(delete(seen).where(seen.c.item_key.in_(keys), due))
    return len(keys)


# Bodies first: they go long before their rows (the order the rules run in, too).
INTAKE_RETENTION_RULES = [
    RetentionRule("webhook_bodies_blanked", "INTAKE_INBOX_BODY_RETENTION_DAYS", "30", blank_processed_bodies),
    RetentionRule("webhook_inbox_rows", "INTAKE_INBOX_RETENTION_DAYS", "90", delete_processed_rows),
    RetentionRule("seen_items", "INTAKE_SEEN_RETENTION_DAYS", "90", delete_old_seen_items),
]
