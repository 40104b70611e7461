"""Entrypoints every NTBCare service shares: its ordered log (``events_since``), quarantine
listing and replay, ``GET /metrics`` and ``GET /health``. Services inherit them; nameko picks up
inherited entrypoints. The gateway inherits ``HealthCheck`` only: it answers no RPC (its broker
user may declare no ``rpc-gateway`` queue, docs/gateway.md)."""
from __future__ import annotations

from nameko.rpc import rpc
from nameko.web.handlers import http

import shared.glue.remote_errors  # noqa: F401 - the errors cross RPC as their own types
from shared.core.errors import EXPECTED, NotFound, ValidationFailed
from werkzeug.wrappers import Response

from shared.core import metrics
from shared.core.eventstore import MAX_ID_PAGE
from shared.glue.http import json_response
from shared.glue.health import health_report
from shared.core.quarantine import QuarantineNotFound


class HealthCheck:
    """``GET /health``: 200 when the service's database and the broker answer (``health_report``)."""
    name: str
    store = None   # Storage
    relay = None   # OutboxRelay or None for services that emit nothing

    def health_extra(self) -> dict:
        return {}

    @http("GET", "/health")
    def health(self, request):
        status, body = health_report(self.name, self.store, self.relay, self.health_extra())
        return json_response(status, body)


class ServiceBase(HealthCheck):
    """What every service that answers RPC inherits: its log, its quarantine, metrics and health."""

    @rpc
    def events_since(self, position, limit=1000):
        """This service's log: full envelopes with position > `position`, ascending, at most min(limit, 1000)."""
        if self.store.event_store is None:
            return []
        return self.store.events_since(int(position), int(limit))

    @rpc
    def event_ids_since(self, position, limit=MAX_ID_PAGE):
        """This service's log as [position, event_id] pairs after `position`, ascending, at most min(limit, 10000)."""
        if self.store.event_store is None:
            return []
        return self.store.event_ids_since(int(position), int(limit))

    @rpc
    def quarantined(self, limit=100):
        """Items this service could not process, with their reason (payloads are not shown)."""
        with self.store.database.read() as connection:
            return self.store.quarantine.list(connection, int(limit))

    @rpc(expected_exceptions=EXPECTED)
    def replay_quarantined(self, item_id, actor):
        """Process a quarantined item again (after a fix); recorded with the actor."""
        if not actor or not str(actor).strip():
            raise ValidationFailed("actor is required")
        try:
            with self.store.database.read() as connection:
                item = self.store.quarantine.get(connection, int(item_id))
        except QuarantineNotFound as error:
            raise NotFound(str(error))
        if item["state"] != "quarantined":
            return {"item_id": int(item_id), "outcome": "already_replayed"}
        return {"item_id": int(item_id), "outcome": self.replay_item(item, str(actor))}

    def receive(self, payload, source: str) -> None:
        """Every pushed event lands here (see shared.glue.subscriptions.listens_to)."""
        self.consumer.handle(payload, source)

    def replay_item(self, item: dict, actor: str) -> str:
        """Re-process one quarantined item; services that consume events delegate to their
        consumer, intake also replays webhook bodies."""
        consumer = getattr(self, "consumer", None)
        if item["kind"] == "event" and consumer is not None:
            return consumer.consumer.replay(item, actor)
        raise NotFound(f"{self.name} cannot replay items of kind {item['kind']!r}")

    @http("GET", "/metrics")
    def metrics(self, request):
        consumer = getattr(self, "consumer", None)
        body, content_type = metrics.render(self.store, consumer.consumer if consumer is not None else None)
        return Response(body, status=200, content_type=content_type)
