"""nameko DependencyProviders every service uses, each handing workers a minimal interface:

* ``Storage`` — the service's own database (a ``shared.db.Database``), tables created on start;
* ``OutboxRelay`` — publishes recorded events to ``<service>.events`` from the store only,
  deletes the outbox row after the broker confirmed, retries on a timer after a broker outage
  or a crash (no worker interface);
* ``Consumer`` — idempotent handling of other services' events plus catch-up by pulling
  ``<source>.events_since``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import eventlet
from kombu import Connection, Producer
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider
from nameko.standalone.rpc import ClusterRpcProxy

from shared import config, metrics, migrations
from shared.consumer import CatchUp, EventConsumer, consumer_tables
from shared.subscriptions import EventHandlers
from shared.db import Database
from shared.eventstore import EventStore
from shared.quarantine import Quarantine, quarantine_table
from shared.ratelimit import limiter_from_env

log = logging.getLogger(__name__)


class ServiceStore:
    """Everything a service keeps in its own database, built once per process."""

    def __init__(self, name: str, metadata, emits_events: bool, url: str | None = None):
        self.name = name
        self.metadata = metadata
        self.event_store = EventStore(name, metadata) if emits_events else None
        self.quarantine = Quarantine(quarantine_table(metadata))
        self.checkpoints, self.processed, self.failures = consumer_tables(metadata)
        self.database = Database(name, url or config.database_url(name), metadata, self.event_store)
        self.database.after_commit_hooks.append(lambda envelopes: metrics.record_appended(name, envelopes))
        self.on_ready: list[Callable[[], None]] = []

    def prepare(self) -> None:
        """Migrate (or check) the database, then let the service set up run-time tables."""
        migrations.prepare(self.name, self.database)
        for step in self.on_ready:
            step()

    def events_since(self, position: int, limit: int = 1000) -> list[dict]:
        with self.database.read() as connection:
            return self.event_store.events_since(connection, position, limit)


_BUILD_LOCK = threading.RLock()  # green under eventlet's monkey patching


class Storage(DependencyProvider):
    """Hands workers the service's ``ServiceStore`` (database, event store, quarantine)."""

    def __init__(self, build: Callable[[], ServiceStore]):
        self.build = build
        self.store: ServiceStore | None = None

    def setup(self):
        self.ensure()

    def ensure(self) -> ServiceStore:
        """Build once; other providers call this from their own ``setup`` because nameko sets
        providers up in no particular order — in parallel green threads, which interleave on
        PostgreSQL I/O, hence the lock (Alembic's context is process-global)."""
        with _BUILD_LOCK:
            if self.store is None:
                store = self.build()
                store.prepare()
                self.store = store
        return self.store

    def stop(self):
        if self.store is not None:
            self.store.database.dispose()

    def get_dependency(self, worker_ctx):
        return self.store


def _find(container, kind):
    for dependency in container.dependencies:
        if isinstance(dependency, kind):
            return dependency
    raise RuntimeError(f"{container.service_name} needs a {kind.__name__} dependency")


class RateLimit(DependencyProvider):
    """A per-key token bucket for an unauthenticated public endpoint, shared by the process's
    workers, its rate from ``variable`` (per minute; 0: none). Workers get the limiter or None."""

    def __init__(self, variable: str, default: str):
        self.variable = variable
        self.default = default

    def setup(self):
        self.limiter = limiter_from_env(self.variable, self.default)

    def get_dependency(self, worker_ctx):
        return self.limiter


class RelayStatus:
    def __init__(self, relay: "OutboxRelay"):
        self._relay = relay

    @property
    def broker_ok(self) -> bool:
        return self._relay.broker_ok

    @property
    def last_error(self) -> str | None:
        return self._relay.last_error

    @property
    def published(self) -> int:
        return self._relay.published_count

    def wake(self) -> None:
        self._relay.wake()


class OutboxRelay(DependencyProvider):
    batch_size = 500

    def setup(self):
        self.store: ServiceStore = _find(self.container, Storage).ensure()
        self.exchange = get_event_exchange(self.container.service_name, self.container.config)
        self._wake = threading.Event()  # green under eventlet's monkey patching
        self._running = False
        self._connection: Connection | None = None
        self._unsettled: dict[int, dict] = {}
        self.broker_ok = False
        self.last_error: str | None = None
        self.published_count = 0
        self.store.database.after_commit_hooks.append(lambda _envelopes: self.wake())

    def start(self):
        self._running = True
        self._thread = self.container.spawn_managed_thread(self._run)

    def stop(self):
        self._running = False
        self._wake.set()
        self._close()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return RelayStatus(self)

    def wake(self) -> None:
        self._wake.set()

    def _run(self):
        backoff = 0.5
        poll = config.outbox_poll_seconds()
        while self._running:
            try:
                sent = self.publish_pending()
                backoff = 0.5
                if sent >= self.batch_size:
                    continue
            except Exception as error:  # broker down, connection lost, nack
                self.broker_ok = False
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("outbox relay: publish failed (%s); retrying in %.1fs", self.last_error, backoff)
                self._close()
                eventlet.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self._wake.wait(poll)
            self._wake.clear()

    def _producer(self) -> Producer:
        if self._connection is None:
            # Confirms are enabled on the channel and awaited per batch (below), not per
            # message: kombu's confirm_publish would wait one broker round trip per event.
            self._connection = Connection(self.container.config["AMQP_URI"], connect_timeout=5)
            self._connection.ensure_connection(max_retries=1)
            self._channel = self._connection.channel()
            self._channel.confirm_select()
            self._next_tag = 1  # the broker numbers a confirm channel's publishes from 1
            self._acked: set[int] = set()
            self._nacked: set[int] = set()
            self._channel.events["basic_ack"].add(self._on_ack)
            self._channel.events["basic_nack"].add(self._on_nack)
            self.exchange(self._channel).declare()
            self._producer_obj = Producer(self._channel, exchange=self.exchange, serializer="json")
        return self._producer_obj

    def _settle(self, into: set, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            into.update(tag for tag in self._unsettled if tag <= delivery_tag)
        else:
            into.add(delivery_tag)

    def _on_ack(self, delivery_tag, multiple):
        self._settle(self._acked, delivery_tag, multiple)

    def _on_nack(self, delivery_tag, multiple):
        self._settle(self._nacked, delivery_tag, multiple)

    def _close(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()
            except Exception:
                pass

    def publish_pending(self) -> int:
        """Publish one batch of unpublished events and wait for the broker's confirms of the
        whole batch; only confirmed events leave the outbox (in one statement)."""
        database, event_store = self.store.database, self.store.event_store
        with database.read() as connection:
            pending = event_store.unpublished(connection, self.batch_size)
        if not pending:
            self.broker_ok = self.broker_ok or self._connection is not None
            return 0
        producer = self._producer()
        connection = self._connection
        by_tag: dict[int, dict] = {}
        self._unsettled = by_tag
        confirmed: list[int] = []
        try:
            for envelope in pending:
                producer.publish(envelope, routing_key=envelope["event_type"],
                                 delivery_mode=2,
                                 headers={"ntbcare.event_id": envelope["event_id"]}, retry=False)
                by_tag[self._next_tag] = envelope
                self._next_tag += 1
            deadline = time.monotonic() + 30
            while not set(by_tag) <= (self._acked | self._nacked):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no publisher confirm within 30s")
                connection.drain_events(timeout=min(remaining, 5))
        finally:
            for tag, envelope in by_tag.items():
                if tag in self._acked:
                    confirmed.append(envelope["position"])
                    metrics.EVENTS_PUBLISHED.labels(self.store.name, envelope["event_type"]).inc()
            self._acked.difference_update(by_tag)
            nacked = self._nacked & set(by_tag)
            self._nacked.difference_update(by_tag)
            self._unsettled = {}
            if confirmed:
                with database.transaction() as tx:
                    event_store.mark_published(tx.connection, confirmed)
                self.published_count += len(confirmed)
        if nacked:
            raise RuntimeError(f"broker nacked {len(nacked)} of {len(by_tag)} events")
        self.broker_ok = True
        self.last_error = None
        return len(confirmed)


class ConsumerApi:
    """What a worker needs: handle a pushed event, catch up, replay quarantined events."""

    def __init__(self, provider: "Consumer"):
        self._provider = provider
        self.consumer: EventConsumer = provider.consumer

    def handle(self, payload, source: str) -> str:
        return self.consumer.handle(payload, source)

    def catch_up(self) -> dict[str, int]:
        return self._provider.catch_up()

    def checkpoint(self, source: str) -> int:
        return self.consumer.checkpoint(source)


class Consumer(DependencyProvider):
    """Idempotent handlers for other services' events: the service's ``EventHandlers`` table,
    whose handled types also say which sources to pull from."""

    def __init__(self, handlers: "type[EventHandlers]", batch_catch_up: bool = True):
        self.sources = handlers.sources()
        self.handlers_factory: Callable[[ServiceStore], dict] = lambda store: handlers(store).table()
        # True: catch-up handles each pulled page in one transaction (for read models that
        # replay long histories); pushed events are always handled one by one.
        self.batch_catch_up = batch_catch_up
        self._lock = None

    def setup(self):
        store: ServiceStore = _find(self.container, Storage).ensure()
        self.consumer = EventConsumer(store.database, store.quarantine, self.handlers_factory(store),
                                      store.checkpoints, store.processed, store.failures,
                                      service=store.name)
        self._lock = eventlet.semaphore.Semaphore()

    def get_dependency(self, worker_ctx):
        return ConsumerApi(self)

    def catch_up(self) -> dict[str, int]:
        if not self._lock.acquire(blocking=False):
            return {}  # a pull is already running; the next tick will follow up
        try:
            results: dict[str, int] = {}
            with ClusterRpcProxy(self.container.config, timeout=60) as rpc:
                def fetch(source, position, limit):
                    return getattr(rpc, source).events_since(position, limit)
                for source in self.sources:
                    try:
                        results[source] = CatchUp(self.consumer, [source], fetch,
                                                  batch=self.batch_catch_up).pull(source)
                    except Exception as error:
                        log.warning("catch-up from %s failed: %s: %s", source, type(error).__name__, error)
            return results
        finally:
            self._lock.release()


def health_report(service: str, store: ServiceStore, relay: RelayStatus | None, extra: dict | None = None):
    """(status code, body) for ``GET /health``: 200 when the database and broker work."""
    problems = []
    try:
        store.database.ping()
    except Exception as error:
        problems.append(f"database: {type(error).__name__}")
    try:
        with Connection(config.amqp_uri(), connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as error:
        problems.append(f"broker: {type(error).__name__}")
    body = {"service": service, "status": "ok" if not problems else "unavailable"}
    if relay is not None:
        body["published"] = relay.published
    if extra:
        body.update(extra)
    if problems:
        body["status"] = "unavailable"  # a service's own "degraded" never hides a real outage
        body["reason"] = "; ".join(problems)
        return 503, body
    return 200, body
