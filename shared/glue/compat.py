"""A fix for nameko 2.14 running on amqp 5, installed by ``shared.runner`` before a service starts.

When the broker goes away (a restart, a network cut) while a worker is finishing, nameko acks the
worker's message on the dead connection. nameko guards that ack against
``amqp.exceptions.ConnectionError`` only, but amqp 5 raises the socket's own errors
(``ConnectionResetError``, ``BrokenPipeError``: ``OSError``) — and a channel closed under the
ack raises amqp's channel errors —, which escape, end the worker's
thread with an error, and nameko then kills the whole service container — the process keeps
running but serves nothing (found by ``tests/faults/test_broker_restart.py``).

An ack or requeue that cannot reach the broker needs no handling: the broker gives an unacked
message to a consumer again after the reconnect, and every handler here is idempotent.

The same holds for an RPC reply: when a call finishes while the broker is away, nameko's
``Responder`` gives up after its retries with kombu's ``OperationalError`` (not an ``OSError``),
which ends the worker's thread and again kills the container. The reply is dropped instead (the
caller's call fails or times out, as it would on any broker outage, and callers here retry —
catch-up pulls again); the request stays unacked, so the broker delivers it again after the
reconnect.

With several broker addresses (``AMQP_URI`` with ``;``), the consumers' reconnection warning
names them all, each with its password redacted (nameko's own redacts the first one only).
"""
from __future__ import annotations

import logging
from typing import Callable

from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError
from nameko.messaging import QueueConsumer
from nameko.rpc import RpcConsumer
from nameko.utils import sanitize_url

from shared.core import config
from shared.glue import queues

log = logging.getLogger(__name__)

#: What an ack or requeue of a delivery can meet when its connection or channel is gone: the
#: socket's own errors, amqp's (a connection closed or forced closed by a node going down, a
#: channel closed under it — e.g. a delivery tag of a channel that was reopened after a
#: reconnect) and kombu's. Each means the broker will deliver the message again.
_GONE = (OSError, AMQPError, OperationalError)


def unless_gone(settle: Callable[[], None], what: str) -> None:
    """Run ``settle`` (an ack or a requeue); if the connection or channel is gone, log it and
    leave the message to the broker, which delivers it again after the reconnect."""
    try:
        settle()
    except _GONE as error:
        log.warning("could not %s, the broker connection is gone (%s); the broker will deliver it "
                    "again", what, type(error).__name__)


def install() -> None:
    queues.install()  # quorum (or, opted out, classic) service queues: shared.glue.queues
    if getattr(QueueConsumer, "_ntbcare_tolerates_lost_connections", False):
        return
    original_ack, original_requeue = QueueConsumer.ack_message, QueueConsumer.requeue_message

    def ack_message(self, message):
        unless_gone(lambda: original_ack(self, message), "ack a message")

    def requeue_message(self, message):
        unless_gone(lambda: original_requeue(self, message), "requeue a message")

    QueueConsumer.ack_message = ack_message
    QueueConsumer.requeue_message = requeue_message
    QueueConsumer._ntbcare_tolerates_lost_connections = True

    original_handle_result = RpcConsumer.handle_result

    def handle_result(self, message, result, exc_info):
        try:
            return original_handle_result(self, message, result, exc_info)
        except (OSError, OperationalError) as error:
            log.warning("could not send an RPC reply, the broker connection is gone (%s); the "
                        "caller retries and the broker delivers the request again",
                        type(error).__name__)
            return result, exc_info

    RpcConsumer.handle_result = handle_result

    def on_connection_error(self, exc, interval):
        # nameko redacts the password of the first address only; AMQP_URI may list several.
        log.warning("Error connecting to broker at %s (%s). Retrying in %s seconds.",
                    ";".join(sanitize_url(address) for address in config.amqp_addresses(self.amqp_uri)),
                    exc, interval)

    QueueConsumer.on_connection_error = on_connection_error
