"""Notification: turns routing's and intake's events into Facebook messages and comment replies,
within Meta's messaging windows, exactly once as far as the world allows (see
docs/notification.md)."""
from __future__ import annotations

from nameko.rpc import rpc
from nameko.timer import timer

from shared.core import config
from shared.core.store import ServiceStore
from shared.glue.providers import Consumer, Storage
from shared.glue.relay import OutboxRelay
from shared.glue.service_base import ServiceBase
from shared.glue.subscriptions import listens_to
from services.notification.adapters import tables
from services.notification.application import desk
from services.notification.application.handling import (NotificationHandlers, follow_up_check_seconds,
                                                        follow_up_days)
from services.notification.application.handling import ask_again as ask_once_more
from services.notification.adapters.sender import Sender


# A malformed NOTIFICATION_FOLLOW_UP_DAYS refuses the start with its message (the timer's own
# setting, NOTIFICATION_FOLLOW_UP_CHECK_SECONDS, is read by its decorator below).
follow_up_days()


def build_store(url: str | None = None) -> ServiceStore:
    return ServiceStore("notification", tables.metadata, emits_events=True, url=url)


# Intake's events are a citizen waiting (the acknowledgment of a complaint, an answer to a question):
# they never wait. Routing's (the routed message, a status change) may wait a tenth of a second for
# others to share their transaction (shared.glue.batching: lingering).
@listens_to(NotificationHandlers, linger_ms=100, urgent=NotificationHandlers.subscriptions()["intake"])
class NotificationService(ServiceBase):
    name = "notification"

    store = Storage(build_store)
    # CitizenNotified is news for intake, reporting and outside systems, none of them waiting on it
    # to the quarter second: several sends' events go out in one round.
    relay = OutboxRelay(linger_ms=250)
    consumer = Consumer(NotificationHandlers)
    sender = Sender()

    def receive(self, payload, source):
        self.consumer.handle(payload, source)
        self.sender.wake()

    @timer(interval=config.catchup_seconds(), eager=True)
    def catch_up(self):
        self.consumer.catch_up()
        self.sender.wake()

    @timer(interval=follow_up_check_seconds())
    def ask_again(self):
        """"Sudah selesai?" once more, NOTIFICATION_FOLLOW_UP_DAYS after a resolution the citizen
        has not answered (issue 19); sent where a window allows, else recorded as skipped."""
        if ask_once_more(self.store.database):
            self.sender.wake()

    # -- for the desk ------------------------------------------------------------------------
    @rpc
    def undelivered(self, limit=100):
        """Messages Facebook could not carry, oldest first, for an officer to reach the citizen
        another way. No texts and no PSIDs: the desk reads the complaint in routing."""
        return desk.undelivered(self.store.database, limit)

    @rpc
    def delivery_state(self, trigger_event_id):
        """The messages one event caused and where each stands (for the desk and for tests)."""
        return desk.delivery_state(self.store.database, trigger_event_id)

    def health_extra(self) -> dict:
        held = self.sender.held_pages() if self.sender else {}
        if not held:
            return {}
        # 200 with "degraded", not 503: restarting the service would not fix a Page's token.
        return {"status": "degraded",
                "reason": "; ".join(f"page {page}: {why} (sending held)" for page, why in sorted(held.items())),
                "held_pages": sorted(held)}
