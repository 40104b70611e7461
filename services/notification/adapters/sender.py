"""The sender: delivers recorded outgoing messages through the Graph API and records each outcome
as an event, within Meta's rules (``policy.plan_delivery``, decided at send time from
notification's current record, so a citizen who wrote in Messenger meanwhile is answered there).

* A message row exists (``pending``) before any call; it is marked ``sent`` together with
  ``CitizenNotified`` in one transaction after Meta answered, so redeliveries, replays and
  restarts never send it again. The one duplicate window: a crash after Meta accepted a message
  and before that transaction committed; the message is then sent again on restart.
* Calls happen outside transactions. A few green threads send in parallel, one lane (complaint)
  each, so a complaint's messages go out strictly in the order they were recorded.
* The retry schedule is the rows' ``next_attempt_at`` (a restart resumes it); holds on Pages with
  an invalid token are rows of ``page_holds``; per-Page rate limiters live in memory.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta

import eventlet
from eventlet.event import Event
from nameko.extensions import DependencyProvider
from sqlalchemy import delete, func, select, update

from shared.core import config
from shared.core.events import isoformat_utc, parse_iso, utc_now
from shared.core.eventstore import PendingEvent
from shared.glue.providers import Storage, _find
from services.notification.adapters import tables
from services.notification.adapters.records import confidential_now
from services.notification.adapters.graph_client import GraphApiError, GraphClient
from services.notification.domain.policy import (COMMENT_PRIVATE, COMMENT_PUBLIC, FAIL_PERMANENT,
                                          HOLD_PAGE, NEXT_CHANNEL, RESPONSE, MessageKind,
                                          RETRIES_EXHAUSTED, RETRY, SLOW_DOWN, WINDOW_EXPIRED,
                                          RateLimiter, RetryPolicy, decide_on_error,
                                          plan_delivery)

log = logging.getLogger("notification.sender")

DEV_PAGE_TOKEN = "sandbox-page-token"
PAGE_NOT_CONFIGURED = "page_not_configured"
# Failures after which Facebook might still have carried the message later.
_NOT_PERMANENT = (RETRIES_EXHAUSTED, WINDOW_EXPIRED)


def page_token(page_id: str | None) -> str | None:
    pages = config.facebook_pages()
    if page_id in pages:
        return pages[page_id]
    if page_id and not pages and config.is_development():
        return DEV_PAGE_TOKEN
    return None


def _time(value):
    return parse_iso(value) if value else None


class Sender(DependencyProvider):
    def setup(self):
        self.store = _find(self.container, Storage).ensure()
        self.client = GraphClient(config.graph_url(), config.graph_version(),
                                  timeout=float(config.env("NOTIFICATION_GRAPH_TIMEOUT_SECONDS", "10")))
        base = float(config.env("NOTIFICATION_RETRY_BASE_SECONDS", "2"))
        # Meta asks for a real pause after a rate limit: five base delays (10 s by default).
        self.retry = RetryPolicy(base_seconds=base, rate_limit_min_pause_seconds=5 * base)
        self.send_rate = float(config.env("NOTIFICATION_SEND_RATE", "250"))
        self.concurrency = max(1, int(config.env("NOTIFICATION_SENDER_CONCURRENCY", "8")))
        self.probe_seconds = float(config.env("NOTIFICATION_TOKEN_PROBE_SECONDS", "30"))
        self.poll_seconds = float(config.env("NOTIFICATION_SENDER_POLL_SECONDS", "0.5"))
        self.lease_seconds = float(config.env("NOTIFICATION_GRAPH_TIMEOUT_SECONDS", "10")) + 5
        self.limiters: dict[str, RateLimiter] = {}
        self.busy_lanes: set[str] = set()
        self._wake = Event()
        self._running = False
        self.sent_count = 0
        self.store.database.after_commit_hooks.append(lambda _envelopes: self.wake())

    def start(self):
        self._running = True
        self.container.spawn_managed_thread(self._run)

    def stop(self):
        self._running = False
        self.wake()
        # Let sends in flight record their outcome: what Meta accepted must be marked sent.
        for _ in range(100):
            if not self.busy_lanes:
                break
            eventlet.sleep(0.1)
        self.client.close()

    def kill(self):
        self._running = False
        self.wake()

    def get_dependency(self, worker_ctx):
        return self

    def wake(self):
        if not self._wake.ready():
            self._wake.send(True)

    # -- what the service asks ---------------------------------------------------------------
    def held_pages(self) -> dict[str, str]:
        with self.store.database.read() as connection:
            rows = connection.execute(select(tables.page_holds)).mappings().all()
        return {row["page_id"]: row["reason"] for row in rows}

    # -- the loop ----------------------------------------------------------------------------
    def _run(self):
        while self._running:
            try:
                self.dispatch()
            except Exception:
                log.exception("sender dispatch failed; retrying")
            with eventlet.Timeout(self.poll_seconds, False):
                self._wake.wait()
            self._wake = Event()

    def _lane_heads(self, connection, excluded_pages, limit: int, page_id: str | None = None) -> list[dict]:
        """The first pending message of each lane (oldest lanes first), at most ``limit``."""
        out = tables.outgoing
        other = out.alias("earlier")
        first_seq = (select(func.min(other.c.seq))
                     .where(other.c.lane == out.c.lane, other.c.state == "pending")
                     .scalar_subquery())
        query = select(out).where(out.c.state == "pending", out.c.seq == first_seq)
        if page_id is not None:
            query = query.where(out.c.page_id == page_id)
        elif excluded_pages:
            query = query.where(out.c.page_id.notin_(list(excluded_pages)))
        rows = connection.execute(query.order_by(out.c.created_at, out.c.seq).limit(limit)).mappings().all()
        return [dict(row) for row in rows]

    def dispatch(self) -> int:
        now = utc_now()
        now_iso = isoformat_utc(now)
        free = self.concurrency - len(self.busy_lanes)
        with self.store.database.read() as connection:
            holds = {row["page_id"]: dict(row) for row in
                     connection.execute(select(tables.page_holds)).mappings()}
            # While every sender is busy there is nothing to start: skip the scan (it runs on
            # every commit's wake-up, so under load this keeps it off the hot path).
            heads = [] if free <= 0 else self._lane_heads(
                connection, holds.keys(), limit=free + len(self.busy_lanes) + 16)
            due_probes = {}
            for page_id, hold in holds.items():
                last = _time(hold["last_probe_at"]) or _time(hold["since"])
                if now - last >= timedelta(seconds=self.probe_seconds):
                    found = self._lane_heads(connection, (), limit=1, page_id=page_id)
                    if found:
                        due_probes[page_id] = found[0]
        started = 0
        for head in heads:
            if len(self.busy_lanes) >= self.concurrency:
                break
            if head["next_attempt_at"] > now_iso or head["lane"] in self.busy_lanes:
                continue
            self._start_lane(head["lane"], probe_page=None)
            started += 1
        for page_id, head in due_probes.items():
            if head["lane"] not in self.busy_lanes:
                self._start_lane(head["lane"], probe_page=page_id)
                started += 1
        return started

    def _start_lane(self, lane: str, probe_page: str | None) -> None:
        self.busy_lanes.add(lane)
        self.container.spawn_managed_thread(lambda: self._work_lane(lane, probe_page))

    def _work_lane(self, lane: str, probe_page: str | None) -> None:
        try:
            while self._running:
                with self.store.database.read() as connection:
                    row = connection.execute(
                        select(tables.outgoing).where(tables.outgoing.c.lane == lane,
                                                      tables.outgoing.c.state == "pending")
                        .order_by(tables.outgoing.c.seq).limit(1)).mappings().first()
                    held = row is not None and connection.execute(
                        select(tables.page_holds.c.page_id)
                        .where(tables.page_holds.c.page_id == row["page_id"])).first() is not None
                if row is None or row["next_attempt_at"] > isoformat_utc(utc_now()):
                    break
                if held and probe_page != row["page_id"]:
                    break
                original_due = row["next_attempt_at"]
                row = self._claim(dict(row))
                if row is None:
                    break  # another notification instance is sending this lane
                try:
                    self.deliver(row, probing=held)
                finally:
                    self._release(row, original_due)
                probe_page = None  # one probe; a success lifted the hold for what follows
        except Exception:
            log.exception("sender lane failed; it is retried on the next round")
        finally:
            self.busy_lanes.discard(lane)
            self.wake()

    def _claim(self, row: dict) -> dict | None:
        """Lease the message before calling Meta, so that several notification instances on one
        database never send it twice: a compare-and-set on ``next_attempt_at`` (the lease runs
        past the Graph timeout; after a crash the message is simply due again when it ends)."""
        lease = isoformat_utc(utc_now() + timedelta(seconds=self.lease_seconds))
        out = tables.outgoing
        with self.store.database.transaction() as tx:
            claimed = tx.execute(update(out).where(
                out.c.message_id == row["message_id"], out.c.state == "pending",
                out.c.next_attempt_at == row["next_attempt_at"]).values(next_attempt_at=lease)).rowcount
        if not claimed:
            return None
        row["next_attempt_at"] = lease
        return row

    def _release(self, row: dict, original_due: str) -> None:
        """Give the lease back when the outcome left the message pending without a new time
        (a held Page, a pause): it is due again at once, not when the lease would end."""
        out = tables.outgoing
        with self.store.database.transaction() as tx:
            tx.execute(update(out).where(
                out.c.message_id == row["message_id"], out.c.state == "pending",
                out.c.next_attempt_at == row["next_attempt_at"]).values(next_attempt_at=original_due))

    # -- one message -------------------------------------------------------------------------
    def _plan(self, row: dict, now):
        if row["audience"] == "complaint":
            with self.store.database.read() as connection:
                complaint = connection.execute(select(tables.complaints).where(
                    tables.complaints.c.complaint_id == row["complaint_id"])).mappings().first()
            reply_to = json.loads(complaint["reply_to"]) if complaint and complaint["reply_to"] else None
            return plan_delivery(
                reply_to, row["kind"], bool(row["human_written"]),
                _time(complaint["last_citizen_message_at"]) if complaint else None,
                _time(complaint["comment_created_at"]) if complaint else None,
                bool(complaint["private_reply_used"]) if complaint else False,
                complaint["known_psid"] if complaint else None, now)
        reply_to = json.loads(row["reply_to"]) if row["reply_to"] else None
        asked_at = _time(row["last_message_at"])
        from_comment = bool(reply_to and reply_to.get("comment_id"))
        return plan_delivery(reply_to, row["kind"], bool(row["human_written"]),
                             None if from_comment else asked_at,
                             asked_at if from_comment else None, False, None, now)

    def deliver(self, row: dict, probing: bool = False) -> None:
        now = utc_now()
        plan = self._plan(row, now)
        excluded = set(json.loads(row["excluded_channels"] or "[]"))
        attempts = [attempt for attempt in plan.attempts if attempt.channel not in excluded]
        if self._public_update_now_confidential(row, attempts):
            # Composed before the complaint became confidential (a message can wait long, e.g.
            # behind a held Page): no update under the comment now, only the private channels.
            attempts = [attempt for attempt in attempts if attempt.channel != COMMENT_PUBLIC]
        if not attempts:
            reason = row["reason"] or plan.skipped_reason or \
                (plan.fallback_reasons[-1] if plan.fallback_reasons else "unknown")
            # The private acknowledgment of a comment complaint: the public reply carries the
            # tracking code, so the desk has nothing to do about it.
            covered = row["public_text"] is None and row["audience"] == "complaint" and \
                COMMENT_PUBLIC in excluded and row["kind"] == "acknowledgment"
            self._finish(row, "failed" if covered else "undeliverable", reason, row["code"],
                         permanent=reason not in _NOT_PERMANENT, fallback=plan.fallback_reasons)
            return
        attempt = attempts[0]
        if attempt.channel == COMMENT_PUBLIC:
            if row["part_index"] > 0 and self._public_reply_sent(row):
                self._fold(row)
                return
            text = row["public_text"]
        else:
            text = row["text"]
        token = page_token(plan.page_id)
        if token is None or not text:
            self._finish(row, "undeliverable", PAGE_NOT_CONFIGURED if token is None else "unknown",
                         None, permanent=True, fallback=plan.fallback_reasons)
            return
        self._wait_for_rate(plan.page_id)
        messaging_type = attempt.messaging_type or (RESPONSE if attempt.channel == COMMENT_PRIVATE else None)
        try:
            if attempt.channel == COMMENT_PUBLIC:
                result = self.client.reply_to_comment(attempt.recipient["comment_id"], token, text)
                graph_id, psid = result.comment_id, None
            else:
                result = self.client.send_message(plan.page_id, token, attempt.recipient, text,
                                                  messaging_type, attempt.tag)
                graph_id = result.message_id
                psid = result.recipient_id if attempt.channel == COMMENT_PRIVATE else None
        except GraphApiError as error:
            self._on_error(row, attempt, plan, error)
            return
        self._mark_sent(row, attempt, messaging_type, graph_id, psid, plan)

    def _public_update_now_confidential(self, row: dict, attempts) -> bool:
        # The comment's acknowledgment stays: it only gives the tracking code.
        if row["audience"] != "complaint" or row["kind"] == MessageKind.ACKNOWLEDGMENT or \
                not any(attempt.channel == COMMENT_PUBLIC for attempt in attempts):
            return False
        with self.store.database.read() as connection:
            return confidential_now(connection, row["complaint_id"])

    def _wait_for_rate(self, page_id: str) -> None:
        limiter = self.limiters.get(page_id)
        if limiter is None:
            limiter = self.limiters[page_id] = RateLimiter(self.send_rate)
        wait = limiter.acquire()
        if wait > 0:
            eventlet.sleep(wait)

    def _public_reply_sent(self, row: dict) -> bool:
        with self.store.database.read() as connection:
            return connection.execute(select(tables.outgoing.c.message_id).where(
                tables.outgoing.c.trigger_event_id == row["trigger_event_id"],
                tables.outgoing.c.kind == row["kind"],
                tables.outgoing.c.part_index < row["part_index"],
                tables.outgoing.c.channel == COMMENT_PUBLIC,
                tables.outgoing.c.state.in_(("sent", "folded")))).first() is not None

    def _mark_sent(self, row, attempt, messaging_type, graph_id, psid, plan) -> None:
        now = isoformat_utc(utc_now())
        data = {"trigger_event_id": row["trigger_event_id"], "channel": attempt.channel,
                "messaging_type": messaging_type, "tag": attempt.tag,
                "graph_message_id": graph_id, "message_id": row["message_id"]}
        if psid:
            data["recipient_psid"] = psid
        with self.store.database.transaction() as tx:
            changed = tx.execute(update(tables.outgoing).where(
                tables.outgoing.c.message_id == row["message_id"],
                tables.outgoing.c.state == "pending").values(
                    state="sent", channel=attempt.channel, messaging_type=messaging_type,
                    tag=attempt.tag, graph_message_id=graph_id, recipient_psid=psid,
                    attempts=row["attempts"] + 1, sent_at=now, finished_at=now,
                    fallback_reasons=json.dumps(list(plan.fallback_reasons)))).rowcount
            if changed:
                if attempt.channel == COMMENT_PRIVATE and row["audience"] == "complaint":
                    values = {"private_reply_used": True}
                    if psid:
                        values["known_psid"] = psid
                    tx.execute(update(tables.complaints).where(
                        tables.complaints.c.complaint_id == row["complaint_id"]).values(**values))
                tx.append([PendingEvent("CitizenNotified", row["complaint_id"], data)])
            # A success proves the Page's token works again.
            tx.execute(delete(tables.page_holds).where(tables.page_holds.c.page_id == plan.page_id))
        self.sent_count += 1
        log.info("citizen notified", extra={"complaint_id": row["complaint_id"],
                                             "event_id": row["trigger_event_id"]})

    def _on_error(self, row, attempt, plan, error: GraphApiError) -> None:
        now = utc_now()
        outcome = decide_on_error(error.kind, row["attempts"] + 1, now, attempt.deadline,
                                  policy=self.retry, code=error.code)
        log.warning("graph call failed: %s code=%s subcode=%s -> %s", error.kind, error.code,
                    error.subcode, outcome.action,
                    extra={"complaint_id": row["complaint_id"], "event_id": row["trigger_event_id"]})
        if outcome.pause_seconds:
            self.limiters.setdefault(plan.page_id, RateLimiter(self.send_rate)).penalise(
                outcome.pause_seconds)
        where = (tables.outgoing.c.message_id == row["message_id"], tables.outgoing.c.state == "pending")
        common = {"last_error": f"{error.kind}:{error.code}/{error.subcode}"[:200],
                  "channel": attempt.channel, "messaging_type": attempt.messaging_type,
                  "tag": attempt.tag}
        if outcome.action == HOLD_PAGE:
            # Nothing is dropped, nothing counts as an attempt: the row waits for the token.
            stamp = isoformat_utc(now)
            with self.store.database.transaction() as tx:
                tx.execute(update(tables.outgoing).where(*where).values(**common))
                held = tx.execute(update(tables.page_holds).where(
                    tables.page_holds.c.page_id == plan.page_id).values(last_probe_at=stamp)).rowcount
                if not held:
                    tx.execute(tables.page_holds.insert().values(
                        page_id=plan.page_id, reason=outcome.reason, since=stamp, last_probe_at=stamp))
            log.error("Page token refused (190): holding every send for the Page until it works")
            return
        if outcome.action == FAIL_PERMANENT:
            self._finish(row, "undeliverable", outcome.reason, error.code, permanent=True,
                         fallback=plan.fallback_reasons, extra=common)
            return
        values = dict(common, attempts=row["attempts"] + 1)
        if outcome.action == RETRY:
            values["next_attempt_at"] = isoformat_utc(outcome.at)
        elif outcome.action == SLOW_DOWN:
            values["next_attempt_at"] = isoformat_utc(now + timedelta(seconds=outcome.pause_seconds))
        elif outcome.action == NEXT_CHANNEL:
            # Re-planned at once without this channel; with none left it becomes undeliverable.
            excluded = sorted(set(json.loads(row["excluded_channels"] or "[]")) | {attempt.channel})
            values.update(excluded_channels=json.dumps(excluded), reason=outcome.reason,
                          code=error.code, next_attempt_at=isoformat_utc(now))
        with self.store.database.transaction() as tx:
            tx.execute(update(tables.outgoing).where(*where).values(**values))
            if attempt.channel == COMMENT_PRIVATE and error.code == 10900 and row["audience"] == "complaint":
                tx.execute(update(tables.complaints).where(
                    tables.complaints.c.complaint_id == row["complaint_id"]).values(private_reply_used=True))

    def _finish(self, row, state, reason, code, permanent, fallback=(), extra=None) -> None:
        now = isoformat_utc(utc_now())
        values = dict(extra or {}, state=state, reason=reason, code=code, finished_at=now,
                      fallback_reasons=json.dumps(list(fallback)))
        with self.store.database.transaction() as tx:
            changed = tx.execute(update(tables.outgoing).where(
                tables.outgoing.c.message_id == row["message_id"],
                tables.outgoing.c.state == "pending").values(**values)).rowcount
            if changed:
                tx.append([PendingEvent("CitizenNotificationFailed", row["complaint_id"], {
                    "trigger_event_id": row["trigger_event_id"], "reason": reason, "code": code,
                    "permanent": bool(permanent), "message_id": row["message_id"],
                    "listed_for_desk": state == "undeliverable"})])
        log.warning("message not delivered: %s (%s)", reason, state,
                    extra={"complaint_id": row["complaint_id"], "event_id": row["trigger_event_id"]})

    def _fold(self, row) -> None:
        with self.store.database.transaction() as tx:
            tx.execute(update(tables.outgoing).where(
                tables.outgoing.c.message_id == row["message_id"],
                tables.outgoing.c.state == "pending").values(
                    state="folded", channel=COMMENT_PUBLIC, finished_at=isoformat_utc(utc_now())))
