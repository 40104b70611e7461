"""The webhook inbox: a signed body is committed as it arrived before Meta gets its 200, then
processed item by item. Each item is applied in its own transaction together with its dedupe key
(``seen_items``) and its events, so reprocessing a body — after a crash, by the inbox timer, or a
duplicated delivery from Meta — files nothing twice. What cannot be understood is quarantined as a
one-item body (kind ``webhook``) that ``replay`` processes again once the cause is fixed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, InterfaceError

from shared.core import config
from shared.core.db import Transaction
from shared.core.events import InvalidEvent, isoformat_utc, parse_iso, utc_now
from shared.core.eventstore import ConcurrencyError, PendingEvent
from shared.core.text import check_unicode
from shared.core.store import ServiceStore
from services.intake.adapters import tables
from services.intake.domain.classifier import classify
from shared.core.events import types as ev
from shared.core.reference import CONFIDENTIAL_CATEGORIES
from services.intake.domain.conversation import (AMEND, AWAIT_NEW, FILE, MESSAGE, STATUS, Conversation,
                                          attachment_text, decide, extended_text)
from services.intake.domain.filing import file_new
from services.intake.adapters.store import (find_by_tracking_code, find_complaint, record_new_complaint,
                                           remember_conversation)
from services.intake.adapters.media import register as register_media  # evidence: domain/media.py
from services.intake.domain.webhook import (INSTAGRAM, CitizenReaction, CommentChange, Ignored, MessengerMessage,
                                            ParsedBody, Problem, StandbyMode, parse_body, parse_standby_mode)

log = logging.getLogger("intake.inbox")

# Unknown tracking codes still get a StatusRequested (notification answers "not found"): its
# complaint id is derived from the message, so a redelivery maps to the same id.
STATUS_NAMESPACE = uuid.UUID("5f0c2a7e-6d1b-4f38-9a41-1c0b9c2d7e11")
_INFRASTRUCTURE_ERRORS = (OperationalError, ProgrammingError, InterfaceError)


@dataclass(frozen=True)
class WebhookSettings:
    accepted_pages: frozenset       # empty: every Page is accepted
    bubble_seconds: float
    instagram_accounts: dict[str, str] = field(default_factory=dict)   # Instagram account id → Page id
    standby: StandbyMode = field(default_factory=StandbyMode)


def instagram_accounts_from_env() -> dict[str, str]:
    """``FACEBOOK_INSTAGRAM_ACCOUNTS=<instagram_account_id>:<page_id>,…``: the Instagram
    professional account linked to each Page (Direct messages are answered through that Page)."""
    return dict(config.parse_pairs(config.env("FACEBOOK_INSTAGRAM_ACCOUNTS"), "FACEBOOK_INSTAGRAM_ACCOUNTS",
                                   "instagram_account_id:page_id,instagram_account_id:page_id"))


def standby_from_env() -> StandbyMode:
    try:
        return parse_standby_mode(config.env("INTAKE_STANDBY_MODE", "process"))
    except ValueError as error:
        raise config.ConfigError(str(error)) from None


def settings_from_env() -> WebhookSettings:
    return WebhookSettings(config.facebook_page_ids(),
                           float(config.env("INTAKE_BUBBLE_SECONDS", "120")),
                           instagram_accounts_from_env(), standby_from_env())


class WebhookInbox:
    def __init__(self, store: ServiceStore, settings: WebhookSettings):
        self.store = store
        self.database = store.database
        self.settings = settings

    # -- the durable part --------------------------------------------------------------------
    def store_body(self, raw_body: bytes) -> int:
        with self.database.transaction() as tx:
            result = tx.execute(tables.webhook_inbox.insert().values(
                received_at=isoformat_utc(utc_now()), state="pending",
                body=raw_body.decode("utf-8", errors="replace")))
            return int(result.inserted_primary_key[0])

    def pending(self, older_than_seconds: float, limit: int = 100) -> list[int]:
        cutoff = isoformat_utc(utc_now() - timedelta(seconds=older_than_seconds))
        with self.database.read() as connection:
            return list(connection.execute(
                select(tables.webhook_inbox.c.inbox_id)
                .where(tables.webhook_inbox.c.state == "pending", tables.webhook_inbox.c.received_at <= cutoff)
                .order_by(tables.webhook_inbox.c.inbox_id).limit(limit)).scalars())

    # -- processing --------------------------------------------------------------------------
    def parse(self, body) -> ParsedBody:
        settings = self.settings
        return parse_body(body, settings.accepted_pages, instagram_accounts=settings.instagram_accounts,
                          standby=settings.standby)

    def drain(self, pause: Callable[[], None] = lambda: None, limit: int = 100) -> int:
        """Process every pending body, oldest first (a citizen's bubbles in the order Meta sent
        them), until none is left; returns how many were processed. ``pause`` runs between items,
        never inside a transaction (the service lets other green threads — the webhook's next
        deliveries — run there). A database failure propagates and leaves the body pending."""
        done = 0
        while True:
            pending = self.pending(older_than_seconds=0, limit=limit)
            if not pending:
                return done
            for inbox_id in pending:
                self.process(inbox_id, pause)
                done += 1

    def process(self, inbox_id: int, pause: Callable[[], None] = lambda: None) -> dict:
        """Apply every item of one stored body; returns the count of each outcome."""
        with self.database.read() as connection:
            row = connection.execute(select(tables.webhook_inbox).where(
                tables.webhook_inbox.c.inbox_id == inbox_id)).mappings().first()
        if row is None or row["state"] != "pending":
            return {}
        counts: dict[str, int] = {}
        try:
            body = json.loads(row["body"])
            check_unicode(body)
        except (ValueError, RecursionError) as error:  # not JSON, too deep, a number too long
            items = [(Problem(f"body is not JSON: {type(error).__name__}: {error}"[:500], row["body"]),
                      row["body"])]
        else:
            items = self.parse(body).items
        for index, (item, one_item_body) in enumerate(items):
            outcome = self.apply(item, one_item_body, row["received_at"], f"{inbox_id}:{index}")
            counts[outcome] = counts.get(outcome, 0) + 1
            pause()
        with self.database.transaction() as tx:
            tx.execute(update(tables.webhook_inbox).where(tables.webhook_inbox.c.inbox_id == inbox_id)
                       .values(state="processed", processed_at=isoformat_utc(utc_now()),
                               outcome=json.dumps(counts, sort_keys=True)))
        log.info("webhook body processed", extra={"inbox_id": inbox_id, "outcomes": counts})
        return counts

    def apply(self, item, one_item_body, received_at: str, quarantine_key: str) -> str:
        if isinstance(item, Ignored):
            return "ignored"
        if isinstance(item, Problem):
            return self._quarantine(item.reason, one_item_body, quarantine_key)
        try:
            return self._apply_understood(item, received_at)
        except _INFRASTRUCTURE_ERRORS:
            raise  # the database is unwell: leave the body pending, the timer comes back
        except (InvalidEvent, ValueError, KeyError, TypeError) as error:
            return self._quarantine(f"could not apply: {type(error).__name__}: {error}", one_item_body,
                                    quarantine_key)
        except Exception as error:
            # Bodies are processed in arrival order behind the 200: an item that keeps failing for
            # a reason other than the database (a bug, a conflict that does not clear) must not
            # hold up every later body. It waits in quarantine, with the error, for a replay.
            log.exception("webhook item could not be applied")
            return self._quarantine(f"could not apply: {type(error).__name__}: {error}"[:500], one_item_body,
                                    quarantine_key)

    def replay(self, item: dict, actor: str) -> str:
        """Process a quarantined webhook item again (after a fix, or once its Page is configured)."""
        try:
            body = json.loads(item["payload"])
            check_unicode(body)
            items = self.parse(body).items
        except (ValueError, RecursionError) as error:
            items = [(Problem(f"body is not JSON: {error}", item["payload"]), item["payload"])]
        problems = [i.reason for i, _body in items if isinstance(i, Problem)]
        if not problems:
            try:
                for understood, _body in items:
                    if not isinstance(understood, (Ignored, Problem)):
                        self._apply_understood(understood, item["quarantined_at"])
            except _INFRASTRUCTURE_ERRORS:
                raise
            except (InvalidEvent, ValueError, KeyError, TypeError) as error:
                problems = [f"could not apply: {type(error).__name__}: {error}"]
        with self.database.transaction() as tx:
            if problems:
                self.store.quarantine.mark_failed_again(tx.connection, item["item_id"], "; ".join(problems), actor)
            else:
                self.store.quarantine.mark_replayed(tx.connection, item["item_id"], actor)
        return "still_quarantined" if problems else "replayed"

    def _quarantine(self, reason: str, payload, quarantine_key: str) -> str:
        key = f"quarantine:{quarantine_key}"
        try:
            with self.database.transaction() as tx:
                if _seen(tx, key):
                    return "quarantined"
                self.store.quarantine.put(tx.connection, "webhook", reason, payload, source="facebook")
                _mark_seen(tx, key, None)
        except IntegrityError:
            pass
        log.warning("webhook item quarantined: %s", reason)
        return "quarantined"

    def _apply_understood(self, item, received_at: str) -> str:
        if isinstance(item, MessengerMessage):
            return self._once(f"mid:{item.mid}", lambda tx: self._message(tx, item, received_at))
        if isinstance(item, CitizenReaction):
            return self._once(f"mid:{item.mid}", lambda tx: self._reaction(tx, item))
        if isinstance(item, CommentChange):
            if item.verb == "remove":
                return self._once(f"remove:{item.comment_id}", lambda tx: self._comment_removed(tx, item))
            if item.verb == "edited":
                digest = hashlib.sha256(item.text.encode("utf-8")).hexdigest()[:24]
                return self._once(f"edit:{item.comment_id}:{digest}",
                                  lambda tx: self._comment_edited(tx, item, received_at))
            return self._once(f"comment:{item.comment_id}", lambda tx: self._comment_added(tx, item, received_at))
        raise TypeError(f"cannot apply {type(item).__name__}")

    def _once(self, key: str, effect) -> str:
        """Run ``effect`` and record ``key`` in one transaction; a second run is a duplicate."""
        for attempt in range(4):
            try:
                with self.database.transaction() as tx:
                    if _seen(tx, key):
                        return "duplicate"
                    outcome, complaint_id = effect(tx)
                    _mark_seen(tx, key, complaint_id)
                return outcome
            except (IntegrityError, ConcurrencyError):
                # Another worker handled the same item, or the same conversation, at the same
                # moment (PostgreSQL): read again and decide again.
                if attempt == 3:
                    raise
        return "duplicate"

    # -- Messenger -----------------------------------------------------------------------------
    def _message(self, tx: Transaction, message: MessengerMessage, received_at: str):
        conversation_row = tx.execute(select(tables.conversations).where(
            tables.conversations.c.page_id == message.page_id,
            tables.conversations.c.psid == message.psid)).mappings().first()
        complaint = None
        conversation = None
        if conversation_row is not None:
            if conversation_row["complaint_id"]:
                complaint = find_complaint(tx.connection, conversation_row["complaint_id"])
            last = conversation_row["last_message_at"]
            conversation = Conversation(
                complaint_id=complaint["complaint_id"] if complaint else None,
                tracking_code=complaint["tracking_code"] if complaint else None,
                complaint_open=bool(complaint["open"]) if complaint else False,
                in_first_burst=bool(conversation_row["in_first_burst"]),
                last_message_at=parse_iso(last) if last else None)
        decision = decide(message.text, bool(message.attachments), message.sent_at, conversation,
                          self.settings.bubble_seconds)
        sent_at = isoformat_utc(message.sent_at)
        latest = _latest(conversation.last_message_at if conversation else None, message.sent_at)
        reply_to = _reply_to(message.page_id, message.psid, message.platform)
        channel = "instagram_direct" if message.platform == INSTAGRAM else "facebook_messenger"
        text = decision.text.strip() or (attachment_text(message.attachments) if message.attachments else "")

        if decision.action == STATUS:
            target = find_by_tracking_code(tx.connection, decision.tracking_code) if decision.tracking_code else None
            complaint_id = target["complaint_id"] if target else str(uuid.uuid5(STATUS_NAMESPACE, message.mid))
            tx.append([PendingEvent("StatusRequested", complaint_id, {
                "tracking_code": decision.tracking_code or "", "reply_to": reply_to, "message_at": sent_at,
                "known": target is not None})])
            remember_conversation(tx, message.page_id, message.psid,
                                  conversation.complaint_id if conversation else None,
                                  conversation.in_first_burst if conversation else False, latest)
            return "status_requested", complaint_id
        if decision.action == AWAIT_NEW:
            remember_conversation(tx, message.page_id, message.psid, None, False, latest)
            return "awaiting_new_complaint", None
        if decision.action == FILE:
            new = file_new({"text": text, "channel": channel, "reply_to": reply_to,
                            "attachments": message.attachments, "last_citizen_message_at": sent_at,
                            "received_at": received_at}, utc_now())
            record_new_complaint(tx, new, psid=message.psid)
            remember_conversation(tx, message.page_id, message.psid, new.complaint_id, True, sent_at)
            log.info("complaint filed from %s", "Instagram Direct" if channel == "instagram_direct" else "Messenger",
                     extra={"complaint_id": new.complaint_id})
            return "filed", new.complaint_id
        complaint_id = conversation.complaint_id
        if decision.action == AMEND:
            _amend(tx, complaint, extended_text(complaint["text"], text), "more_messages", latest,
                   message.attachments, added_text=text)
            remember_conversation(tx, message.page_id, message.psid, complaint_id, True, latest)
            return "amended", complaint_id
        assert decision.action == MESSAGE
        _citizen_message(tx, complaint_id, text, message.attachments, reply_to, sent_at, latest)
        remember_conversation(tx, message.page_id, message.psid, complaint_id, False, latest)
        return "message_received", complaint_id

    def _reaction(self, tx: Transaction, reaction: CitizenReaction):
        """A sticker, the like button or a heart: ``CitizenReacted`` on the conversation's current
        complaint — open or closed (a 👍 after the answer is the citizen's verdict) — and nothing
        else: no complaint filed or extended, the first burst and the conversation left as they
        were. Without a complaint to react to it is ignored."""
        conversation_row = tx.execute(select(tables.conversations.c.complaint_id).where(
            tables.conversations.c.page_id == reaction.page_id,
            tables.conversations.c.psid == reaction.psid)).first()
        complaint_id = conversation_row.complaint_id if conversation_row is not None else None
        if not complaint_id or find_complaint(tx.connection, complaint_id) is None:
            return "ignored", None
        tx.append([PendingEvent(ev.CITIZEN_REACTED, complaint_id, {
            "reaction": reaction.reaction, "sticker_id": reaction.sticker_id,
            "message_at": isoformat_utc(reaction.sent_at)})])
        log.info("citizen reacted", extra={"complaint_id": complaint_id, "reaction": reaction.reaction})
        return "reaction_recorded", complaint_id

    # -- Page comments -------------------------------------------------------------------------
    def _comment_added(self, tx: Transaction, comment: CommentChange, received_at: str):
        reply_to = {"page_id": comment.page_id, "comment_id": comment.comment_id, "post_id": comment.post_id}
        written_at = isoformat_utc(comment.created_at) if comment.created_at else received_at
        text = comment.text.strip() or attachment_text(comment.attachments)
        parent = None
        if comment.parent_id and comment.parent_id != comment.post_id:
            parent = _comment(tx, comment.parent_id)
        if parent is not None:
            complaint = find_complaint(tx.connection, parent["complaint_id"])
            if complaint is not None and complaint["open"]:
                # A reply under the citizen's own complaint comment continues that complaint.
                latest = _latest(_parse(complaint["last_citizen_message_at"]), parse_iso(written_at))
                _citizen_message(tx, complaint["complaint_id"], text, comment.attachments, reply_to,
                                 written_at, latest)
                tx.execute(tables.comments.insert().values(
                    comment_id=comment.comment_id, complaint_id=complaint["complaint_id"],
                    page_id=comment.page_id, post_id=comment.post_id, origin=False))
                return "message_received", complaint["complaint_id"]
        new = file_new({"text": text, "channel": "facebook_comment", "reply_to": reply_to,
                        "attachments": comment.attachments, "last_citizen_message_at": written_at,
                        "received_at": received_at}, utc_now())
        record_new_complaint(tx, new)
        tx.execute(tables.comments.insert().values(
            comment_id=comment.comment_id, complaint_id=new.complaint_id, page_id=comment.page_id,
            post_id=comment.post_id, origin=True))
        log.info("complaint filed from a Page comment", extra={"complaint_id": new.complaint_id})
        return "filed", new.complaint_id

    def _comment_edited(self, tx: Transaction, comment: CommentChange, received_at: str):
        known = _comment(tx, comment.comment_id)
        if known is None:
            # We never saw it added (it predates the subscription, or that delivery was lost).
            if _seen(tx, f"comment:{comment.comment_id}"):
                return "ignored", None
            outcome, complaint_id = self._comment_added(tx, comment, received_at)
            _mark_seen(tx, f"comment:{comment.comment_id}", complaint_id)
            return outcome, complaint_id
        if not known["origin"]:
            return "ignored", known["complaint_id"]   # an edited follow-up reply changes no complaint text
        complaint = find_complaint(tx.connection, known["complaint_id"])
        written = comment.created_at
        latest = _latest(_parse(complaint["last_citizen_message_at"]), written) if written else \
            _parse(complaint["last_citizen_message_at"])
        _amend(tx, complaint, comment.text.strip() or complaint["text"], "comment_edited", latest,
               comment.attachments, added_text=comment.text.strip())
        return "amended", complaint["complaint_id"]

    def _comment_removed(self, tx: Transaction, comment: CommentChange):
        known = _comment(tx, comment.comment_id)
        if known is None:
            return "ignored", None
        tx.append([PendingEvent("CitizenCommentRemoved", known["complaint_id"],
                                {"comment_id": comment.comment_id})])
        return "comment_removed", known["complaint_id"]


# -- helpers (inside the caller's transaction) ------------------------------------------------------
def _reply_to(page_id: str, psid: str, platform: str) -> dict:
    """Where notification answers: the Page and the citizen's scoped id. Instagram Direct is
    answered through the same Send API of the Instagram account's Page, to the IGSID; the extra
    ``platform: instagram`` tells notification which thread (and limits) it is."""
    reply_to = {"page_id": page_id, "psid": psid}
    if platform == INSTAGRAM:
        reply_to["platform"] = INSTAGRAM
    return reply_to


def _seen(tx: Transaction, key: str) -> bool:
    seen = tables.seen_items.c.item_key
    return tx.execute(select(seen).where(seen == key)).first() is not None


def _mark_seen(tx: Transaction, key: str, complaint_id: str | None) -> None:
    tx.execute(tables.seen_items.insert().values(item_key=key, complaint_id=complaint_id,
                                                 seen_at=isoformat_utc(utc_now())))


def _comment(tx: Transaction, comment_id: str):
    return tx.execute(select(tables.comments).where(tables.comments.c.comment_id == comment_id)).mappings().first()


def _parse(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


def _latest(previous: datetime | None, current: datetime | None) -> str | None:
    """Bubbles may arrive out of order: the latest citizen time never goes back."""
    moments = [m for m in (previous, current) if m is not None]
    return isoformat_utc(max(moments)) if moments else None


def levy_reported(old_text: str, new_text: str, added_text: str) -> bool:
    """Whether an amendment reports an illegal levy: the part just added does, or the text as a
    whole became one (a story told over several bubbles). A complaint already about a levy whose
    confidentiality the desk lifted is not re-marked by more words unless they report one."""
    if classify(added_text).category in CONFIDENTIAL_CATEGORIES:
        return True
    return (classify(new_text).category in CONFIDENTIAL_CATEGORIES
            and classify(old_text).category not in CONFIDENTIAL_CATEGORIES)


def _amend(tx: Transaction, complaint, new_text: str, why: str, latest: str | None,
           new_attachments: list, added_text: str) -> None:
    new_attachments = register_media(tx, complaint["complaint_id"], new_attachments, utc_now(), from_meta=True)
    attachments = (json.loads(complaint["attachments"]) if complaint["attachments"] else []) + list(new_attachments)
    found = classify(new_text)
    reasons = {key: list(value) for key, value in found.reasons.items()}
    version = tx.database.event_store.current_version(tx.connection, complaint["complaint_id"])
    levy = levy_reported(complaint["text"], new_text, added_text)
    # Beyond the design's fields: the attachments so far and the classification of the new text,
    # so routing may reconsider (it is free to ignore them).
    tx.append([PendingEvent(ev.COMPLAINT_AMENDED, complaint["complaint_id"], {
        "text": new_text, "why": why, "last_citizen_message_at": latest, "levy_reported": levy,
        "attachments": attachments, "category": found.category, "region_code": found.region_code,
        "priority": found.priority, "reasons": reasons}, expected_version=version)])
    values = dict(text=new_text, attachments=json.dumps(attachments), last_citizen_message_at=latest)
    if levy:
        values["confidential"] = True  # routing decides it too; intake never shows less than that
    tx.execute(update(tables.complaints).where(tables.complaints.c.complaint_id == complaint["complaint_id"])
               .values(**values))


def _citizen_message(tx: Transaction, complaint_id: str, text: str, attachments: list, reply_to: dict,
                     message_at: str, latest: str | None) -> None:
    attachments = register_media(tx, complaint_id, attachments, utc_now(), from_meta=True)
    tx.append([PendingEvent("CitizenMessageReceived", complaint_id, {
        "text": text, "attachments": attachments, "reply_to": reply_to, "message_at": message_at})])
    tx.execute(update(tables.complaints).where(tables.complaints.c.complaint_id == complaint_id)
               .values(last_citizen_message_at=latest))
