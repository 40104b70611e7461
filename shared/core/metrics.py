"""Prometheus metrics of one service process, served at ``GET /metrics``.

Domain counters (complaints filed by channel, notifications sent/failed by reason, service-level
breaches) are derived from the events a service appends, so no domain code has to remember to
count: what is in the log is what is counted. Gauges (outbox lag, consumer lag, quarantine size)
are read when scraped.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.core.events import types as ev

if TYPE_CHECKING:
    from shared.core.consumer import EventConsumer
    from shared.core.events import Envelope
    from shared.core.store import ServiceStore

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_APPENDED = Counter("ntbcare_events_appended_total", "Events recorded in this service's store",
                          ["service", "event_type"], registry=REGISTRY)
EVENTS_PUBLISHED = Counter("ntbcare_events_published_total", "Events the outbox relay published (broker-confirmed)",
                           ["service", "event_type"], registry=REGISTRY)
COMPLAINTS_FILED = Counter("ntbcare_complaints_filed_total", "Complaints filed, by channel",
                           ["channel"], registry=REGISTRY)
NOTIFICATIONS_SENT = Counter("ntbcare_notifications_sent_total", "Messages delivered to Facebook, by channel",
                             ["channel"], registry=REGISTRY)
NOTIFICATIONS_FAILED = Counter("ntbcare_notifications_failed_total", "Messages that could not be delivered, by reason",
                               ["reason", "permanent"], registry=REGISTRY)
SLA_BREACHES = Counter("ntbcare_sla_breaches_total", "Service-level breaches escalated, by clock",
                       ["breach"], registry=REGISTRY)
EVENTS_HANDLED = Counter("ntbcare_events_handled_total", "Events received by this service's consumer, by outcome",
                         ["service", "source", "outcome"], registry=REGISTRY)
HANDLER_SECONDS = Histogram("ntbcare_handler_seconds", "Time to handle one received event (transaction included)",
                            ["service", "source"], registry=REGISTRY,
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
OUTBOX_PENDING = Gauge("ntbcare_outbox_pending_events", "Recorded events not yet confirmed by the broker (outbox lag)",
                       ["service"], registry=REGISTRY)
CONSUMER_LAG = Gauge("ntbcare_consumer_lag_events",
                     "Highest position seen from a source minus the contiguous checkpoint",
                     ["service", "source"], registry=REGISTRY)
QUARANTINED = Gauge("ntbcare_quarantined_items", "Items waiting in quarantine", ["service"], registry=REGISTRY)


def record_appended(service: str, envelopes: Iterable[Envelope]) -> None:
    for envelope in envelopes:
        EVENTS_APPENDED.labels(service, envelope.event_type).inc()
        data = envelope.data
        if envelope.event_type == ev.COMPLAINT_FILED:
            COMPLAINTS_FILED.labels(data.get("channel", "unknown")).inc()
        elif envelope.event_type == ev.CITIZEN_NOTIFIED:
            NOTIFICATIONS_SENT.labels(data.get("channel", "unknown")).inc()
        elif envelope.event_type == ev.CITIZEN_NOTIFICATION_FAILED:
            NOTIFICATIONS_FAILED.labels(str(data.get("reason", "unknown"))[:64],
                                        str(bool(data.get("permanent"))).lower()).inc()
        elif envelope.event_type == ev.COMPLAINT_ESCALATED:
            SLA_BREACHES.labels(data.get("breach", "unknown")).inc()


def render(store: ServiceStore, consumer: EventConsumer | None = None) -> tuple[bytes, str]:
    """Refresh the gauges from the database and return the exposition text."""
    service = store.name
    with store.database.read() as connection:
        if store.event_store is not None:
            OUTBOX_PENDING.labels(service).set(store.event_store.outbox_size(connection))
        QUARANTINED.labels(service).set(store.quarantine.count(connection))
    if consumer is not None:
        for source, highest in consumer.highest_seen.items():
            CONSUMER_LAG.labels(service, source).set(max(0, highest - consumer.checkpoint(source)))
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
