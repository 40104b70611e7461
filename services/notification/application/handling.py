"""Notification's event handlers (its handler table, which is also its subscriptions): keep its
own record of each complaint (who to answer, Meta's window times, routing's events with the
lifecycle each carries) and record the outgoing messages each event causes — in the consumer's
transaction, next to the processed-event record, under stable message ids, so a redelivered or
replayed event records nothing new and sends nothing twice.

Messages are recorded in the complaint's event order: routing's events wait until intake's
``ComplaintFiled`` and every earlier routing version are known (events of different types travel
on different queues and may arrive out of order). Status, agencies and confidentiality are read
from the lifecycle routing put on its events, never worked out here.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Optional

from shared.core import config
from shared.core.consumer import HandlerRejected
from shared.core.events import Envelope, isoformat_utc, parse_iso, utc_now
from shared.core.events import types as ev
from shared.core.events.catalogue import event_types_of
from shared.core.handlers import EventHandlers, handles
from services.notification.domain import composer
from services.notification.adapters import records
from services.notification.adapters.records import (complaint_history, confidential_now,  # noqa: F401 - the handlers' reads
                                                     remember_comment)
from services.notification.domain.composer import ComplaintView
from services.notification.domain.messages import split_for
from services.notification.domain.policy import message_id_for, platform_of

log = logging.getLogger("notification")

# The fields kept per routing event: what status answers and messages need — the lifecycle
# (status, agencies and their names, confidentiality after the event) and what a message quotes.
# The agency's answer text is public by contract (it goes to the citizen), so it is kept too.
_KEPT = ("lifecycle", "agency_code", "text", "reason", "duplicate_of")
# The loop with the citizen (issue 19): the score thanked for, where a reopen went, the reopen period.
_KEPT += ("score", "to_desk", "period_days")


def _iso(value) -> Optional[str]:
    return isoformat_utc(parse_iso(value)) if value else None


def _later(current: Optional[str], candidate: Optional[str]) -> Optional[str]:
    candidate = _iso(candidate)
    if current is None:
        return candidate
    if candidate is None:
        return current
    return max(current, candidate)  # one ISO format: string order is time order


_complaint = records.complaint_row
_ensure_complaint = records.ensure_complaint
_update_complaint = records.update_complaint


def view_of(row: dict, history: list[dict]) -> ComplaintView:
    """The complaint as a message is composed now: confidential as its latest routing event says."""
    return ComplaintView(tracking_code=row["tracking_code"], channel=row["channel"],
                         reply_to=json.loads(row["reply_to"]) if row["reply_to"] else None,
                         confidential=composer.current_confidentiality(history, row["confidential"]))


def record_message(tx, *, trigger_event_id: str, complaint_id: str, lane: str, page_id,
                   draft: composer.Draft, audience: str, reply_to=None,
                   last_message_at=None, platform: Optional[str] = None) -> int:
    """Record a draft's parts as pending messages; returns how many were new. ``platform``: the
    app of the conversation it goes to (Instagram Direct takes shorter parts than Messenger)."""
    now = isoformat_utc(utc_now())
    seq = records.last_seq(tx, lane)
    new = 0
    for index, part in enumerate(split_for(draft.text, platform)):
        message_id = message_id_for(trigger_event_id, draft.identity_kind, index)
        if records.message_recorded(tx.connection, message_id):
            continue
        seq += 1
        new += 1
        records.record_pending_message(tx,
            message_id=message_id, trigger_event_id=trigger_event_id, complaint_id=complaint_id,
            lane=lane, seq=seq, kind=draft.kind, part_index=index, page_id=page_id,
            audience=audience, reply_to=json.dumps(reply_to) if reply_to else None,
            last_message_at=_iso(last_message_at), human_written=draft.human_written,
            text=part, public_text=draft.public_text,
            excluded_channels=json.dumps(list(draft.excluded_channels)), fallback_reasons="[]",
            state="pending", attempts=0, next_attempt_at=now, created_at=now)
    return new


def plan_messages(tx, complaint_id: str, row: Optional[dict] = None) -> int:
    """Record the messages of every not-yet-planned event of a filed complaint, in order.
    ``row``: the complaint's row as the caller just read or wrote it in ``tx`` (else read here)."""
    if row is None:
        row = _complaint(tx, complaint_id)
    if row is None or not row["filed"]:
        return 0
    history = complaint_history(tx.connection, complaint_id)
    # Confidential as the complaint is now, not as it was at each event: a message composed late
    # (waiting for ComplaintFiled) must not name what has become confidential meanwhile.
    view = view_of(row, history)
    recorded = 0
    planned = []
    for event in history:
        if event["planned"]:
            continue
        for draft in composer.drafts_for_event(view, event["event_type"], event["data"]):
            recorded += record_message(
                tx, trigger_event_id=event["event_id"], complaint_id=complaint_id,
                lane=complaint_id, page_id=(view.reply_to or {}).get("page_id"), draft=draft,
                audience="complaint", platform=platform_of(view.reply_to))
        planned.append(event["event_id"])
    records.mark_planned(tx, planned)
    return recorded


def _record_event(tx, envelope: Envelope, data: dict) -> None:
    recorded = records.recorded_event_data(tx, envelope.event_id)
    if recorded is not None:
        if "lifecycle" in data and "lifecycle" not in json.loads(recorded):
            # Recorded before routing's events carried the lifecycle; routing's log now gives it.
            records.replace_event_data(tx, envelope.event_id, data)
        return
    records.record_event(tx, event_id=envelope.event_id, complaint_id=envelope.complaint_id,
                         source=envelope.source, version=envelope.version, event_type=envelope.event_type,
                         occurred_at=_iso(envelope.occurred_at), data=data)


class NotificationHandlers(EventHandlers):
    """What notification does with each event it consumes."""

    @handles(ev.COMPLAINT_FILED)
    def on_complaint_filed(self, tx, envelope: Envelope):
        data = envelope.data
        known = _complaint(tx, envelope.complaint_id)
        row = known or {"last_citizen_message_at": None}
        reply_to = data["reply_to"]
        values = dict(filed=True, tracking_code=data["tracking_code"], channel=data["channel"],
                      reply_to=json.dumps(reply_to) if reply_to else None,
                      confidential=bool(data["confidential"]))
        if reply_to and reply_to.get("comment_id"):
            # Meta's created_time of the comment: the private reply's 7-day window.
            values["comment_created_at"] = _iso(data["last_citizen_message_at"] or data["filed_at"])
        elif reply_to and reply_to.get("psid"):
            # A system filing over RPC for a live Messenger conversation may not know Meta's
            # timestamp; the filing time is then the best measure of the citizen's message.
            values["last_citizen_message_at"] = _later(
                row["last_citizen_message_at"], data["last_citizen_message_at"] or data["filed_at"])
        # One write of what the filing says: an INSERT for a complaint first heard of now, not a
        # placeholder row then updated.
        records.file_complaint(tx, envelope.complaint_id, values, known=known is not None)
        _record_event(tx, envelope, {"channel": data["channel"]})
        plan_messages(tx, envelope.complaint_id, {**(known or {}), **values})

    @handles(ev.COMPLAINT_AMENDED)
    def on_complaint_amended(self, tx, envelope: Envelope):
        row = _ensure_complaint(tx, envelope.complaint_id)
        reply_to = json.loads(row["reply_to"]) if row["reply_to"] else None
        if envelope.data["why"] == "comment_edited" or (reply_to and reply_to.get("comment_id")):
            return  # editing a comment opens no Messenger conversation
        _update_complaint(tx, envelope.complaint_id, last_citizen_message_at=_later(
            row["last_citizen_message_at"], envelope.data["last_citizen_message_at"]))

    @handles(ev.CITIZEN_MESSAGE_RECEIVED)
    def on_citizen_message(self, tx, envelope: Envelope):
        data = envelope.data
        reply_to = data.get("reply_to") or {}
        if not reply_to.get("psid"):
            return  # another comment opens no Messenger conversation
        row = _ensure_complaint(tx, envelope.complaint_id)
        filed_to = json.loads(row["reply_to"]) if row["reply_to"] else None
        if filed_to and platform_of(filed_to) != platform_of(reply_to):
            return  # a message in another app's thread opens no window in the complaint's own
        # For a comment complaint this PSID is where the conversation continues.
        _update_complaint(tx, envelope.complaint_id, known_psid=reply_to["psid"],
                          last_citizen_message_at=_later(row["last_citizen_message_at"],
                                                         data["message_at"]))

    @handles(ev.CITIZEN_ANSWERED_FOLLOW_UP)
    def on_follow_up_answered(self, tx, envelope: Envelope):
        """The citizen answered "Sudah selesai?" (or rated): a message of theirs in the thread —
        it opens Meta's 24-hour window there — and, where routing will not answer by its own
        events, the next question or a clear reply (``composer._loop_drafts``)."""
        data = envelope.data
        reply_to = data.get("reply_to") or {}
        row = _ensure_complaint(tx, envelope.complaint_id)
        filed_to = json.loads(row["reply_to"]) if row["reply_to"] else None
        if reply_to.get("psid") and (not filed_to or platform_of(filed_to) == platform_of(reply_to)):
            _update_complaint(tx, envelope.complaint_id, known_psid=reply_to["psid"],
                              last_citizen_message_at=_later(row["last_citizen_message_at"],
                                                             data["message_at"]))
        lifecycle = composer.latest_lifecycle(complaint_history(tx.connection, envelope.complaint_id)) or {}
        _record_event(tx, envelope, {"answer": data["answer"], "score": data.get("score"),
                                     "in_thread": bool(reply_to.get("psid")),
                                     "status_word": lifecycle.get("status")})
        plan_messages(tx, envelope.complaint_id)

    @handles(ev.CITIZEN_COMMENT_REMOVED)
    def on_comment_removed(self, tx, envelope: Envelope):
        """The citizen removed a comment: remembered for the comment, so that no public reply goes
        under it any more — messages already pending for it are dropped when the sender comes to
        them (undeliverable, ``comment_removed``), later ones are never sent there. A private
        reply and Messenger may still carry them."""
        comment_id = str(envelope.data["comment_id"])
        remember_comment(tx, comment_id, complaint_id=envelope.complaint_id,
                         removed_at=_iso(envelope.occurred_at), removed_event_id=envelope.event_id)
        log.info("comment removed: no public reply under it any more",
                 extra={"complaint_id": envelope.complaint_id, "event_id": envelope.event_id})

    @handles(ev.STATUS_REQUESTED)
    def on_status_requested(self, tx, envelope: Envelope):
        data = envelope.data
        asker = data.get("reply_to")
        code = str(data["tracking_code"]).strip().upper()
        row = records.filed_complaint_by_code(tx, code)
        history = complaint_history(tx.connection, row["complaint_id"]) if row else []
        view = view_of(row, history) if row else None
        full = composer.is_filer(view, row["known_psid"] if row else None, asker)
        if full:
            # The filer's question is a message of theirs: it reopens Meta's 24-hour window.
            _update_complaint(tx, row["complaint_id"], last_citizen_message_at=_later(
                row["last_citizen_message_at"], data["message_at"]))
        if not asker:
            return
        draft = composer.status_reply(data["tracking_code"], view, history, full,
                                      asked_from_comment=bool(asker.get("comment_id")))
        record_message(tx, trigger_event_id=envelope.event_id, complaint_id=envelope.complaint_id,
                       lane=envelope.complaint_id, page_id=asker.get("page_id"), draft=draft,
                       audience="asker", reply_to=asker, last_message_at=data["message_at"],
                       platform=platform_of(asker))

    @handles(*event_types_of("routing"))
    def on_routing_event(self, tx, envelope: Envelope):
        # Every routing event, ComplaintConfidentialityChanged included: its lifecycle is what
        # later messages and status answers read (the change itself tells the citizen nothing).
        if envelope.version < 1:
            raise HandlerRejected(f"routing version {envelope.version} is not a version")
        row = _ensure_complaint(tx, envelope.complaint_id)
        _record_event(tx, envelope, {k: envelope.data[k] for k in _KEPT if k in envelope.data})
        plan_messages(tx, envelope.complaint_id, row)


# --- "Sudah selesai?" once more (issue 19) ------------------------------------------------------------

def follow_up_days() -> float:
    """``NOTIFICATION_FOLLOW_UP_DAYS`` [7]: a resolved complaint whose citizen has not answered is
    asked once more after this many days (FixMyStreet's later question) — where a window allows."""
    return float(config.number("NOTIFICATION_FOLLOW_UP_DAYS", "7", above=0))


def follow_up_check_seconds() -> float:
    """``NOTIFICATION_FOLLOW_UP_CHECK_SECONDS`` [3600]: how often the later question is looked for."""
    return float(config.number("NOTIFICATION_FOLLOW_UP_CHECK_SECONDS", "3600", above=0))


# Resolutions older than this past the follow-up day are never asked about: Messenger's windows
# (24 h for an automated message) have long closed unless the citizen wrote again — and a
# question weeks late would only confuse.
_ASK_AGAIN_SPAN = timedelta(days=7)


def ask_again(database, now=None, days: Optional[float] = None) -> int:
    """Record "Sudah selesai?" once more for every complaint resolved ``days`` ago (up to a week
    before that) whose citizen has not answered; each complaint in its own transaction, under a
    stable message id (``follow_up_reminder`` of the resolution), so a second run records nothing.
    The sender then sends it where a window allows, else records it as failed (skipped) — never
    with HUMAN_AGENT, never for the desk. Returns how many were recorded."""
    now = now or utc_now()
    delay = timedelta(days=days if days is not None else follow_up_days())
    asked_before = isoformat_utc(now - delay)
    not_before = isoformat_utc(now - delay - _ASK_AGAIN_SPAN)
    with database.read() as connection:
        candidates = records.resolutions_between(connection, ev.COMPLAINT_RESOLVED, not_before, asked_before)
        pending = [(cid, event_id) for cid, event_id in candidates
                   if not records.message_recorded(connection, message_id_for(
                       event_id, composer.MessageKind.FOLLOW_UP_REMINDER))]
    recorded = 0
    for complaint_id in dict.fromkeys(cid for cid, _ in pending):
        with database.transaction() as tx:
            row = _complaint(tx, complaint_id)
            if row is None or not row["filed"]:
                continue
            history = complaint_history(tx.connection, complaint_id)
            due = composer.follow_up_due(history, asked_before, not_before)
            if due is None:
                continue
            view = view_of(row, history)
            if not composer.notifies(view):
                continue
            recorded += record_message(
                tx, trigger_event_id=due["event_id"], complaint_id=complaint_id, lane=complaint_id,
                page_id=(view.reply_to or {}).get("page_id"), draft=composer.follow_up_reminder(view),
                audience="complaint", platform=platform_of(view.reply_to))
    if recorded:
        log.info("asked %d citizens once more whether their complaint is solved", recorded)
    return recorded
