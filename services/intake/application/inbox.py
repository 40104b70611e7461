"""The webhook inbox: a signed body is committed as it arrived before Meta gets its 200, then
processed in ONE transaction: every item (each in a savepoint, with its dedupe key in
``seen_items`` and its events), what could not be applied quarantined, and the body marked
processed — so a complaint costs two intake commits (the body, then its processing), and a database
failure leaves the body pending with nothing of it applied. Reprocessing a body — after a crash, by
the inbox timer, or a duplicated delivery from Meta — files nothing twice. What cannot be
understood is quarantined as a one-item body (kind ``webhook``) that ``replay`` processes again
once the cause is fixed. The tables are ``adapters/inbox_store.py``'s.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from shared.core import config
from shared.core.db import Transaction
from shared.core.exclusive import exclusive
from shared.core.events import InvalidEvent, isoformat_utc, parse_iso, utc_now
from shared.core.eventstore import PendingEvent
from shared.core.text import check_unicode
from shared.core.store import ServiceStore
from services.intake.adapters import inbox_store
from services.intake.adapters.inbox_store import CONFLICTS, INFRASTRUCTURE_ERRORS, WebhookBodies, savepoint
from services.intake.domain.classifier import classify
from shared.core.events import types as ev
from shared.core.reference import CONFIDENTIAL_CATEGORIES
from services.intake.domain.conversation import (AMEND, AWAIT_NEW, FILE, MESSAGE, STATUS, Conversation,
                                          attachment_text, decide, extended_text)
from services.intake.domain.filing import file_new
from services.intake.domain import followup
from services.intake.adapters.store import (find_by_tracking_code, find_complaint, record_new_complaint,
                                           remember_conversation)
from services.intake.adapters.media import register as register_media  # evidence: domain/media.py
from services.intake.domain.webhook import (INSTAGRAM, CitizenReaction, CommentChange, Ignored, MessengerMessage,
                                            ParsedBody, Problem, StandbyMode, parse_body, parse_standby_mode)

log = logging.getLogger("intake.inbox")

# Unknown tracking codes still get a StatusRequested (notification answers "not found"): its
# complaint id is derived from the message, so a redelivery maps to the same id.
STATUS_NAMESPACE = uuid.UUID("5f0c2a7e-6d1b-4f38-9a41-1c0b9c2d7e11")
#: Pending bodies processed per transaction when a backlog exists. Small on purpose: on SQLite
#: under eventlet nothing else in the process runs while a transaction is open (the webhook's
#: next 200s wait for it), so a group buys fewer fsyncs with at most a few bodies' latency.
GROUP_BODIES = 8


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


class _NeedsSavepoints(Exception):
    """An item failed, or met a conflict, in a group processed without savepoints: the group's
    transaction is given up and the group processed again with a savepoint an item."""


class WebhookInbox:
    def __init__(self, store: ServiceStore, settings: WebhookSettings):
        self.store = store
        self.database = store.database
        self.settings = settings
        self.bodies = WebhookBodies(store.database)
        # False only while ``process_many`` tries a group without savepoints.
        self._savepoints = True

    # -- the durable part --------------------------------------------------------------------
    def store_body(self, raw_body: bytes) -> int:
        """Commit the body as it arrived (before Meta's 200); returns its inbox id."""
        return self.bodies.store(raw_body)

    def pending(self, older_than_seconds: float, limit: int = 100) -> list[int]:
        return self.bodies.pending(older_than_seconds, limit)

    # -- processing --------------------------------------------------------------------------
    def parse(self, body) -> ParsedBody:
        settings = self.settings
        return parse_body(body, settings.accepted_pages, instagram_accounts=settings.instagram_accounts,
                          standby=settings.standby)

    def drain(self, pause: Callable[[], None] = lambda: None, limit: int = 100,
              wait_seconds: float = 2.0, busy: Callable[[], bool] = lambda: False) -> int:
        """Process every pending body, oldest first (a citizen's bubbles in the order Meta sent
        them), until none is left; returns how many were processed. ``pause`` runs between bodies,
        never inside a transaction (the service lets other green threads — the webhook's next
        deliveries — run there). While ``busy()`` (webhooks are being answered) a transaction
        holds one body, not a group: nothing else in the process runs while it is open. A
        database failure propagates and leaves the body pending.

        One intake replica drains at a time (``shared.core.exclusive``): two draining at once
        could apply a citizen's later bubble before an earlier one. A replica that finds the
        drain taken tries again for ``wait_seconds`` (the holder may be just finishing, before
        the body this replica stored), then leaves it to the holder and to the inbox timer."""
        deadline = time.monotonic() + wait_seconds
        while True:
            with exclusive(self.database.engine, "webhook-inbox") as mine:
                if mine:
                    return self._drain(pause, limit, busy)
            if time.monotonic() >= deadline:
                return 0
            time.sleep(0.1)

    def _drain(self, pause: Callable[[], None], limit: int, busy: Callable[[], bool]) -> int:
        done = 0
        while True:
            pending = self.pending(older_than_seconds=0, limit=limit)
            if not pending:
                return done
            # A backlog is processed GROUP_BODIES bodies a commit (group commit), still oldest
            # first — one a commit while webhooks are arriving.
            start = 0
            while start < len(pending):
                group = pending[start:start + (1 if busy() else GROUP_BODIES)]
                self.process_many(group)
                start += len(group)
                done += len(group)
                pause()

    def process(self, inbox_id: int) -> dict:
        """Apply every item of one stored body — all of it in one transaction with the body
        marked processed; returns the count of each outcome ({} when the body is not pending). A
        database failure rolls all of it back: the body stays pending, as it was."""
        return self.process_many([inbox_id])[0]

    def process_many(self, inbox_ids: list[int]) -> list[dict]:
        """``process`` for several bodies, in the order given, in ONE transaction: one commit for
        them all; a database failure leaves every one of them pending.

        Tried first without a savepoint an item (a savepoint and its release were a sixth of what a
        body cost): when every item applies — nearly always — the outcome is the same. An item that
        fails or meets a conflict gives the attempt up, and the group runs again with savepoints, so
        that it is undone alone and quarantined as before."""
        try:
            self._savepoints = False
            return self._process_many(inbox_ids)
        except _NeedsSavepoints:
            self._savepoints = True
            return self._process_many(inbox_ids)
        finally:
            self._savepoints = True

    def _process_many(self, inbox_ids: list[int]) -> list[dict]:
        outcomes: list[dict | None] = []    # None: not pending (processed already)
        with self.database.transaction() as tx:
            for inbox_id in inbox_ids:
                row = self.bodies.take(tx, inbox_id)
                if row is None:
                    outcomes.append(None)
                    continue
                counts: dict[str, int] = {}
                for index, (item, one_item_body) in enumerate(self._items(row)):
                    outcome = self.apply(tx, item, one_item_body, row["received_at"], f"{inbox_id}:{index}")
                    counts[outcome] = counts.get(outcome, 0) + 1
                self.bodies.mark_processed(tx, inbox_id, counts)
                outcomes.append(counts)
        for inbox_id, counts in zip(inbox_ids, outcomes):
            if counts is not None:
                log.info("webhook body processed", extra={"inbox_id": inbox_id, "outcomes": counts})
        return [counts or {} for counts in outcomes]

    def _items(self, row) -> list:
        try:
            body = json.loads(row["body"])
            check_unicode(body)
        except (ValueError, RecursionError) as error:  # not JSON, too deep, a number too long
            return [(Problem(f"body is not JSON: {type(error).__name__}: {error}"[:500], row["body"]),
                     row["body"])]
        return list(self.parse(body).items)

    def apply(self, tx: Transaction, item, one_item_body, received_at: str, quarantine_key: str) -> str:
        """Apply one item inside ``tx`` (in a savepoint: a failing item undoes only itself and is
        quarantined in the same transaction); returns its outcome."""
        if isinstance(item, Ignored):
            return "ignored"
        if isinstance(item, Problem):
            return self._quarantine(tx, item.reason, one_item_body, quarantine_key)
        try:
            return self._apply_understood(tx, item, received_at)
        except (*INFRASTRUCTURE_ERRORS, _NeedsSavepoints):
            # The database is unwell (the body stays pending, the timer comes back), or a group
            # tried without savepoints gives up and runs again with them.
            raise
        except Exception as error:
            if not self._savepoints:
                raise _NeedsSavepoints() from error   # its writes are undone with the group's
            if isinstance(error, (InvalidEvent, ValueError, KeyError, TypeError)):
                return self._quarantine(tx, f"could not apply: {type(error).__name__}: {error}", one_item_body,
                                        quarantine_key)
            # Bodies are processed in arrival order behind the 200: an item that keeps failing for
            # a reason other than the database (a bug, a conflict that does not clear) must not
            # hold up every later body. It waits in quarantine, with the error, for a replay.
            log.exception("webhook item could not be applied")
            return self._quarantine(tx, f"could not apply: {type(error).__name__}: {error}"[:500], one_item_body,
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
        with self.database.transaction() as tx:
            if not problems:
                try:
                    for understood, _body in items:
                        if not isinstance(understood, (Ignored, Problem)):
                            self._apply_understood(tx, understood, item["quarantined_at"])
                except INFRASTRUCTURE_ERRORS:
                    raise
                except (InvalidEvent, ValueError, KeyError, TypeError) as error:
                    problems = [f"could not apply: {type(error).__name__}: {error}"]
            if problems:
                self.store.quarantine.mark_failed_again(tx.connection, item["item_id"], "; ".join(problems), actor)
            else:
                self.store.quarantine.mark_replayed(tx.connection, item["item_id"], actor)
        return "still_quarantined" if problems else "replayed"

    def _quarantine(self, tx: Transaction, reason: str, payload, quarantine_key: str) -> str:
        key = f"quarantine:{quarantine_key}"
        try:
            with self._item(tx):
                if inbox_store.seen(tx, key):
                    return "quarantined"
                self.store.quarantine.put(tx.connection, "webhook", reason, payload, source="facebook")
                inbox_store.mark_seen(tx, key, None)
        except CONFLICTS:
            if not self._savepoints:
                raise _NeedsSavepoints()
            pass  # quarantined by another worker at the same moment (PostgreSQL)
        log.warning("webhook item quarantined: %s", reason)
        return "quarantined"

    def _apply_understood(self, tx: Transaction, item, received_at: str) -> str:
        if isinstance(item, MessengerMessage):
            return self._once(tx, f"mid:{item.mid}", lambda tx: self._message(tx, item, received_at))
        if isinstance(item, CitizenReaction):
            return self._once(tx, f"mid:{item.mid}", lambda tx: self._reaction(tx, item))
        if isinstance(item, CommentChange):
            if item.verb == "remove":
                return self._once(tx, f"remove:{item.comment_id}", lambda tx: self._comment_removed(tx, item))
            if item.verb == "edited":
                digest = hashlib.sha256(item.text.encode("utf-8")).hexdigest()[:24]
                return self._once(tx, f"edit:{item.comment_id}:{digest}",
                                  lambda tx: self._comment_edited(tx, item, received_at))
            return self._once(tx, f"comment:{item.comment_id}",
                              lambda tx: self._comment_added(tx, item, received_at))
        raise TypeError(f"cannot apply {type(item).__name__}")

    def _once(self, tx: Transaction, key: str, effect) -> str:
        """Run ``effect`` and record ``key`` in one savepoint of ``tx``; a second run is a duplicate."""
        for attempt in range(4):
            try:
                with self._item(tx):
                    if inbox_store.seen(tx, key):
                        return "duplicate"
                    outcome, complaint_id = effect(tx)
                    inbox_store.mark_seen(tx, key, complaint_id)
                return outcome
            except CONFLICTS:
                if not self._savepoints:
                    raise _NeedsSavepoints()
                # Another worker handled the same item, or the same conversation, at the same
                # moment (PostgreSQL): the savepoint undid this try; read again and decide again
                # (READ COMMITTED: the next statement sees what the other one committed).
                if attempt == 3:
                    raise
        return "duplicate"

    def _item(self, tx: Transaction) -> contextlib.AbstractContextManager:
        """What an item is applied in: a savepoint of ``tx``, or — in a group tried without
        them — nothing (a failure then gives the whole attempt up)."""
        return savepoint(tx) if self._savepoints else contextlib.nullcontext(tx)

    # -- Messenger -----------------------------------------------------------------------------
    def _message(self, tx: Transaction, message: MessengerMessage, received_at: str):
        conversation_row = inbox_store.conversation(tx, message.page_id, message.psid)
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
        answered = self._follow_up_answer(tx, message, complaint, conversation)
        if answered is not None:
            return answered
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
            tx.append([PendingEvent(ev.STATUS_REQUESTED, complaint_id, {
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

    def _follow_up_answer(self, tx: Transaction, message: MessengerMessage, complaint, conversation):
        """The citizen's answer to "Sudah selesai?" (``domain/followup.py``), recorded as
        ``CitizenAnsweredFollowUp`` on the complaint it answers; None when the message is not one
        (it then goes the usual way). One of our quick-reply payloads answers the complaint it
        names — as ``stale`` when that is no longer the conversation's closed complaint (reopened
        meanwhile, or an older one); free text answers only the conversation's *closed* complaint."""
        words = (message.text or "").strip()
        target = None
        answer = None
        payload = followup.parse_payload(message.payload, words) if message.payload else None
        if payload is not None:
            target = find_complaint(tx.connection, payload.complaint_id)
        if target is not None and payload is not None:
            current = (complaint is not None and complaint["complaint_id"] == target["complaint_id"]
                       and not complaint["open"])
            answer = payload.answer if current else followup.Answer(followup.STALE, words)
            via = "postback" if message.postback else "quick_reply"
        else:
            if message.postback:
                return "ignored", None  # our postback with a payload no longer understood
            if message.attachments or complaint is None or complaint["open"]:
                return None
            answer = followup.recognise(words)
            if answer is None:
                return None
            target, via = complaint, "text"
        sent_at = isoformat_utc(message.sent_at)
        tx.append([PendingEvent(ev.CITIZEN_ANSWERED_FOLLOW_UP, target["complaint_id"], {
            "answer": answer.answer, "words": answer.words or words, "score": answer.score, "via": via,
            "tracking_code": target["tracking_code"],
            "reply_to": _reply_to(message.page_id, message.psid, message.platform),
            "message_at": sent_at})])
        latest = _latest(conversation.last_message_at if conversation else None, message.sent_at)
        remember_conversation(tx, message.page_id, message.psid,
                              conversation.complaint_id if conversation else None, False, latest)
        log.info("follow-up answered: %s", answer.answer, extra={"complaint_id": target["complaint_id"]})
        return "follow_up_answered", target["complaint_id"]

    def _reaction(self, tx: Transaction, reaction: CitizenReaction):
        """A sticker, the like button or a heart: ``CitizenReacted`` on the conversation's current
        complaint — open or closed (a 👍 after the answer is the citizen's verdict) — and nothing
        else: no complaint filed or extended, the first burst and the conversation left as they
        were. Without a complaint to react to it is ignored."""
        conversation_row = inbox_store.conversation(tx, reaction.page_id, reaction.psid)
        complaint_id = conversation_row["complaint_id"] if conversation_row is not None else None
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
            answer = followup.recognise(comment.text) \
                if complaint is not None and not complaint["open"] and not comment.attachments else None
            if answer is not None:
                # "Belum, masih rusak" under the citizen's own comment of a closed complaint: the
                # answer to "Sudah selesai?" (issue 19), not a new complaint.
                tx.append([PendingEvent(ev.CITIZEN_ANSWERED_FOLLOW_UP, complaint["complaint_id"], {
                    "answer": answer.answer, "words": answer.words, "score": answer.score, "via": "text",
                    "tracking_code": complaint["tracking_code"], "reply_to": reply_to,
                    "message_at": written_at})])
                inbox_store.record_comment(tx, comment.comment_id, complaint["complaint_id"], comment.page_id,
                                           comment.post_id, origin=False)
                return "follow_up_answered", complaint["complaint_id"]
            if complaint is not None and complaint["open"]:
                # A reply under the citizen's own complaint comment continues that complaint.
                latest = _latest(_parse(complaint["last_citizen_message_at"]), parse_iso(written_at))
                _citizen_message(tx, complaint["complaint_id"], text, comment.attachments, reply_to,
                                 written_at, latest)
                inbox_store.record_comment(tx, comment.comment_id, complaint["complaint_id"], comment.page_id,
                                           comment.post_id, origin=False)
                return "message_received", complaint["complaint_id"]
        new = file_new({"text": text, "channel": "facebook_comment", "reply_to": reply_to,
                        "attachments": comment.attachments, "last_citizen_message_at": written_at,
                        "received_at": received_at}, utc_now())
        record_new_complaint(tx, new)
        inbox_store.record_comment(tx, comment.comment_id, new.complaint_id, comment.page_id, comment.post_id,
                                   origin=True)
        log.info("complaint filed from a Page comment", extra={"complaint_id": new.complaint_id})
        return "filed", new.complaint_id

    def _comment_edited(self, tx: Transaction, comment: CommentChange, received_at: str):
        known = _comment(tx, comment.comment_id)
        if known is None:
            # We never saw it added (it predates the subscription, or that delivery was lost).
            if inbox_store.seen(tx, f"comment:{comment.comment_id}"):
                return "ignored", None
            outcome, complaint_id = self._comment_added(tx, comment, received_at)
            inbox_store.mark_seen(tx, f"comment:{comment.comment_id}", complaint_id)
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
        tx.append([PendingEvent(ev.CITIZEN_COMMENT_REMOVED, known["complaint_id"],
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


def _comment(tx: Transaction, comment_id: str):
    return inbox_store.comment(tx, comment_id)


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
    inbox_store.update_complaint(tx, complaint["complaint_id"], **values)


def _citizen_message(tx: Transaction, complaint_id: str, text: str, attachments: list, reply_to: dict,
                     message_at: str, latest: str | None) -> None:
    attachments = register_media(tx, complaint_id, attachments, utc_now(), from_meta=True)
    # Any text of the complaint counts: a levy told after the first burst makes it confidential
    # as an amendment's does (routing records it; CitizenMessageReceived v2).
    levy = classify(text).category in CONFIDENTIAL_CATEGORIES
    tx.append([PendingEvent(ev.CITIZEN_MESSAGE_RECEIVED, complaint_id, {
        "text": text, "attachments": attachments, "reply_to": reply_to, "message_at": message_at,
        "levy_reported": levy})])
    values: dict = dict(last_citizen_message_at=latest)
    if levy:
        values["confidential"] = True  # routing decides it too; intake never shows less than that
    inbox_store.update_complaint(tx, complaint_id, **values)
