"""The sender's reads and writes: which messages are due (the first pending one of each lane),
leasing a message before Meta is called, the facts ``domain.delivery`` asks for, and recording
what it decided — each a short unit of work, never around a call to Meta. The writes of the
sender's lanes are group-committed (``shared.core.group_commit``): lanes that lease or record at
the same moment share one transaction, and each returns after the commit that made its write
durable."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Optional

from sqlalchemy import Integer, bindparam, case, delete, func, or_, select, update

from shared.core.fast_sql import fast
from shared.core.db import Database
from shared.core.events import isoformat_utc, parse_iso
from shared.core.eventstore import PendingEvent
from shared.core.group_commit import GroupCommit, group_commit_for
from shared.core.events import types as ev
from services.notification.adapters import tables
from services.notification.adapters.records import comment_state, confidential_now, remember_comment
from services.notification.domain import delivery
from services.notification.domain.policy import COMMENT_PUBLIC, PRIVATE_REPLY_USED, DeliveryPlan, MessageKind


# The sender's statements, built once and executed with a parameters dict: building them on every
# call (coercions, cache keys) was ~40% of notification's CPU. Bind names are prefixed ``b_`` so
# that they never collide with a column named in an UPDATE's SET or an INSERT's VALUES.
_out, _holds = tables.outgoing, tables.page_holds
_HOLDS = select(_holds)
_earlier = _out.alias("earlier")
# Lane heads: the first pending message of each lane, at most ``b_limit``: lanes whose head
# answers something the citizen just did first (``MessageKind.FIRST_REPLIES``), then oldest first.
_HEADS = select(_out).where(_out.c.state == "pending", _out.c.seq == (
    select(func.min(_earlier.c.seq)).where(_earlier.c.lane == _out.c.lane, _earlier.c.state == "pending")
    .scalar_subquery()))
# (Equalities, not an IN list: an expanding IN cannot be compiled once for the driver.)
_HEADS_ORDER = (case((or_(*(_out.c.kind == kind for kind in MessageKind.FIRST_REPLIES)), 0), else_=1),
                _out.c.created_at, _out.c.seq)
_LIMIT = bindparam("b_limit", type_=Integer)
_HEADS_ALL = _HEADS.order_by(*_HEADS_ORDER).limit(_LIMIT)
_HEADS_NOT_HELD = _HEADS.where(_out.c.page_id.notin_(bindparam("b_excluded", expanding=True))) \
    .order_by(*_HEADS_ORDER).limit(_LIMIT)
_HEADS_OF_PAGE = _HEADS.where(_out.c.page_id == bindparam("b_page_id")).order_by(*_HEADS_ORDER).limit(_LIMIT)
_LANE_HEAD = select(_out).where(_out.c.lane == bindparam("b_lane"), _out.c.state == "pending") \
    .order_by(_out.c.seq).limit(1)
_HELD = select(_holds.c.page_id).where(_holds.c.page_id == bindparam("b_page_id"))
# The lease's compare-and-set on ``next_attempt_at``.
_SET_DUE = update(_out).where(_out.c.message_id == bindparam("b_message_id"), _out.c.state == "pending",
                              _out.c.next_attempt_at == bindparam("b_due")).values(
    next_attempt_at=bindparam("b_next_attempt_at"))
_PUBLIC_REPLY_SENT = select(_out.c.message_id).where(
    _out.c.trigger_event_id == bindparam("b_trigger_event_id"), _out.c.kind == bindparam("b_kind"),
    _out.c.part_index < bindparam("b_part_index"), _out.c.channel == COMMENT_PUBLIC,
    or_(_out.c.state == delivery.SENT, _out.c.state == delivery.FOLDED))   # equalities: see _HEADS_ORDER
# SET: the columns named in the parameters dict (besides ``b_message_id``), if still pending.
_UPDATE_PENDING = update(_out).where(_out.c.message_id == bindparam("b_message_id"), _out.c.state == "pending")
_COMPLAINT = select(tables.complaints).where(tables.complaints.c.complaint_id == bindparam("b_complaint_id"))
_UPDATE_COMPLAINT = update(tables.complaints).where(tables.complaints.c.complaint_id == bindparam("b_complaint_id"))
_LIFT_HOLD = delete(_holds).where(_holds.c.page_id == bindparam("b_page_id"))
_NOTE_PROBE = update(_holds).where(_holds.c.page_id == bindparam("b_page_id")).values(
    last_probe_at=bindparam("b_last_probe_at"))
_INSERT_HOLD = _holds.insert()
# Run straight on the driver where they can be (``shared.core.fast_sql``).
_HOLDS = fast(_HOLDS)
_HEADS_ALL = fast(_HEADS_ALL)
_HEADS_OF_PAGE = fast(_HEADS_OF_PAGE)
_LANE_HEAD = fast(_LANE_HEAD)
_HELD = fast(_HELD)
_SET_DUE = fast(_SET_DUE)
_PUBLIC_REPLY_SENT = fast(_PUBLIC_REPLY_SENT)
_UPDATE_PENDING = fast(_UPDATE_PENDING)
_COMPLAINT = fast(_COMPLAINT)
_UPDATE_COMPLAINT = fast(_UPDATE_COMPLAINT)
_LIFT_HOLD = fast(_LIFT_HOLD)
_NOTE_PROBE = fast(_NOTE_PROBE)
_INSERT_HOLD = fast(_INSERT_HOLD)


def _time(value: Optional[str]) -> Optional[datetime]:
    return parse_iso(value) if value else None


def _json(value: Optional[str]):
    return json.loads(value) if value else None


def message_of(row) -> delivery.PendingMessage:
    """An ``outgoing_messages`` row as the decision reads it."""
    return delivery.PendingMessage(
        message_id=row["message_id"], trigger_event_id=row["trigger_event_id"],
        complaint_id=row["complaint_id"], kind=row["kind"], audience=row["audience"],
        part_index=row["part_index"], text=row["text"], public_text=row["public_text"],
        human_written=bool(row["human_written"]), reply_to=_json(row["reply_to"]),
        last_message_at=_time(row["last_message_at"]),
        excluded_channels=frozenset(json.loads(row["excluded_channels"] or "[]")),
        attempts=row["attempts"], reason=row["reason"], code=row["code"])


def complaint_of(row) -> Optional[delivery.ComplaintRecord]:
    """A ``complaints`` row as the decision reads it."""
    if row is None:
        return None
    return delivery.ComplaintRecord(
        reply_to=_json(row["reply_to"]), last_citizen_message_at=_time(row["last_citizen_message_at"]),
        comment_created_at=_time(row["comment_created_at"]),
        private_reply_used=bool(row["private_reply_used"]), known_psid=row["known_psid"])


@dataclass(frozen=True)
class Prepared:
    """One message ready for ``delivery.decide_send``: its plan and the facts it asked for
    (all but the Page's token, which is configuration)."""

    message: delivery.PendingMessage
    plan: DeliveryPlan
    confidential_now: bool
    public_reply_sent: bool

    def facts(self, page_configured: bool) -> delivery.Facts:
        return delivery.Facts(confidential_now=self.confidential_now,
                              public_reply_sent=self.public_reply_sent, page_configured=page_configured)


@dataclass(frozen=True)
class DueWork:
    """What one round of the sender may start: lane heads due now, and one probe per held Page
    whose probe is due."""

    heads: list[dict]
    probes: dict[str, dict]


@dataclass(frozen=True)
class Claimed:
    """A message leased for sending: its row (``next_attempt_at`` is the lease), the time it was
    due before the lease (to give the lease back), and what the decision needs."""

    row: dict
    original_due: str
    prepared: Prepared
    # Leased as its held Page's probe. Any other lease was taken with the Page not held (the
    # lease looked), so only a probe's success has a hold to lift.
    probe: bool = False


class Deliveries:
    """``outgoing_messages``, ``page_holds`` and the complaint columns the sender keeps."""

    def __init__(self, database: Database, writes: Optional[GroupCommit] = None):
        self.database = database
        self.writes = writes or group_commit_for(database)

    # -- what is due ----------------------------------------------------------------------------
    def held_pages(self) -> dict[str, str]:
        with self.database.read() as connection:
            rows = connection.execute(_HOLDS).mappings().all()
        return {row["page_id"]: row["reason"] for row in rows}

    def due_work(self, now: datetime, head_limit: int, probe_seconds: float) -> DueWork:
        """The first pending message of up to ``head_limit`` lanes whose Page is not held (none
        when the limit is 0), and for each held Page whose probe is due its oldest lane head."""
        with self.database.read() as connection:
            holds = {row["page_id"]: dict(row) for row in
                     connection.execute(_HOLDS).mappings()}
            heads = [] if head_limit <= 0 else self._lane_heads(connection, holds.keys(), head_limit)
            probes = {}
            for page_id, hold in holds.items():
                if delivery.probe_due(parse_iso(hold["since"]), _time(hold["last_probe_at"]), now,
                                      probe_seconds):
                    found = self._lane_heads(connection, (), limit=1, page_id=page_id)
                    if found:
                        probes[page_id] = found[0]
        return DueWork(heads, probes)

    @staticmethod
    def _lane_heads(connection, excluded_pages: Iterable[str], limit: int,
                    page_id: Optional[str] = None) -> list[dict]:
        """The first pending message of each lane (oldest lanes first), at most ``limit``."""
        excluded = list(excluded_pages)
        if page_id is not None:
            query, parameters = _HEADS_OF_PAGE, {"b_limit": limit, "b_page_id": page_id}
        elif excluded:
            query, parameters = _HEADS_NOT_HELD, {"b_limit": limit, "b_excluded": excluded}
        else:
            query, parameters = _HEADS_ALL, {"b_limit": limit}
        rows = connection.execute(query, parameters).mappings().all()
        return [dict(row) for row in rows]

    def claim_head(self, lane: str, now: datetime, lease_until: datetime, probe_page: Optional[str] = None,
                   human_agent_approved: bool = False, first_replies_only: bool = False) -> Optional[Claimed]:
        """The lane's first pending message, if it is due now and its Page is not held (unless
        this is that Page's probe): leased and prepared, in one transaction. ``None`` when there is
        nothing to send now, or another notification instance leased it first — or, with
        ``first_replies_only``, when the head is not one of ``MessageKind.FIRST_REPLIES`` (it then
        waits for the sender's next round, behind other complaints' first replies).

        The lease is a compare-and-set on ``next_attempt_at`` — it runs past the Graph timeout, and
        after a crash the message is simply due again when it ends — so several instances on one
        database never send a message twice. Reading the head, leasing it and reading what the
        decision needs are one transaction rather than three (a read, a write, a read): the
        sender's cost per message was mostly its transactions. Nothing here calls out, so the
        write transaction is as short as the reads were."""
        def claim(tx) -> Optional[Claimed]:
            row = tx.execute(_LANE_HEAD, {"b_lane": lane}).mappings().first()
            if row is None or row["next_attempt_at"] > isoformat_utc(now) or (
                    first_replies_only and row["kind"] not in MessageKind.FIRST_REPLIES) or (
                    probe_page != row["page_id"]
                    and tx.execute(_HELD, {"b_page_id": row["page_id"]}).first() is not None):
                tx.discard()   # nothing to send: the look that ends a lane commits nothing
                return None
            lease = isoformat_utc(lease_until)
            if not tx.execute(_SET_DUE, {"b_message_id": row["message_id"], "b_due": row["next_attempt_at"],
                                         "b_next_attempt_at": lease}).rowcount:
                tx.discard()
                return None
            leased = dict(row, next_attempt_at=lease)
            return Claimed(leased, row["next_attempt_at"],
                           self._prepare(tx.connection, leased, now, human_agent_approved),
                           probe=probe_page == row["page_id"])
        return self.writes.run(claim)

    def release(self, row: dict, original_due: str) -> None:
        """Give the lease back when the outcome left the message pending without a new time
        (a held Page, a pause): it is due again at once, not when the lease would end."""
        self.writes.run(lambda tx: tx.execute(_SET_DUE, {
            "b_message_id": row["message_id"], "b_due": row["next_attempt_at"], "b_next_attempt_at": original_due}))

    # -- the facts a decision asks for --------------------------------------------------------
    def _prepare(self, connection, row: dict, now: datetime, human_agent_approved: bool) -> Prepared:
        """The message, its plan from the complaint's current record and what is remembered of
        its comment, and what the decision asks about it (whether the complaint is confidential
        now; whether an earlier part went out as the public reply), read only when asked.
        ``human_agent_approved``: ``FACEBOOK_HUMAN_AGENT_APPROVED``."""
        message = message_of(row)
        complaint = None
        if message.audience == delivery.TO_COMPLAINT:
            complaint = complaint_of(connection.execute(
                _COMPLAINT, {"b_complaint_id": message.complaint_id}).mappings().first())
        comment = comment_state(connection, delivery.comment_of(message, complaint))
        plan = delivery.plan_for(message, complaint, now, comment, human_agent_approved)
        attempts = delivery.usable_attempts(message, plan)
        confidential = delivery.asks_confidentiality(message, attempts) and \
            confidential_now(connection, message.complaint_id)
        public_sent = delivery.asks_public_reply_sent(message, attempts) and \
            self._public_reply_sent(connection, message)
        return Prepared(message, plan, confidential, public_sent)

    @staticmethod
    def _public_reply_sent(connection, message: delivery.PendingMessage) -> bool:
        return connection.execute(_PUBLIC_REPLY_SENT, {
            "b_trigger_event_id": message.trigger_event_id, "b_kind": message.kind,
            "b_part_index": message.part_index}).first() is not None

    # -- recording what was decided ------------------------------------------------------------
    @staticmethod
    def _update_pending(tx, message: delivery.PendingMessage, values: dict):
        """Write ``values`` (never empty) into the message's row if it is still pending."""
        return tx.execute(_UPDATE_PENDING, {**values, "b_message_id": message.message_id})

    @staticmethod
    def _noted(failed: Optional[delivery.FailedCall]) -> dict:
        if failed is None:
            return {}
        return {"last_error": failed.last_error, "channel": failed.channel,
                "messaging_type": failed.messaging_type, "tag": failed.tag}

    def record_sent(self, message: delivery.PendingMessage, sent: delivery.Sent, now: datetime,
                    lift_hold: bool = True) -> bool:
        """Mark the message sent and append ``CitizenNotified`` (only if it was still pending),
        note the private reply spent, and — with ``lift_hold`` (the send was its held Page's
        probe) — lift the Page's hold; one transaction."""
        stamp = isoformat_utc(now)

        def unit(tx) -> bool:
            changed = self._update_pending(tx, message, dict(
                state=delivery.SENT, channel=sent.channel, messaging_type=sent.messaging_type,
                tag=sent.tag, graph_message_id=sent.graph_message_id, recipient_psid=sent.recipient_psid,
                attempts=sent.attempts, sent_at=stamp, finished_at=stamp,
                fallback_reasons=json.dumps(list(sent.fallback_reasons)))).rowcount
            if changed:
                if sent.replied_comment_id:
                    remember_comment(tx, sent.replied_comment_id, private_reply_closed=PRIVATE_REPLY_USED)
                if sent.private_reply_used:
                    values: dict = {"private_reply_used": True}
                    if sent.known_psid:
                        values["known_psid"] = sent.known_psid
                    tx.execute(_UPDATE_COMPLAINT, {"b_complaint_id": message.complaint_id, **values})
                tx.append([PendingEvent(ev.CITIZEN_NOTIFIED, message.complaint_id,
                                        delivery.notified_event(message, sent))])
            if lift_hold:
                # A success proves the Page's token works again. (A hold another replica placed
                # while an ordinary send was in flight is lifted by the Page's next probe.)
                tx.execute(_LIFT_HOLD, {"b_page_id": sent.page_id})
            return bool(changed)
        return self.writes.run(unit)

    def record_finished(self, message: delivery.PendingMessage, finish: delivery.Finish, now: datetime) -> bool:
        """End the message unsent and append ``CitizenNotificationFailed`` (if still pending)."""
        values = dict(self._noted(finish.failed_call), state=finish.state, reason=finish.reason,
                      code=finish.code, finished_at=isoformat_utc(now),
                      fallback_reasons=json.dumps(list(finish.fallback_reasons)))

        def unit(tx) -> bool:
            changed = self._update_pending(tx, message, values).rowcount
            if changed:
                tx.append([PendingEvent(ev.CITIZEN_NOTIFICATION_FAILED, message.complaint_id,
                                        delivery.failed_event(message, finish))])
            return bool(changed)
        return self.writes.run(unit)

    def record_folded(self, message: delivery.PendingMessage, now: datetime) -> None:
        self.writes.run(lambda tx: self._update_pending(tx, message, dict(
            state=delivery.FOLDED, channel=COMMENT_PUBLIC, finished_at=isoformat_utc(now))))

    def record_retry(self, message: delivery.PendingMessage,
                     step: delivery.RetryLater | delivery.NextChannel) -> None:
        """Count the attempt and schedule the next one (without the refused channel, for
        ``NextChannel``)."""
        values = dict(self._noted(step.failed_call), attempts=step.attempts,
                      next_attempt_at=isoformat_utc(step.at))
        if isinstance(step, delivery.NextChannel):
            values.update(excluded_channels=json.dumps(list(step.excluded_channels)), reason=step.reason,
                          code=step.code)

        def unit(tx) -> None:
            changed = self._update_pending(tx, message, values).rowcount
            if changed and isinstance(step, delivery.NextChannel) and step.private_reply_closed and step.comment_id:
                # Meta refused the private reply for this comment: never tried again for it.
                remember_comment(tx, step.comment_id, private_reply_closed=step.private_reply_closed,
                                 private_reply_code=step.code)
                if step.private_reply_used and message.audience == delivery.TO_COMPLAINT:
                    tx.execute(_UPDATE_COMPLAINT, {"b_complaint_id": message.complaint_id,
                                                   "private_reply_used": True})
        self.writes.run(unit)

    def record_hold(self, message: delivery.PendingMessage, hold: delivery.HoldPage, now: datetime) -> None:
        """Note the refused call (no attempt counted) and hold the Page, or note the probe."""
        stamp = isoformat_utc(now)

        def unit(tx) -> None:
            self._update_pending(tx, message, self._noted(hold.failed_call))
            held = tx.execute(_NOTE_PROBE, {"b_page_id": hold.page_id, "b_last_probe_at": stamp}).rowcount
            if not held:
                tx.execute(_INSERT_HOLD, dict(
                    page_id=hold.page_id, reason=hold.reason, since=stamp, last_probe_at=stamp))
        self.writes.run(unit)


# -- what the desk reads ------------------------------------------------------------------------------
def undelivered_rows(connection, limit: int) -> list[dict]:
    """Messages Facebook could not carry, oldest first, with the complaint's tracking code: no
    texts and no PSIDs."""
    out = tables.outgoing
    rows = connection.execute(
        select(out.c.message_id, out.c.trigger_event_id, out.c.complaint_id, out.c.kind,
               out.c.part_index, out.c.channel, out.c.reason, out.c.code,
               out.c.fallback_reasons, out.c.created_at, out.c.finished_at,
               tables.complaints.c.tracking_code)
        .select_from(out.outerjoin(tables.complaints,
                                   tables.complaints.c.complaint_id == out.c.complaint_id))
        .where(out.c.state == delivery.UNDELIVERABLE)
        .order_by(out.c.finished_at).limit(limit)).mappings().all()
    return [dict(row, fallback_reasons=json.loads(row["fallback_reasons"] or "[]")) for row in rows]


def delivery_rows(connection, trigger_event_id: str) -> list[dict]:
    """The messages one event caused, in their lane's order, and where each stands."""
    out = tables.outgoing
    rows = connection.execute(
        select(out.c.message_id, out.c.kind, out.c.part_index, out.c.state, out.c.channel,
               out.c.messaging_type, out.c.tag, out.c.attempts, out.c.next_attempt_at,
               out.c.reason, out.c.code, out.c.last_error)
        .where(out.c.trigger_event_id == trigger_event_id)
        .order_by(out.c.seq)).mappings().all()
    return [dict(row) for row in rows]
