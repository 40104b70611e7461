"""nameko DependencyProviders every service uses, each handing workers a small interface:

* ``Storage`` — the service's ``ServiceStore`` (``shared.core.store``), migrated on start;
* ``Consumer`` — idempotent handling of other services' events (``shared.core.consumer``) plus
  catch-up by pulling ``<source>.events_since`` over RPC.

Public endpoints' rate limits, shared by every replica, are ``shared.glue.shared_limits``.

The outbox relay is in ``shared.glue.relay``.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

import eventlet
from nameko.extensions import DependencyProvider
from nameko.standalone.rpc import ClusterRpcProxy

from shared.core.consumer import CatchUp, EventConsumer
from shared.core.handlers import EventHandlers
from shared.core.store import ServiceStore
from shared.glue.batching import DeliveryBatch
from shared.glue.retention import RetentionTimer

log = logging.getLogger(__name__)


_BUILD_LOCK = threading.RLock()  # green under eventlet's monkey patching


class Storage(DependencyProvider):
    """Hands workers the service's ``ServiceStore`` (database, event store, quarantine)."""

    retention = RetentionTimer()  # prunes what the store keeps only for a while (shared.glue.retention)

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


class ConsumerApi:
    """What a worker needs: handle a pushed event, catch up, replay quarantined events."""

    def __init__(self, provider: "Consumer"):
        self._provider = provider
        self.consumer: EventConsumer = provider.consumer

    def handle(self, payload, source: str):
        """One pushed payload (its outcome), or a ``DeliveryBatch`` from the batching consumer
        (``shared.glue.batching``: the outcome of each of its events, handled in one transaction)."""
        if isinstance(payload, DeliveryBatch):
            return self.consumer.handle_batch(payload.items)
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
        # replay long histories); pushed events come in batches of their own
        # (shared.glue.batching, NTBCARE_CONSUMER_BATCH), each in one transaction.
        self.batch_catch_up = batch_catch_up
        self._lock = None
        # Each source's checkpoint at the previous catch-up round (CatchUp.horizon): while push
        # keeps moving it, a round only confirms what was pushed instead of racing it.
        self._progress: dict[str, int] = {}

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

                def fetch_ids(source, position, limit):
                    return getattr(rpc, source).event_ids_since(position, limit)
                for source in self.sources:
                    try:
                        results[source] = CatchUp(self.consumer, [source], fetch, batch=self.batch_catch_up,
                                                  progress=self._progress, fetch_ids=fetch_ids).pull(source)
                    except Exception as error:
                        log.warning("catch-up from %s failed: %s: %s", source, type(error).__name__, error)
            return results
        finally:
            self._lock.release()
