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

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, ProgrammingError

from shared.core.fast_sql import fast
from shared.core.db import Database, Transaction
from shared.core.events import isoformat_utc, utc_now
from shared.core.eventstore import ConcurrencyError
from shared.core.group_commit import group_commit_for
from services.intake.adapters import tables

#: The database is unwell (locked past the busy timeout, gone, refusing): the body stays pending.
INFRASTRUCTURE_ERRORS = (OperationalError, ProgrammingError, InterfaceError)
#: Another writer got there first (a unique key, a complaint's version): read again, decide again.
CONFLICTS = (IntegrityError, ConcurrencyError)

# The per-body statements, built once (building them per call was a third of the service's CPU)
# and executed with a parameters dict; bind names are prefixed ``b_`` so that they never collide
# with a column named in an INSERT's VALUES or an UPDATE's SET.
_inbox, _seen_items, _conversations, _comments = (tables.webhook_inbox, tables.seen_items, tables.conversations,
                                                  tables.comments)
_INSERT_BODY = _inbox.insert()
_PENDING = (select(_inbox.c.inbox_id)
            .where(_inbox.c.state == "pending", _inbox.c.received_at <= bindparam("b_cutoff"))
            .order_by(_inbox.c.inbox_id).limit(bindparam("b_limit")))
_TAKE = select(_inbox).where(_inbox.c.inbox_id == bindparam("b_inbox_id"), _inbox.c.state == "pending")
_TAKE_LOCKED = _TAKE.with_for_update()
_MARK_PROCESSED = update(_inbox).where(_inbox.c.inbox_id == bindparam("b_inbox_id")).values(
    state="processed", processed_at=bindparam("b_processed_at"), outcome=bindparam("b_outcome"))
_SEEN = select(_seen_items.c.item_key).where(_seen_items.c.item_key == bindparam("b_key"))
_INSERT_SEEN = _seen_items.insert()
_CONVERSATION = select(_conversations).where(_conversations.c.page_id == bindparam("b_page_id"),
                                             _conversations.c.psid == bindparam("b_psid"))
_COMMENT = select(_comments).where(_comments.c.comment_id == bindparam("b_comment_id"))
_INSERT_COMMENT = _comments.insert()
# SET: the columns named in the parameters dict (besides ``b_complaint_id``).
_UPDATE_COMPLAINT = update(tables.complaints).where(tables.complaints.c.complaint_id == bindparam("b_complaint_id"))
# Run straight on the driver where they can be (``shared.core.fast_sql``).
_PENDING = fast(_PENDING)
_TAKE = fast(_TAKE)
_TAKE_LOCKED = fast(_TAKE_LOCKED)
_MARK_PROCESSED = fast(_MARK_PROCESSED)
_SEEN = fast(_SEEN)
_INSERT_SEEN = fast(_INSERT_SEEN)
_CONVERSATION = fast(_CONVERSATION)
_COMMENT = fast(_COMMENT)
_INSERT_COMMENT = fast(_INSERT_COMMENT)
_UPDATE_COMPLAINT = fast(_UPDATE_COMPLAINT)


class WebhookBodies:
    """``webhook_inbox``: each signed body as Meta sent it, pending until processed."""

    def __init__(self, database: Database):
        self.database = database

    def store(self, raw_body: bytes) -> int:
        """Commit the body (Meta's 200 waits for the commit); returns its id. Bodies arriving
        together are group-committed (``shared.core.group_commit``): one commit for the webhook
        requests that reached this point at the same moment, each answered after it."""
        body = dict(received_at=isoformat_utc(utc_now()), state="pending",
                    body=raw_body.decode("utf-8", errors="replace"))
        return group_commit_for(self.database).run(
            lambda tx: int(tx.execute(_INSERT_BODY, body).inserted_primary_key[0]))

    def pending(self, older_than_seconds: float, limit: int = 100) -> list[int]:
        """Ids of bodies still pending, received at least ``older_than_seconds`` ago, oldest first."""
        cutoff = isoformat_utc(utc_now() - timedelta(seconds=older_than_seconds))
        with self.database.read() as connection:
            return list(connection.execute(_PENDING, {"b_cutoff": cutoff, "b_limit": limit}).scalars())

    @staticmethod
    def take(tx: Transaction, inbox_id: int) -> Any:
        """The body if it is still pending (None otherwise), locked for this transaction on
        PostgreSQL so that no other transaction processes it at the same time."""
        query = _TAKE_LOCKED if tx.connection.dialect.name == "postgresql" else _TAKE
        return tx.execute(query, {"b_inbox_id": inbox_id}).mappings().first()

    @staticmethod
    def mark_processed(tx: Transaction, inbox_id: int, outcomes: dict[str, int]) -> None:
        tx.execute(_MARK_PROCESSED, {"b_inbox_id": inbox_id, "b_processed_at": isoformat_utc(utc_now()),
                                     "b_outcome": json.dumps(outcomes, sort_keys=True)})


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
    return tx.execute(_SEEN, {"b_key": key}).first() is not None


def mark_seen(tx: Transaction, key: str, complaint_id: str | None) -> None:
    tx.execute(_INSERT_SEEN, dict(item_key=key, complaint_id=complaint_id, seen_at=isoformat_utc(utc_now())))


# -- conversations and comments -----------------------------------------------------------------------
def conversation(tx: Transaction, page_id: str, psid: str) -> Any:
    """The (Page, PSID) conversation's row (complaint, first burst, last message), or None."""
    return tx.execute(_CONVERSATION, {"b_page_id": page_id, "b_psid": psid}).mappings().first()


def comment(tx: Transaction, comment_id: str) -> Any:
    return tx.execute(_COMMENT, {"b_comment_id": comment_id}).mappings().first()


def record_comment(tx: Transaction, comment_id: str, complaint_id: str, page_id: str, post_id: str | None,
                   origin: bool) -> None:
    """A Page comment that became (``origin``) or continued a complaint."""
    tx.execute(_INSERT_COMMENT, dict(comment_id=comment_id, complaint_id=complaint_id, page_id=page_id,
                                     post_id=post_id, origin=origin))


def update_complaint(tx: Transaction, complaint_id: str, **values: Any) -> None:
    """What a later message changes on the complaint as filed (text, attachments, last message
    time, confidentiality)."""
    tx.execute(_UPDATE_COMPLAINT, {"b_complaint_id": complaint_id, **values})
