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
from typing import Optional

from sqlalchemy import func, select, update

from shared.core.consumer import HandlerRejected
from shared.core.events import Envelope, isoformat_utc, parse_iso, utc_now
from shared.core.events import types as ev
from shared.core.events.catalogue import event_types_of
from shared.core.handlers import EventHandlers, handles
from services.notification.domain import composer
from services.notification.adapters import tables
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


def _iso(value) -> Optional[str]:
    return isoformat_utc(parse_iso(value)) if value else None


def _later(current: Optional[str], candidate: Optional[str]) -> Optional[str]:
    candidate = _iso(candidate)
    if current is None:
        return candidate
    if candidate is None:
        return current
    return max(current, candidate)  # one ISO format: string order is time order


def _complaint(tx, complaint_id: str) -> Optional[dict]:
    query = select(tables.complaints).where(tables.complaints.c.complaint_id == complaint_id)
    if tx.connection.dialect.name == "postgresql":
        query = query.with_for_update()  # intake's and routing's handlers may race on one complaint
    row = tx.execute(query).mappings().first()
    return dict(row) if row else None


def _ensure_complaint(tx, complaint_id: str) -> dict:
    row = _complaint(tx, complaint_id)
    if row is None:
        tx.execute(tables.complaints.insert().values(
            complaint_id=complaint_id, filed=False, confidential=False, private_reply_used=False,
            updated_at=isoformat_utc(utc_now())))
        row = _complaint(tx, complaint_id)
    return row


def _update_complaint(tx, complaint_id: str, **values) -> None:
    values["updated_at"] = isoformat_utc(utc_now())
    tx.execute(update(tables.complaints).where(tables.complaints.c.complaint_id == complaint_id)
               .values(**values))


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
    seq = tx.execute(select(func.max(tables.outgoing.c.seq))
                     .where(tables.outgoing.c.lane == lane)).scalar() or 0
    new = 0
    for index, part in enumerate(split_for(draft.text, platform)):
        message_id = message_id_for(trigger_event_id, draft.identity_kind, index)
        exists = tx.execute(select(tables.outgoing.c.message_id)
                            .where(tables.outgoing.c.message_id == message_id)).first()
        if exists:
            continue
        seq += 1
        new += 1
        tx.execute(tables.outgoing.insert().values(
            message_id=message_id, trigger_event_id=trigger_event_id, complaint_id=complaint_id,
            lane=lane, seq=seq, kind=draft.kind, part_index=index, page_id=page_id,
            audience=audience, reply_to=json.dumps(reply_to) if reply_to else None,
            last_message_at=_iso(last_message_at), human_written=draft.human_written,
            text=part, public_text=draft.public_text,
            excluded_channels=json.dumps(list(draft.excluded_channels)), fallback_reasons="[]",
            state="pending", attempts=0, next_attempt_at=now, created_at=now))
    return new


def plan_messages(tx, complaint_id: str) -> int:
    """Record the messages of every not-yet-planned event of a filed complaint, in order."""
    row = _complaint(tx, complaint_id)
    if row is None or not row["filed"]:
        return 0
    history = complaint_history(tx.connection, complaint_id)
    # Confidential as the complaint is now, not as it was at each event: a message composed late
    # (waiting for ComplaintFiled) must not name what has become confidential meanwhile.
    view = view_of(row, history)
    recorded = 0
    for event in history:
        if event["planned"]:
            continue
        for draft in composer.drafts_for_event(view, event["event_type"], event["data"]):
            recorded += record_message(
                tx, trigger_event_id=event["event_id"], complaint_id=complaint_id,
                lane=complaint_id, page_id=(view.reply_to or {}).get("page_id"), draft=draft,
                audience="complaint", platform=platform_of(view.reply_to))
        tx.execute(update(tables.complaint_events)
                   .where(tables.complaint_events.c.event_id == event["event_id"])
                   .values(planned=True))
    return recorded


def _record_event(tx, envelope: Envelope, data: dict) -> None:
    recorded = tx.execute(select(tables.complaint_events.c.data).where(
        tables.complaint_events.c.event_id == envelope.event_id)).scalar()
    if recorded is not None:
        if "lifecycle" in data and "lifecycle" not in json.loads(recorded):
            # Recorded before routing's events carried the lifecycle; routing's log now gives it.
            tx.execute(update(tables.complaint_events)
                       .where(tables.complaint_events.c.event_id == envelope.event_id)
                       .values(data=json.dumps(data, ensure_ascii=False)))
        return
    tx.execute(tables.complaint_events.insert().values(
        event_id=envelope.event_id, complaint_id=envelope.complaint_id, source=envelope.source,
        version=envelope.version, event_type=envelope.event_type,
        occurred_at=_iso(envelope.occurred_at),
        data=json.dumps(data, ensure_ascii=False), planned=False))


class NotificationHandlers(EventHandlers):
    """What notification does with each event it consumes."""

    @handles(ev.COMPLAINT_FILED)
    def on_complaint_filed(self, tx, envelope: Envelope):
        data = envelope.data
        row = _ensure_complaint(tx, envelope.complaint_id)
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
        _update_complaint(tx, envelope.complaint_id, **values)
        _record_event(tx, envelope, {"channel": data["channel"]})
        plan_messages(tx, envelope.complaint_id)

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
        row = tx.execute(select(tables.complaints).where(
            func.upper(tables.complaints.c.tracking_code) == code,
            tables.complaints.c.filed.is_(True))).mappings().first()
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
        _ensure_complaint(tx, envelope.complaint_id)
        _record_event(tx, envelope, {k: envelope.data[k] for k in _KEPT if k in envelope.data})
        plan_messages(tx, envelope.complaint_id)
