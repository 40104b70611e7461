"""``ntbcare queues migrate``: turns a running broker's classic service queues into quorum queues
(or back, ``--to classic``) without losing a message. A queue cannot change its type in place, so
for each service queue ``Q`` (durable, shared: ``rpc-<service>``, ``evt-…``, ``gateway-calls``,
``<reader>.feed``; never the per-process ``rpc.reply-…`` queues):

1. ``Q.migrating`` is declared with the new type and bound like ``Q`` — from here on a new
   message reaches it — and then ``Q``'s bindings are removed (a message published between the
   two lands in both: a duplicate, which every consumer here ignores; never a loss);
2. every message of ``Q`` is moved to ``Q.migrating``: read, republished with its properties and
   routing key (through a throw-away fanout exchange bound to ``Q.migrating`` only), and
   acknowledged in ``Q`` only after the broker confirmed the copy;
3. ``Q``, once the broker counts nothing in it, is deleted and declared again with the new type
   and its bindings;
4. ``Q.migrating`` is unbound, its messages are moved back to ``Q`` the same way, and it is deleted.

A migration that is interrupted (a crash, a lost connection) is finished by running the command
again: a leftover ``Q.migrating`` is emptied into ``Q`` first. The services must be stopped (the
command refuses a queue that has consumers): a service still running with the old type would
declare ``Q`` again with it. Run it as the broker's administrator (it declares and deletes every
service's queues): ``AMQP_URI`` and ``RABBITMQ_MANAGEMENT_URL`` of an administrator.
"""
from __future__ import annotations

import time
from typing import Callable
from urllib.parse import quote

import amqp
import requests
from kombu import Connection

SUFFIX = ".migrating"
TYPE_ARGUMENT = "x-queue-type"


class MigrationRefused(RuntimeError):
    """A queue cannot be migrated now (it has consumers); the message says which and why."""


class Management:
    """The few RabbitMQ management API calls the migration needs."""

    def __init__(self, base_url: str, auth: tuple[str, str], vhost: str):
        self.base, self.auth, self.vhost = base_url.rstrip("/"), auth, vhost
        self.session = requests.Session()
        self.session.auth = auth

    def get(self, path: str):
        response = self.session.get(f"{self.base}/api/{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def queues(self) -> list[dict]:
        return self.get(f"queues/{quote(self.vhost, safe='')}")

    def bindings(self, queue: str) -> list[dict]:
        """The queue's bindings from named exchanges (not the default exchange's implicit one)."""
        return [binding for binding in self.get(f"queues/{quote(self.vhost, safe='')}/{quote(queue, safe='')}/bindings")
                if binding["source"]]


def queue_type(queue: dict) -> str:
    return queue.get("type") or (queue.get("arguments") or {}).get(TYPE_ARGUMENT) or "classic"


def is_service_queue(queue: dict) -> bool:
    """Durable and shared: what the services declare with ``NTBCARE_QUEUE_TYPE``; nameko's reply
    queues (``rpc.reply-…``, expiring) and exclusive or auto-delete queues are per process."""
    arguments = queue.get("arguments") or {}
    return (queue.get("durable", False) and not queue.get("exclusive", False) and not queue.get("auto_delete", False)
            and not queue["name"].startswith("rpc.reply-") and "x-expires" not in arguments
            and not queue["name"].endswith(SUFFIX))


def to_migrate(queues: list[dict], target: str) -> list[dict]:
    return [queue for queue in queues if is_service_queue(queue) and queue_type(queue) != target]


def _declare(channel, name: str, target: str, arguments: dict) -> None:
    arguments = {key: value for key, value in arguments.items() if key != TYPE_ARGUMENT}
    if target == "quorum":
        arguments[TYPE_ARGUMENT] = "quorum"
    channel.queue_declare(name, durable=True, auto_delete=False, arguments=arguments)


def _bind(channel, queue: str, bindings: list[dict]) -> None:
    for binding in bindings:
        channel.queue_bind(queue, binding["source"], binding["routing_key"], arguments=binding.get("arguments") or {})


def _unbind(channel, queue: str, bindings: list[dict]) -> None:
    for binding in bindings:
        channel.queue_unbind(queue, binding["source"], binding["routing_key"], arguments=binding.get("arguments") or {})


def move(channel, source: str, destination: str) -> int:
    """Every message of ``source`` into ``destination``, each acknowledged in ``source`` only after
    the broker confirmed its copy. Returns how many moved."""
    exchange = f"ntbcare.migration.{destination}"
    channel.exchange_declare(exchange, "fanout", durable=False, auto_delete=False)
    channel.queue_bind(destination, exchange, "")
    moved = 0
    try:
        while True:
            message = channel.basic_get(source, no_ack=False)
            if message is None:
                break
            properties = dict(message.properties)
            headers = dict(properties.get("application_headers") or {})
            headers.pop("x-delivery-count", None)  # the quorum queue's annotation, not the publisher's
            if "application_headers" in properties:
                properties["application_headers"] = headers
            copy = amqp.Message(message.body, **properties)
            channel.basic_publish_confirm(copy, exchange=exchange,
                                          routing_key=message.delivery_info.get("routing_key", ""),
                                          confirm_timeout=30)
            channel.basic_ack(message.delivery_tag)
            moved += 1
    finally:
        channel.exchange_delete(exchange)
    return moved


def consumers(channel, name: str) -> int:
    """The queue's consumers now (the broker's own count; the management API's lags seconds)."""
    return channel.queue_declare(name, passive=True).consumer_count


def drain_and_delete(channel, source: str, destination: str) -> int:
    """Move what ``source`` holds to ``destination``, then delete ``source`` once the broker counts
    nothing in it (quorum queues refuse ``if_empty``; ``source`` is unbound, so nothing arrives)."""
    moved = 0
    for _ in range(50):
        moved += move(channel, source, destination)
        if channel.queue_declare(source, passive=True).message_count == 0:
            channel.queue_delete(source)
            return moved
        time.sleep(0.1)
    raise RuntimeError(f"{source} does not empty; nothing was deleted, run the command again")


def migrate_queue(connection, management: Management, queue: dict, target: str) -> int:
    name = queue["name"]
    channel = connection.channel()
    if consumers(channel, name):
        raise MigrationRefused(f"{name} has consumers: stop the services first")
    bindings = management.bindings(name)
    arguments = dict(queue.get("arguments") or {})
    temporary = name + SUFFIX
    _declare(channel, temporary, target, arguments)
    _bind(channel, temporary, bindings)
    _unbind(channel, name, bindings)
    moved = drain_and_delete(channel, name, temporary)
    # A new channel for the queue under its new type: RabbitMQ 3.10's channel keeps the type of a
    # queue it published to, and crashes when one of that name comes back with another type.
    channel.close()
    channel = connection.channel()
    _declare(channel, name, target, arguments)
    _bind(channel, name, bindings)
    _unbind(channel, temporary, bindings)
    drain_and_delete(channel, temporary, name)
    channel.close()
    return moved


def finish_leftovers(connection, management: Management, queues: list[dict], target: str,
                     say: Callable[[str], None]) -> None:
    """An interrupted migration's ``Q.migrating``: its messages go to ``Q`` (declared with the
    target type if it is gone), then it is deleted."""
    by_name = {queue["name"]: queue for queue in queues}
    channel = connection.channel()
    for leftover in [queue for queue in queues if queue["name"].endswith(SUFFIX)]:
        name = leftover["name"][:-len(SUFFIX)]
        bindings = management.bindings(leftover["name"])
        if name not in by_name:
            _declare(channel, name, target, dict(leftover.get("arguments") or {}))
            _bind(channel, name, bindings)
        elif queue_type(by_name[name]) != target:
            continue  # step 1 of that queue's migration: its own migration below finishes it
        _unbind(channel, leftover["name"], bindings)
        moved = drain_and_delete(channel, leftover["name"], name)
        say(f"finished an interrupted migration of {name} ({moved} messages moved back)")
    channel.close()


def migrate(amqp_uri: str, management: Management, target: str = "quorum", dry_run: bool = False,
            say: Callable[[str], None] = print) -> dict[str, int]:
    """Migrate every service queue of the vhost that is not of type ``target``; returns queue →
    messages moved."""
    queues = management.queues()
    pending = to_migrate(queues, target)
    results: dict[str, int] = {}
    with Connection(amqp_uri, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=3)
        channel = connection.default_channel
        busy = [queue["name"] for queue in pending if consumers(channel, queue["name"])]
        if busy:
            raise MigrationRefused("these queues have consumers; stop the services first: " + ", ".join(busy))
        if dry_run:
            for queue in pending:
                say(f"would migrate {queue['name']} ({queue_type(queue)} → {target}, "
                    f"{queue.get('messages', 0)} messages)")
            return {queue["name"]: 0 for queue in pending}
        finish_leftovers(connection, management, queues, target, say)
        for queue in to_migrate(management.queues(), target):
            results[queue["name"]] = migrate_queue(connection, management, queue, target)
            say(f"migrated {queue['name']} ({queue_type(queue)} → {target}, {results[queue['name']]} messages kept)")
    return results
