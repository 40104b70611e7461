"""The type of every durable queue the services declare: quorum by default, classic only with
``NTBCARE_QUEUE_TYPE=classic`` (``shared.core.config.queue_type``).

A quorum queue is replicated on every node of a cluster (a classic queue lives on one node and its
messages die with it) and is what RabbitMQ 4 keeps; a single-node broker runs them as well.
nameko 2.14 builds its kombu ``Queue`` objects inside its entrypoints' ``setup`` (``RpcConsumer``:
``rpc-<service>``; ``EventHandler``: ``evt-<source>-<Type>--<service>.<method>``); ``install()``
wraps those two ``setup`` methods to add ``x-queue-type`` to the queue before it is declared —
nothing else of nameko changes. Reply queues (``rpc.reply-…``: nameko's ``ReplyListener`` and
the standalone proxy's exclusive one) stay classic: they are per-process and expire.

nameko declares a service's reply queue durable (kombu's default) with ``x-expires``; a durable
classic queue lives on one node, and while that node is down nobody can declare it again ("home
node … is down or inaccessible"). The service's one ``QueueConsumer`` consumes its RPC queue and
its reply queue together, so on a cluster that failure would stop the service's RPC until the
node came back (found by ``tests/faults/test_broker_cluster.py``). The reply queue is therefore
declared transient (``durable=False``, still expiring): RabbitMQ drops it with its node, and the
reconnecting consumer declares it again on a surviving node. A reply in it when the node died is
lost — the caller's call times out and is retried, as on any broker outage.

What quorum queues do not accept, and why nothing here needs it: exclusive or auto-delete queues
(only durable, shared queues get the argument) and a global prefetch (kombu's ``Consumer.qos`` is
per consumer: ``apply_global=False``). Deliveries are counted (``x-delivery-count``), without a
limit: nothing here returns a message to its queue in a loop — a handler's failure is acknowledged
and recorded by the consumer, which quarantines an event after its attempts, and a message goes
back only when its process stops or its connection dies mid-work (nameko's requeue on
``ContainerBeingKilled``, an unacknowledged delivery): at-least-once, as with classic queues.
"""
from __future__ import annotations

from kombu import Queue
from nameko.events import EventHandler
from nameko.rpc import ReplyListener, RpcConsumer

from shared.core import config

QUEUE_TYPE_ARGUMENT = "x-queue-type"


def arguments(durable: bool = True, exclusive: bool = False, auto_delete: bool = False) -> dict:
    """The queue arguments a service queue is declared with (``{}`` for classic or a queue that
    cannot be a quorum queue)."""
    if not durable or exclusive or auto_delete or config.queue_type() != "quorum":
        return {}
    return {QUEUE_TYPE_ARGUMENT: "quorum"}


def typed(queue: Queue) -> Queue:
    """``queue`` with the configured type (changed in place: it is not declared yet)."""
    extra = arguments(bool(queue.durable), bool(queue.exclusive), bool(queue.auto_delete))
    if extra:
        queue.queue_arguments = {**(queue.queue_arguments or {}), **extra}
    return queue


def install() -> None:
    """Give nameko's RPC and event-handler queues the configured type, and its reply queues no
    home node to wait for (idempotent)."""
    if getattr(RpcConsumer, "_ntbcare_typed_queues", False):
        return
    for cls in (RpcConsumer, EventHandler):
        original = cls.setup

        def setup(self, _original=original):
            _original(self)
            if self.queue is not None:  # built by the original setup, declared when consuming
                typed(self.queue)

        cls.setup = setup
        cls._ntbcare_typed_queues = True

    original_reply_setup = ReplyListener.setup

    def reply_setup(self):
        original_reply_setup(self)
        self.queue.durable = False  # see the module's docstring: lost with its node, declared anew

    ReplyListener.setup = reply_setup
