"""The webhook inbox's tables behind domain verbs: stored bodies (``WebhookBodies``), the ids
already acted on (``seen`` / ``mark_seen``), Messenger conversations and Page comments, and the
complaint columns a later message changes — plus the savepoint an item is applied in and the
database errors the use cases tell apart. Every function but ``WebhookBodies.store`` and
``pending`` runs inside the caller's transaction."""
from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any, Iterator

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, ProgrammingError

from shared.core.db import Database, Transaction
from shared.core.events import isoformat_utc, utc_now
from shared.core.eventstore import ConcurrencyError
from services.intake.adapters import tables

#: The database is unwell (locked past the busy timeout, gone, refusing): the body stays pending.
INFRASTRUCTURE_ERRORS = (OperationalError, ProgrammingError, InterfaceError)
#: Another writer got there first (a unique key, a complaint's version): read again, decide again.
CONFLICTS = (IntegrityError, ConcurrencyError)


class WebhookBodies:
    """``webhook_inbox``: each signed body as Meta sent it, pending until processed."""

    def __init__(self, database: Database):
        self.database = database

    def store(self, raw_body: bytes) -> int:
        """Commit the body (its own transaction: Meta's 200 waits for it); returns its id."""
        with self.database.transaction() as tx:
            result = tx.execute(tables.webhook_inbox.insert().values(
                received_at=isoformat_utc(utc_now()), state="pending",
                body=raw_body.decode("utf-8", errors="replace")))
            return int(result.inserted_primary_key[0])

    def pending(self, older_than_seconds: float, limit: int = 100) -> list[int]:
        """Ids of bodies still pending, received at least ``older_than_seconds`` ago, oldest first."""
        cutoff = isoformat_utc(utc_now() - timedelta(seconds=older_than_seconds))
        inbox = tables.webhook_inbox
        with self.database.read() as connection:
            return list(connection.execute(
                select(inbox.c.inbox_id).where(inbox.c.state == "pending", inbox.c.received_at <= cutoff)
                .order_by(inbox.c.inbox_id).limit(limit)).scalars())

    @staticmethod
    def take(tx: Transaction, inbox_id: int) -> Any:
        """The body if it is still pending (None otherwise), locked for this transaction on
        PostgreSQL so that no other transaction processes it at the same time."""
        inbox = tables.webhook_inbox
        query = select(inbox).where(inbox.c.inbox_id == inbox_id, inbox.c.state == "pending")
        if tx.connection.dialect.name == "postgresql":
            query = query.with_for_update()
        return tx.execute(query).mappings().first()

    @staticmethod
    def mark_processed(tx: Transaction, inbox_id: int, outcomes: dict[str, int]) -> None:
        tx.execute(update(tables.webhook_inbox).where(tables.webhook_inbox.c.inbox_id == inbox_id)
                   .values(state="processed", processed_at=isoformat_utc(utc_now()),
                           outcome=json.dumps(outcomes, sort_keys=True)))


@contextlib.contextmanager
def savepoint(tx: Transaction) -> Iterator[Transaction]:
    """Run the block in a savepoint of ``tx``: an exception undoes only the block's writes (and
    forgets the events it appended, so the after-commit hooks count only committed ones)."""
    appended = len(tx.appended)
    nested = tx.connection.begin_nested()
    try:
        yield tx
    except BaseException:
        if nested.is_active:
            nested.rollback()
        del tx.appended[appended:]
        raise
    else:
        nested.commit()


# -- ids already acted on ---------------------------------------------------------------------------
def seen(tx: Transaction, key: str) -> bool:
    item_key = tables.seen_items.c.item_key
    return tx.execute(select(item_key).where(item_key == key)).first() is not None


def mark_seen(tx: Transaction, key: str, complaint_id: str | None) -> None:
    tx.execute(tables.seen_items.insert().values(item_key=key, complaint_id=complaint_id,
                                                 seen_at=isoformat_utc(utc_now())))


# -- conversations and comments -----------------------------------------------------------------------
def conversation(tx: Transaction, page_id: str, psid: str) -> Any:
    """The (Page, PSID) conversation's row (complaint, first burst, last message), or None."""
    table = tables.conversations
    return tx.execute(select(table).where(table.c.page_id == page_id, table.c.psid == psid)).mappings().first()


def comment(tx: Transaction, comment_id: str) -> Any:
    return tx.execute(select(tables.comments).where(tables.comments.c.comment_id == comment_id)).mappings().first()


def record_comment(tx: Transaction, comment_id: str, complaint_id: str, page_id: str, post_id: str | None,
                   origin: bool) -> None:
    """A Page comment that became (``origin``) or continued a complaint."""
    tx.execute(tables.comments.insert().values(comment_id=comment_id, complaint_id=complaint_id,
                                               page_id=page_id, post_id=post_id, origin=origin))


def update_complaint(tx: Transaction, complaint_id: str, **values: Any) -> None:
    """What a later message changes on the complaint as filed (text, attachments, last message
    time, confidentiality)."""
    tx.execute(update(tables.complaints).where(tables.complaints.c.complaint_id == complaint_id)
               .values(**values))
