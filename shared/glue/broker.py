"""Connections to the broker for the code that opens its own (the outbox relay, ``/health``, the
gateway's topology checks): ``AMQP_URI`` may list several addresses separated by ``;`` (every node
of a cluster, kombu's failover syntax), and one connection attempt tries each of them once, in
order, before it fails — kombu's own default (two tries) would never reach a third node."""
from __future__ import annotations

from kombu import Connection

from shared.core import config


def retries(amqp_uri: str) -> int:
    """kombu's ``max_retries`` (attempts after the first) for one try of every address; at least
    one, as before: a single broker that is restarting gets a second chance."""
    return max(1, len(config.amqp_addresses(amqp_uri)) - 1)


def connect(amqp_uri: str, ssl=None, connect_timeout: float = 5, timeout: float | None = None) -> Connection:
    """An established connection to the first address of ``amqp_uri`` that answers."""
    connection = Connection(amqp_uri, connect_timeout=connect_timeout, ssl=ssl)
    try:
        connection.ensure_connection(max_retries=retries(amqp_uri), interval_start=0.5, interval_step=0.5,
                                     interval_max=1, timeout=timeout)
    except BaseException:
        connection.release()
        raise
    return connection
