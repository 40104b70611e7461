"""The sender: a long-running green thread that delivers recorded outgoing messages through the
Graph API client and records each outcome as an event.

A message row exists (state ``pending``) before any call is made, and is marked ``sent`` with
``CitizenNotified`` in one transaction after Meta answered — so redeliveries, replays and
restarts never send it again. The one duplicate window: a crash after Meta accepted a message
and before that transaction committed; the message is then sent again on restart.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta

import eventlet
from nameko.extensions import DependencyProvider
from sqlalchemy import select, update

from shared import config
from shared.events import isoformat_utc, parse_iso, utc_now
from shared.eventstore import PendingEvent
from shared.nameko_support import Storage, _find
from services.notification import tables
from services.notification.graph_client import (INVALID_TOKEN, OUTSIDE_WINDOW, PERMANENT,
                                                RATE_LIMITED, GraphApiError, GraphClient)

log = logging.getLogger("notification.sender")

DEV_PAGE_TOKEN = "sandbox-page-token"


def page_token(page_id: str) -> str | None:
    pages = config.facebook_pages()
    if page_id in pages:
        return pages[page_id]
    if not pages and config.is_development():
        return DEV_PAGE_TOKEN
    return None


class Sender(DependencyProvider):
    batch = 100

    def setup(self):
        self.store = _find(self.container, Storage).ensure()
        self.client = GraphClient(config.graph_url(), config.graph_version(), timeout=10.0)
        self._wake = eventlet.event.Event()
        self._running = False
        self.sent_count = 0
        self.failed_count = 0
        self.held_pages: dict[str, str] = {}
        self.retry_base = float(config.env("NOTIFICATION_RETRY_BASE_SECONDS", "2"))
        self.store.database.after_commit_hooks.append(lambda _e: self.wake())

    def start(self):
        self._running = True
        self.container.spawn_managed_thread(self._run)

    def stop(self):
        self._running = False
        self.wake()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return self

    def wake(self):
        if not self._wake.ready():
            self._wake.send(True)

    def _run(self):
        while self._running:
            try:
                done = self.send_due()
            except Exception:
                log.exception("sender loop failed; retrying")
                done = 0
            if done:
                continue
            with eventlet.Timeout(0.5, False):
                self._wake.wait()
            self._wake = eventlet.event.Event()

    def send_due(self) -> int:
        now = utc_now()
        with self.store.database.read() as connection:
            rows = connection.execute(
                select(tables.outgoing).where(tables.outgoing.c.state == "pending",
                                              tables.outgoing.c.next_attempt_at <= isoformat_utc(now))
                .order_by(tables.outgoing.c.created_at).limit(self.batch)).mappings().all()
        for row in rows:
            if row["page_id"] in self.held_pages:
                continue
            self.deliver(dict(row))
        return len(rows)

    def deliver(self, row: dict) -> None:
        token = page_token(row["page_id"])
        recipient = json.loads(row["recipient"])
        if token is None:
            self._fail(row, "unknown_page", None, permanent=True)
            return
        try:
            if row["channel"] == "comment_public":
                result = self.client.reply_to_comment(recipient["comment_id"], token, row["text"])
                graph_id, psid = result.comment_id, None
            else:
                result = self.client.send_message(row["page_id"], token, recipient, row["text"],
                                                  row["messaging_type"] or "RESPONSE", row["tag"])
                graph_id = result.message_id
                psid = result.recipient_id if "comment_id" in recipient else None
        except GraphApiError as error:
            self._on_error(row, error)
            return
        data = {"trigger_event_id": row["trigger_event_id"], "channel": row["channel"],
                "messaging_type": row["messaging_type"], "tag": row["tag"],
                "graph_message_id": graph_id}
        if psid:
            data["recipient_psid"] = psid
        with self.store.database.transaction() as tx:
            changed = tx.execute(update(tables.outgoing).where(
                tables.outgoing.c.message_id == row["message_id"], tables.outgoing.c.state == "pending")
                .values(state="sent", graph_message_id=graph_id, sent_at=isoformat_utc(utc_now()),
                        attempts=row["attempts"] + 1)).rowcount
            if changed:
                tx.append([PendingEvent("CitizenNotified", row["complaint_id"], data)])
        self.sent_count += 1
        log.info("citizen notified", extra={"complaint_id": row["complaint_id"],
                                             "event_id": row["trigger_event_id"]})

    def _on_error(self, row: dict, error: GraphApiError) -> None:
        if error.kind == INVALID_TOKEN:
            self.held_pages[row["page_id"]] = "invalid_token"
            return
        if error.kind in (PERMANENT, OUTSIDE_WINDOW):
            self._fail(row, error.kind, error.code, permanent=True)
            return
        attempts = row["attempts"] + 1
        delay = self.retry_base * (2 ** (attempts - 1))
        if error.kind == RATE_LIMITED:
            delay = max(delay, 5.0)
        with self.store.database.transaction() as tx:
            tx.execute(update(tables.outgoing).where(tables.outgoing.c.message_id == row["message_id"])
                       .values(attempts=attempts, last_error=f"{error.kind}:{error.code}",
                               next_attempt_at=isoformat_utc(utc_now() + timedelta(seconds=delay))))

    def _fail(self, row: dict, reason: str, code, permanent: bool) -> None:
        with self.store.database.transaction() as tx:
            changed = tx.execute(update(tables.outgoing).where(
                tables.outgoing.c.message_id == row["message_id"], tables.outgoing.c.state == "pending")
                .values(state="failed", last_error=reason, attempts=row["attempts"] + 1)).rowcount
            if changed:
                tx.append([PendingEvent("CitizenNotificationFailed", row["complaint_id"], {
                    "trigger_event_id": row["trigger_event_id"], "reason": reason, "code": code,
                    "permanent": permanent})])
        self.failed_count += 1
