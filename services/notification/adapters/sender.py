"""The sender: delivers recorded outgoing messages through the Graph API and records each outcome
as an event. What to send and what an answer means is decided by ``domain.delivery`` (Meta's
rules in ``domain.policy``) from notification's current record at send time, so a citizen who
wrote in Messenger meanwhile is answered there; the reads and writes are
``adapters.deliveries``; this module is the loop around them: green threads, the per-Page rate
limiters and the calls to Meta.

* A message row exists (``pending``) before any call; it is marked ``sent`` together with
  ``CitizenNotified`` in one transaction after Meta answered, so redeliveries, replays and
  restarts never send it again. The one duplicate window: a crash after Meta accepted a message
  and before that transaction committed; the message is then sent again on restart.
* Calls happen outside transactions. A few green threads send in parallel, one lane (complaint)
  each, so a complaint's messages go out strictly in the order they were recorded.
* The retry schedule is the rows' ``next_attempt_at`` (a restart resumes it); holds on Pages with
  an invalid token are rows of ``page_holds``; rate budgets are rows of ``rate_budgets``
  (``shared.core.shared_budget``), so every notification replica spends one budget — one per
  Page and API: the Send API (Messenger and private replies, ``NOTIFICATION_SEND_RATE``), the Send
  API's Instagram Direct calls (counted per Instagram account) and the Pages API (public comment
  replies, which fall under Meta's Business Use Case limits, not the Send API's), so a limit Meta
  reports for one pauses only that one — or every Page for an app-level limit — in every replica.
  Each send reserves the budget's next slot in a short transaction of its own, then waits for it
  outside any transaction. (A ``DeliveryLoop`` built without ``budgets`` keeps its limiters in
  memory, per process.)
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Callable, Optional

import eventlet
from eventlet.event import Event
from nameko.extensions import DependencyProvider

from shared.core import config
from shared.core.events import isoformat_utc, utc_now
from shared.core.shared_budget import Budgets, SharedPacer, budget_key
from shared.glue.providers import Storage, _find
from services.notification.adapters.deliveries import Deliveries, Prepared
from services.notification.adapters.graph_client import GraphApiError, GraphClient
from services.notification.domain import delivery
from services.notification.domain.policy import (APP_SCOPE, COMMENT_PUBLIC, MESSENGER, PLATFORM_INSTAGRAM,
                                                 PLATFORM_MESSENGER, MessageKind, RateLimiter, RetryPolicy)

log = logging.getLogger("notification.sender")

DEV_PAGE_TOKEN = "sandbox-page-token"

# The API a call goes through, for the rate limiters: Meta limits them separately.
SEND_API = "send"      # POST /{page-id}/messages: Messenger and private replies
PAGES_API = "pages"    # POST /{comment-id}/comments: public replies (Business Use Case limits)
# POST /{page-id}/messages to an IGSID: Meta counts the Messenger API for Instagram per Instagram
# professional account, apart from the Page's Messenger calls (and 80002 is its own limit).
INSTAGRAM_SEND_API = "instagram_send"
# The shared budgets' keys: one per Page and API, and the app-level pause that holds them all.
APP_BUDGET_KEY = "graph:app"


def send_budget_key(page_id: str, api: str) -> str:
    return budget_key("graph", api, page_id)

_TRUE = ("1", "true", "yes", "on")


def human_agent_approved() -> bool:
    """``FACEBOOK_HUMAN_AGENT_APPROVED`` (default off): whether the app's Human Agent feature passed
    Meta's App Review, so human answers 24 h–7 d after the citizen's last message may go with the
    ``HUMAN_AGENT`` tag; otherwise they go straight to the fallback channel."""
    return (config.env("FACEBOOK_HUMAN_AGENT_APPROVED", "") or "").strip().lower() in _TRUE


def api_of(channel: str, platform: str = PLATFORM_MESSENGER) -> str:
    if channel == COMMENT_PUBLIC:
        return PAGES_API
    return INSTAGRAM_SEND_API if channel == MESSENGER and platform == PLATFORM_INSTAGRAM else SEND_API


def _api(send: delivery.Send) -> str:
    return api_of(send.channel, send.attempt.platform)


def page_token(page_id: str | None) -> str | None:
    pages = config.facebook_pages()
    if page_id in pages:
        return pages[page_id]
    if page_id and not pages and config.is_development():
        return DEV_PAGE_TOKEN
    return None


#: Sender green threads (NOTIFICATION_SENDER_CONCURRENCY): also the most messages a crash can
#: send twice (one per thread: Meta accepted it, the commit that records it had not happened).
DEFAULT_SENDER_CONCURRENCY = 8

class DeliveryLoop:
    """The sender without nameko: give it the message store, a Graph client (anything with
    ``send_message`` and ``reply_to_comment``) and a way to spawn green threads. ``run`` is the
    loop; ``dispatch`` one round of it; ``deliver`` one message."""

    def __init__(self, deliveries: Deliveries, client, retry: RetryPolicy, *, send_rate: float = 250,
                 concurrency: int = DEFAULT_SENDER_CONCURRENCY, probe_seconds: float = 30, poll_seconds: float = 0.5,
                 lease_seconds: float = 15, spawn: Callable = eventlet.spawn,
                 token_for: Callable[[Optional[str]], Optional[str]] = page_token,
                 human_agent_approved: bool = False, budgets: Optional[Budgets] = None):
        self.deliveries = deliveries
        self.client = client
        self.retry = retry
        self.send_rate = send_rate
        self.concurrency = max(1, concurrency)
        self.probe_seconds = probe_seconds
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.spawn = spawn
        self.token_for = token_for
        self.human_agent_approved = human_agent_approved
        # One per (Page, API); an app-level limit pauses every one, and those made later. With
        # ``budgets`` they are shared by every replica (the app-level pause too).
        self.budgets = budgets
        self.limiters: dict[tuple[str, str], RateLimiter | SharedPacer] = {}
        self._app_paused_until = float("-inf")
        self.busy_lanes: set[str] = set()
        self.running = False
        self.sent_count = 0
        self._wake = Event()

    # -- what the service asks ---------------------------------------------------------------
    def wake(self) -> None:
        if not self._wake.ready():
            self._wake.send(True)

    def held_pages(self) -> dict[str, str]:
        return self.deliveries.held_pages()

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Until ``halt``: a round on every wake-up (new messages recorded, a lane ended), at
        least every ``poll_seconds``. Set ``running`` first."""
        while self.running:
            try:
                self.dispatch()
            except Exception:
                log.exception("sender dispatch failed; retrying")
            with eventlet.Timeout(self.poll_seconds, False):
                self._wake.wait()
            self._wake = Event()

    def halt(self) -> None:
        self.running = False
        self.wake()

    def stop(self, wait_seconds: float = 10) -> None:
        """Stop; let sends in flight record their outcome (what Meta accepted must be marked sent)."""
        self.halt()
        for _ in range(int(wait_seconds * 10)):
            if not self.busy_lanes:
                break
            eventlet.sleep(0.1)

    def dispatch(self) -> int:
        """Start a green thread for each lane whose first message is due (and one probe per held
        Page whose probe is due); returns how many were started."""
        now = utc_now()
        now_iso = isoformat_utc(now)
        free = self.concurrency - len(self.busy_lanes)
        # While every sender is busy there is nothing to start: skip the scan (it runs on every
        # commit's wake-up, so under load this keeps it off the hot path).
        due = self.deliveries.due_work(now, 0 if free <= 0 else free + len(self.busy_lanes) + 16,
                                       self.probe_seconds)
        started = 0
        for head in due.heads:
            if len(self.busy_lanes) >= self.concurrency:
                break
            if head["next_attempt_at"] > now_iso or head["lane"] in self.busy_lanes:
                continue
            self._start_lane(head["lane"], probe_page=None)
            started += 1
        for page_id, head in due.probes.items():
            if head["lane"] not in self.busy_lanes:
                self._start_lane(head["lane"], probe_page=page_id)
                started += 1
        return started

    def _start_lane(self, lane: str, probe_page: str | None) -> None:
        self.busy_lanes.add(lane)
        self.spawn(lambda: self._work_lane(lane, probe_page))

    def _work_lane(self, lane: str, probe_page: str | None) -> None:
        """Send the lane's due messages in order; stop at one not due, or at a held Page unless
        this is its probe — and, after a first reply (an acknowledgment, a status reply), at the
        first message that is not one: that later notice waits for the next round, which starts
        the lanes whose head is a first reply before the others (``MessageKind.FIRST_REPLIES``)."""
        first_replies_only = False
        try:
            while self.running:
                now = utc_now()
                claimed = self.deliveries.claim_head(lane, now, now + timedelta(seconds=self.lease_seconds),
                                                     probe_page, self.human_agent_approved, first_replies_only)
                if claimed is None:
                    break  # nothing due, a held Page, another notification instance has it, or
                    # a later notice after a first reply
                first_replies_only = first_replies_only or claimed.prepared.message.kind in MessageKind.FIRST_REPLIES
                settled = False
                try:
                    settled = self.deliver(claimed.prepared, lift_hold=claimed.probe)
                finally:
                    # A recorded outcome (sent, ended, rescheduled) already replaced the lease in
                    # its own transaction: giving it back would be a second commit that changes
                    # nothing. Only an outcome that left it pending as it was (a held Page) — or
                    # an error — hands the lease back.
                    if not settled:
                        self.deliveries.release(claimed.row, claimed.original_due)
                probe_page = None  # one probe; a success lifted the hold for what follows
        except Exception:
            log.exception("sender lane failed; it is retried on the next round")
        finally:
            self.busy_lanes.discard(lane)
            self.wake()

    # -- one message -------------------------------------------------------------------------
    def deliver(self, prepared: Prepared, lift_hold: bool = True) -> bool:
        """Decide, call Meta if that is the decision, record the outcome. Returns whether the
        outcome settled the lease (the message is no longer pending, or has a new time).
        ``lift_hold``: a success lifts the Page's hold (False: the lease saw none)."""
        message, plan = prepared.message, prepared.plan
        token = self.token_for(plan.page_id)
        step = delivery.decide_send(message, plan, prepared.facts(page_configured=token is not None))
        if isinstance(step, delivery.Fold):
            self.deliveries.record_folded(message, utc_now())
            return True
        if isinstance(step, delivery.Finish):
            self._finish(message, step)
            return True
        assert token is not None
        self._wait_for_rate(step.page_id, _api(step))
        try:
            graph_id, recipient_id = self._call(step, token)
        except GraphApiError as error:
            return self._on_error(message, step, error)
        sent = delivery.after_success(message, step, graph_id, recipient_id)
        self.deliveries.record_sent(message, sent, utc_now(), lift_hold=lift_hold)
        self.sent_count += 1
        log.info("citizen notified", extra={"complaint_id": message.complaint_id,
                                             "event_id": message.trigger_event_id})
        return True

    def _call(self, send: delivery.Send, token: str) -> tuple[str, Optional[str]]:
        if send.channel == COMMENT_PUBLIC:
            result = self.client.reply_to_comment(send.recipient["comment_id"], token, send.text)
            return result.comment_id, None
        if send.quick_replies:
            sent = self.client.send_message(send.page_id, token, send.recipient, send.text,
                                            send.messaging_type, send.tag,
                                            quick_replies=list(send.quick_replies))
        else:
            sent = self.client.send_message(send.page_id, token, send.recipient, send.text,
                                            send.messaging_type, send.tag)
        return sent.message_id, sent.recipient_id

    def _on_error(self, message: delivery.PendingMessage, send: delivery.Send, error: GraphApiError) -> bool:
        failure = delivery.CallError(error.code, error.subcode, error.http_status,
                                     getattr(error, "transient", None), getattr(error, "headers", None))
        step = delivery.after_error(message, send, failure, utc_now(), self.retry)
        rule = failure.rule
        log.log(logging.ERROR if rule.alert else logging.WARNING,
                "graph call failed: %s code=%s subcode=%s (%s) -> %s", rule.kind, error.code, error.subcode,
                rule.meaning, step.action,
                extra={"complaint_id": message.complaint_id, "event_id": message.trigger_event_id})
        pause = getattr(step, "pause_seconds", None)
        if pause:
            self._pause(send.page_id, _api(send), pause, getattr(step, "pause_scope", None))
        if isinstance(step, delivery.HoldPage):
            self.deliveries.record_hold(message, step, utc_now())
            log.error("Page token refused (190): holding every send for the Page until it works")
            return False  # still pending at its old time: the lease is given back
        if isinstance(step, delivery.Finish):
            self._finish(message, step)
        else:
            self.deliveries.record_retry(message, step)
        return True

    def _finish(self, message: delivery.PendingMessage, finish: delivery.Finish) -> None:
        self.deliveries.record_finished(message, finish, utc_now())
        log.warning("message not delivered: %s (%s)", finish.reason, finish.state,
                    extra={"complaint_id": message.complaint_id, "event_id": message.trigger_event_id})

    def _limiter(self, page_id: str, api: str = SEND_API) -> RateLimiter | SharedPacer:
        limiter = self.limiters.get((page_id, api))
        if limiter is None and self.budgets is not None:
            limiter = self.limiters[(page_id, api)] = SharedPacer(
                self.budgets, send_budget_key(page_id, api), self.send_rate, app_key=APP_BUDGET_KEY)
        elif limiter is None:
            limiter = self.limiters[(page_id, api)] = RateLimiter(self.send_rate)
            remaining = self._app_paused_until - time.monotonic()
            if remaining > 0:
                limiter.penalise(remaining)
        return limiter

    def _pause(self, page_id: str, api: str, seconds: float, scope: Optional[str]) -> None:
        """Pause the Page's calls of that API — or, for an app-level limit, every call."""
        if scope == APP_SCOPE and self.budgets is not None:
            self.budgets.penalise(APP_BUDGET_KEY, seconds)   # every shared budget waits for it
        elif scope == APP_SCOPE:
            self._app_paused_until = max(self._app_paused_until, time.monotonic() + seconds)
            for limiter in self.limiters.values():
                limiter.penalise(seconds)
        self._limiter(page_id, api).penalise(seconds)

    def _wait_for_rate(self, page_id: str, api: str = SEND_API) -> None:
        wait = self._limiter(page_id, api).acquire()
        if wait > 0:
            eventlet.sleep(wait)


class Sender(DependencyProvider):
    """Runs the ``DeliveryLoop`` in the service's container; workers get the loop (``wake``,
    ``held_pages``)."""

    def setup(self):
        store = _find(self.container, Storage).ensure()
        timeout = float(config.env("NOTIFICATION_GRAPH_TIMEOUT_SECONDS", "10"))
        base = float(config.env("NOTIFICATION_RETRY_BASE_SECONDS", "2"))
        self.loop = DeliveryLoop(
            Deliveries(store.database),
            GraphClient(config.graph_url(), config.graph_version(), timeout=timeout),
            # Meta asks for a real pause after a rate limit: five base delays (10 s by default).
            RetryPolicy(base_seconds=base, rate_limit_min_pause_seconds=5 * base),
            send_rate=float(config.env("NOTIFICATION_SEND_RATE", "250")),
            concurrency=int(config.env("NOTIFICATION_SENDER_CONCURRENCY", str(DEFAULT_SENDER_CONCURRENCY))),
            probe_seconds=float(config.env("NOTIFICATION_TOKEN_PROBE_SECONDS", "30")),
            poll_seconds=float(config.env("NOTIFICATION_SENDER_POLL_SECONDS", "0.5")),
            lease_seconds=timeout + 5,
            spawn=self.container.spawn_managed_thread,
            human_agent_approved=human_agent_approved(),
            budgets=Budgets(store.database))
        # No wake-up on every commit that appended events: notification's own appends are the
        # sender's outcomes (CitizenNotified …), after which its lane goes on by itself, and a lane
        # that ends wakes the loop; what records new messages — a handled batch, a catch-up page,
        # the follow-up timer — wakes it explicitly (service.py). Each such wake-up was a scan of
        # the lane heads that found nothing new: 14 % of notification's samples at 25/s offered.

    def start(self):
        self.loop.running = True
        self.container.spawn_managed_thread(self.loop.run)

    def stop(self):
        self.loop.stop()
        self.loop.client.close()

    def kill(self):
        self.loop.halt()

    def get_dependency(self, worker_ctx):
        return self.loop
