"""A fix for nameko 2.14 running on amqp 5, installed by ``shared.runner`` before a service starts.

When the broker goes away (a restart, a network cut) while a worker is finishing, nameko acks the
worker's message on the dead connection. nameko guards that ack against
``amqp.exceptions.ConnectionError`` only, but amqp 5 raises the socket's own errors
(``ConnectionResetError``, ``BrokenPipeError``: ``OSError``), which escape, end the worker's
thread with an error, and nameko then kills the whole service container — the process keeps
running but serves nothing (found by ``tests/faults/test_broker_restart.py``).

An ack or requeue that cannot reach the broker needs no handling: the broker gives an unacked
message to a consumer again after the reconnect, and every handler here is idempotent.
"""
from __future__ import annotations

import logging

from nameko.messaging import QueueConsumer

log = logging.getLogger(__name__)


def install() -> None:
    if getattr(QueueConsumer, "_ntbcare_tolerates_lost_connections", False):
        return
    original_ack, original_requeue = QueueConsumer.ack_message, QueueConsumer.requeue_message

    def ack_message(self, message):
        try:
            original_ack(self, message)
        except OSError as error:
            log.warning("could not ack a message, the broker connection is gone (%s); the broker "
                        "will deliver it again", type(error).__name__)

    def requeue_message(self, message):
        try:
            original_requeue(self, message)
        except OSError as error:
            log.warning("could not requeue a message, the broker connection is gone (%s); the "
                        "broker will deliver it again", type(error).__name__)

    QueueConsumer.ack_message = ack_message
    QueueConsumer.requeue_message = requeue_message
    QueueConsumer._ntbcare_tolerates_lost_connections = True
