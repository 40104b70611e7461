"""The outbox relay: publishes recorded events to ``<service>.events`` from the event store only,
deletes the outbox row after the broker confirmed, and retries on a timer after a broker outage
or a crash (no worker interface).

A commit that appended events wakes the relay. A service whose events nobody waits for may let the
relay *linger* after the wake-up (``OutboxRelay(linger_ms=…)``, ``<SERVICE>_RELAY_LINGER_MS``), so
that the events of several commits go out in one round — one read, one confirm wait, one mark —
instead of a round each."""
from __future__ import annotations

import logging
import threading
import time

import amqp
import eventlet
from kombu import Connection
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider

from shared.core import config, jsontext, metrics
from shared.core.exclusive import KeptLock
from shared.glue import broker
from shared.core.store import ServiceStore
from shared.glue.providers import Storage, _find

log = logging.getLogger(__name__)


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


def relay_linger_seconds(service: str, default_ms: float) -> float:
    """``<SERVICE>_RELAY_LINGER_MS``: how long the relay waits after a wake-up for more commits to
    join its round (``default_ms``: the service's own choice)."""
    return config.linger_seconds(f"{service.upper()}_RELAY_LINGER_MS", default_ms)


class OutboxRelay(DependencyProvider):
    batch_size = 500

    def __init__(self, linger_ms: float = 0, **kwargs):
        super().__init__(**kwargs)
        self.linger_ms = linger_ms

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
        self.rounds = 0   # rounds that published something (a figure for tests and benches)
        self._linger = relay_linger_seconds(self.container.service_name, self.linger_ms)
        self.store.database.after_commit_hooks.append(lambda _envelopes: self.wake())
        self._lock = KeptLock(self.store.database.engine, "outbox-relay")

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
        try:
            self._rounds()
        finally:   # stopped or killed: the lock a round kept goes back (another replica may publish)
            self._lock.let_go()

    def _rounds(self):
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
            if self._wake.wait(poll) and self._linger and self._running:
                eventlet.sleep(self._linger)   # the commits of the next moments join this round
            self._wake.clear()

    def _open_channel(self):
        """The confirm channel events are published on, connecting first when needed."""
        if self._connection is None:
            # Confirms are enabled on the channel and awaited per batch (below), not per
            # message: kombu's confirm_publish would wait one broker round trip per event.
            # Every address of AMQP_URI once (shared.glue.broker); after a failure the next
            # attempt starts again from the first.
            self._connection = broker.connect(self.container.config["AMQP_URI"],
                                              ssl=self.container.config.get("AMQP_SSL"))  # amqps://
            self._channel = self._connection.channel()
            self._channel.confirm_select()
            self._next_tag = 1  # the broker numbers a confirm channel's publishes from 1
            self._acked: set[int] = set()
            self._nacked: set[int] = set()
            self._channel.events["basic_ack"].add(self._on_ack)
            self._channel.events["basic_nack"].add(self._on_nack)
            self.declare(self._channel)
        return self._channel

    # What a subclass may change (the gateway's feeds: shared by readers' exchanges, from its feed log).
    def outbox(self):
        """Where unpublished events are read and marked published: the service's event store."""
        return self.store.event_store

    def destination(self, envelope: dict) -> tuple[str, str, dict]:
        """Exchange, routing key and body of one recorded event: ``<service>.events``, its type."""
        return self.exchange.name, envelope["event_type"], envelope

    def declare(self, channel) -> None:
        self.exchange(channel).declare()

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
        whole batch; only confirmed events leave the outbox (in one statement). One relay of the
        service's replicas publishes at a time (``shared.core.exclusive``): each event goes out
        once and a log's events in position order; the others find the lock taken and wait for
        their next round. The lock is kept from a round to the next while rounds find events to
        publish, and given back by a round that finds none or fails (a replica whose broker is
        gone lets another publish) and when the relay stops."""
        if not self._lock.take():
            return 0
        try:
            sent = self._publish_pending(self._lock.session)
        except BaseException:
            self._lock.let_go()
            raise
        if not sent:
            self._lock.let_go()
        return sent

    def _publish_pending(self, session=None) -> int:
        """``session``: PostgreSQL's connection holding the lock (autocommit): the round reads and
        marks on it — two round trips, and none if the lock was lost with it."""
        database, event_store = self.store.database, self.outbox()
        if session is not None:
            pending = event_store.unpublished(session, self.batch_size)
        else:
            with database.read() as connection:
                pending = event_store.unpublished(connection, self.batch_size)
        if not pending:
            self.broker_ok = self.broker_ok or self._connection is not None
            return 0
        channel = self._open_channel()
        connection = self._connection
        by_tag: dict[int, dict] = {}
        self._unsettled = by_tag
        confirmed: list[int] = []
        try:
            for envelope in pending:
                exchange, routing_key, body = self.destination(envelope)
                # Straight to the channel: the message kombu's Producer.publish would build (JSON,
                # utf-8, persistent, the event id header), without its per-message preparation,
                # which cost as much as the publish itself.
                channel.basic_publish(amqp.Message(
                    jsontext.encode(body), content_type="application/json", content_encoding="utf-8",
                    delivery_mode=2, application_headers={"ntbcare.event_id": envelope["event_id"]}),
                    exchange=exchange, routing_key=routing_key)
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
                # Unsynced: a power cut that undoes this only republishes these events, and every
                # consumer ignores a repeat; an fsync per round would hold the process up for it.
                if session is not None:
                    event_store.mark_published(session, confirmed, unsynced=True)
                else:
                    with database.unsynced() as connection:
                        event_store.mark_published(connection, confirmed)
                self.published_count += len(confirmed)
                self.rounds += 1
        if nacked:
            raise RuntimeError(f"broker nacked {len(nacked)} of {len(by_tag)} events")
        self.broker_ok = True
        self.last_error = None
        return len(confirmed)
