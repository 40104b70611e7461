"""Group commit on the consuming side: pushed events are handed to workers in batches, each batch
handled in ONE transaction (``EventConsumer.handle_batch``) and acknowledged after its commit.

nameko's own ``EventHandler`` spawns one worker per delivered message, and each worker commits its
own transaction: on SQLite with ``synchronous=FULL`` that commit (and the worker around it) is most
of what handling an event costs. Here the event queues of a service are consumed by a
``BatchingQueueConsumer`` of their own — nameko's ``QueueConsumer`` (the same connection handling,
reconnects, and ``shared.glue.compat``'s tolerance of acks on a dead connection) on a connection of
its own with a prefetch of ``NTBCARE_CONSUMER_BATCH`` per queue — that collects deliveries instead
of spawning a worker for each:

* at most ONE batch worker runs per service process; while it runs, deliveries accumulate, and
  when it ends the next batch takes up to ``NTBCARE_CONSUMER_BATCH`` of them. An idle consumer
  therefore hands the first delivery over at once (no waiting for a batch to fill: latency at low
  load is unchanged), and batches grow only with a backlog — that is when commits are saved;
* a service that need not answer at once may *linger*: its consumer waits until the oldest
  waiting delivery is ``<SERVICE>_CONSUMER_LINGER_MS`` old (or a batch is full) before it hands a
  batch over, so that at everyday load the events of several complaints share one transaction
  instead of a transaction (and an ``fdatasync``) each. The default is the service's own
  (``listens_to(…, linger_ms=…)``): reporting and intake linger, routing briefly, notification too
  — but an *urgent* event (``listens_to(…, urgent=…)``) ends the wait at once and takes the
  lingering ones with it: in notification intake's events (``ComplaintFiled`` is the citizen's
  acknowledgment), in intake routing's lifecycle events. The gateway (outside systems' feeds) does
  not linger. ``0`` hands the first delivery over at once;
* the batch's worker runs the method of its first delivery's entrypoint (an ``on_<event_type>``
  of ``shared.glue.subscriptions.listens_to``) with a ``DeliveryBatch`` as its payload; the
  service's ``receive`` passes it to the ``Consumer`` provider like one payload
  (``ConsumerApi.handle``), so a service's post-handling (notification waking its sender, the
  gateway its relay) runs once per batch;
* every message of the batch is acknowledged after the worker returns — after the commit, with
  one ``basic.ack`` (``multiple``) per channel —
  and, as with nameko's ``EventHandler`` (``requeue_on_error=False``), also when it raised: a
  failure is recorded by the consumer and catch-up pulls the event again. A process that dies
  mid-batch acknowledged nothing of it: the broker delivers the whole batch again and every event
  in it is a duplicate or handled anew (the transaction was not committed).

Queue names, bindings and their durability are nameko's ``EventHandler``'s, unchanged (the broker
permissions of docs/operations.md name them); their type is quorum unless opted out
(``shared.glue.queues``, which wraps ``EventHandler.setup``). ``NTBCARE_CONSUMER_BATCH=0`` restores one nameko
worker per delivery.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from nameko.events import EventHandler
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import QueueConsumer

from shared.core import config
from shared.glue.compat import unless_gone

log = logging.getLogger(__name__)

DEFAULT_BATCH = 50


def batch_size() -> int:
    """``NTBCARE_CONSUMER_BATCH``: most pushed events handled in one transaction (0: one nameko
    worker, one transaction per delivery)."""
    raw = config.env("NTBCARE_CONSUMER_BATCH", str(DEFAULT_BATCH))
    try:
        size = int(raw)
    except ValueError:
        raise config.ConfigError(f"NTBCARE_CONSUMER_BATCH must be a whole number, not {raw!r}") from None
    if size < 0:
        raise config.ConfigError("NTBCARE_CONSUMER_BATCH must be 0 (no batching) or more")
    return size


def linger_seconds(service: str, default_ms: float) -> float:
    """``<SERVICE>_CONSUMER_LINGER_MS``: how long the oldest waiting delivery may wait for others to
    join its batch (``default_ms``: the service's own choice)."""
    return config.linger_seconds(f"{service.upper()}_CONSUMER_LINGER_MS", default_ms)


def _event_type(provider: Any) -> str | None:
    return getattr(provider, "event_type", None)


class DeliveryBatch:
    """Pushed events handed to one worker: ``items`` is ``[(payload, source), …]`` in delivery order."""

    def __init__(self, items: list[tuple[Any, str]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:  # what nameko logs as the worker's argument
        return f"DeliveryBatch({len(self.items)} events)"


class BatchingQueueConsumer(QueueConsumer):
    """The event queues' consumer: deliveries collected, one batch worker at a time."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: deque[tuple[Any, Any, Any]] = deque()
        self._arrived: deque[float] = deque()   # when each pending delivery came (monotonic)
        self._in_flight = False
        self._size = 1
        self._linger = 0.0
        self._urgent: frozenset[str] = frozenset()
        self._wake = threading.Event()   # a full batch or an urgent event; green under monkey-patching

    def setup(self) -> None:
        self._size = batch_size() or 1
        self._linger = linger_seconds(self.container.service_name,
                                      getattr(self.container.service_cls, "consumer_linger_ms", 0))
        self._urgent = frozenset(getattr(self.container.service_cls, "consumer_urgent", ()))

    @property
    def prefetch_count(self) -> int:
        # Per queue (RabbitMQ's per-consumer basic.qos): enough unacknowledged deliveries to fill
        # a batch while the previous one is handled.
        return max(self._size, self.container.max_workers)

    def handle_message(self, provider, body, message):
        # Called in the consumer's thread for each delivery: only collect, never block here.
        self._pending.append((provider, body, message))
        self._arrived.append(time.monotonic())
        if len(self._pending) >= self._size or _event_type(provider) in self._urgent:
            self._wake.set()
        self._next()

    def _next(self) -> None:
        if self._in_flight or not self._pending:
            return
        self._in_flight = True
        # Runs when the consumer's thread next waits for the socket: every delivery already read
        # by then joins this batch.
        self.container.spawn_managed_thread(self._dispatch, identifier="BatchingQueueConsumer.dispatch")

    def _dispatch(self) -> None:
        wait = self._lingering()
        if wait > 0:
            self._wake.clear()
            if self._lingering() > 0:   # nothing arrived between the look and the clear
                self._wake.wait(wait)
        count = min(self._size, len(self._pending))
        taken = [self._pending.popleft() for _ in range(count)]
        for _ in range(count):
            self._arrived.popleft()
        if not taken:
            self._in_flight = False
            return
        first_provider, _, first_message = taken[0]
        batch = DeliveryBatch([(body, provider.source_service) for provider, body, _ in taken])

        def handle_result(worker_ctx, result=None, exc_info=None):
            try:
                self._settle(taken, result, exc_info)
            finally:
                self._in_flight = False
                self._next()
            return result, exc_info

        try:
            self.container.spawn_worker(first_provider, (batch,), {},
                                        context_data=first_provider.unpack_message_headers(first_message),
                                        handle_result=handle_result)
        except ContainerBeingKilled:
            for _, _, message in taken:
                self.requeue_message(message)
            self._in_flight = False

    def _lingering(self) -> float:
        """How much longer the pending deliveries may wait for others (0: hand them over now)."""
        if not self._linger or not self._pending or len(self._pending) >= self._size or (
                self._urgent and any(_event_type(provider) in self._urgent for provider, _, _ in self._pending)):
            return 0.0
        return max(0.0, self._arrived[0] + self._linger - time.monotonic())

    def _settle(self, taken: list[tuple[Any, Any, Any]], result: Any, exc_info: Any) -> None:
        """Acknowledge a handled batch with ONE ``basic.ack`` per channel (``multiple``, up to its
        last delivery) instead of one per message: a batch is the oldest of the channel's
        unacknowledged deliveries (batches are taken oldest first, one at a time, and each earlier
        one was settled before this one was taken), so "everything up to this tag" is exactly the
        batch. On a quorum queue every acknowledgment is an entry in the queue's log. A provider
        that requeues on error (none here: nameko's ``EventHandler`` default) settles message by
        message, as nameko does."""
        if exc_info is not None and any(provider.requeue_on_error for provider, _, _ in taken):
            for provider, _, message in taken:
                provider.handle_message_processed(message, result, exc_info)
            return
        last: dict[int, Any] = {}   # per channel (a reconnect mid-batch leaves two), its last delivery
        for _, _, message in taken:
            held = last.get(id(message.channel))
            if held is None or message.delivery_tag > held.delivery_tag:
                last[id(message.channel)] = message
        for message in last.values():
            self.ack_up_to(message)

    def ack_up_to(self, message: Any) -> None:
        """``basic.ack`` with ``multiple``: this delivery and every earlier one of its channel. As
        with a single ack (``shared.glue.compat``), a channel or connection that is gone is left to
        redelivery."""
        if message.channel.connection:   # else the broker took them back when it closed
            unless_gone(lambda: message.ack(multiple=True), "ack a batch")


class BatchedEventHandler(EventHandler):
    """nameko's ``EventHandler`` (same queue, binding and worker method) whose deliveries are
    batched by the service's ``BatchingQueueConsumer``."""

    queue_consumer = BatchingQueueConsumer()


batched_event_handler = BatchedEventHandler.decorator
