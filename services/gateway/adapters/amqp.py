"""The gateway's nameko glue: the entrypoint that consumes outside systems' calls from the queue
``gateway-calls`` (bound to the ``ntbcare.gateway`` exchange by ``shared.broker_setup``, never by
the gateway: its broker user may not read that exchange, so it cannot bind it onwards), publishes
each answer to ``ntbcare.replies``, and the internal RPC it calls services with.

Unlike nameko's own RPC entrypoint it takes nothing from the message's ``nameko.*`` headers: the
only context the called service gets is ``caller_system``, the broker-validated ``user_id``."""
from __future__ import annotations

import logging
from functools import partial
from typing import Any

from kombu import Exchange, Queue
from kombu.exceptions import OperationalError
from amqp.exceptions import NotFound
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.exceptions import ContainerBeingKilled, RemoteError, serialize
from nameko.extensions import DependencyProvider, Entrypoint
from nameko.messaging import QueueConsumer
from nameko.amqp.publish import Publisher
from nameko.rpc import MethodProxy, ReplyListener

from shared.glue import broker, queues
from services.gateway.domain.grants import IncomingCall, reply_allowed

log = logging.getLogger("gateway")

CALLS_EXCHANGE = "ntbcare.gateway"
CALLS_QUEUE = "gateway-calls"
REPLIES_EXCHANGE = "ntbcare.replies"
#: The context-data key the called service finds the caller in (nameko header ``nameko.caller_system``).
CALLER_KEY = "caller_system"


class CallsQueueConsumer(QueueConsumer):
    """nameko's queue consumer, except that a body that cannot be decoded (not JSON, another
    content type) is dropped with a log line instead of stopping the service."""

    def get_consumers(self, consumer_cls, channel):
        consumers = super().get_consumers(consumer_cls, channel)
        for consumer in consumers:
            consumer.on_decode_error = self._drop_undecodable
        return consumers

    def _drop_undecodable(self, message, error):
        log.warning("dropped a call that is not JSON (%s) from %s", type(error).__name__,
                    message.properties.get("user_id") or "(no user_id)")
        self.ack_message(message)


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The error as nameko serialises it; a service's error that crossed RPC unregistered keeps
    the service's own type and message."""
    if isinstance(exc, RemoteError):
        return {"exc_type": exc.exc_type, "exc_path": None, "exc_args": [exc.value], "value": exc.value}
    return serialize(exc)


def ensure_topology(amqp_uri: str) -> None:
    """In production ``shared.broker_setup`` declares the gateway's exchanges, queue and binding
    (the gateway's own user may not). Where they are missing — a development broker where the
    gateway runs as an all-powerful user — it declares them itself, so ``make run`` just works."""
    calls_exchange = Exchange(CALLS_EXCHANGE, type="topic", durable=True)
    with broker.connect(amqp_uri) as connection:
        try:
            channel = connection.channel()
            channel.queue_declare(CALLS_QUEUE, passive=True)
            channel.exchange_declare(REPLIES_EXCHANGE, "topic", passive=True)
            return
        except (NotFound, OperationalError):
            pass
        channel = connection.channel()
        Exchange(REPLIES_EXCHANGE, type="topic", durable=True)(channel).declare()
        Queue(CALLS_QUEUE, calls_exchange, routing_key="#", durable=True,
              queue_arguments=queues.arguments())(channel).declare()  # quorum unless opted out
        log.warning("declared %s, %s and %s (run shared.broker_setup to do that in production)",
                    CALLS_EXCHANGE, CALLS_QUEUE, REPLIES_EXCHANGE)


class GatewayCall(Entrypoint):
    """Decorates the service method that answers a call: ``method(self, call: IncomingCall)``."""

    queue_consumer = CallsQueueConsumer()

    def setup(self):
        ensure_topology(self.container.config[AMQP_URI_CONFIG_KEY])
        self.queue = Queue(CALLS_QUEUE, no_declare=True)  # declared and bound by broker_setup
        self.queue_consumer.register_provider(self)

    def stop(self):
        self.queue_consumer.unregister_provider(self)
        super().stop()

    def handle_message(self, body, message):
        properties = message.properties
        call = IncomingCall(caller=properties.get("user_id") or None,
                            operation=message.delivery_info["routing_key"],
                            reply_to=properties.get("reply_to") or None,
                            correlation_id=properties.get("correlation_id"), body=body)
        context = {CALLER_KEY: call.caller} if call.caller else {}
        try:
            self.container.spawn_worker(self, (call,), {}, context_data=context,
                                        handle_result=partial(self.handle_result, message, call))
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    def handle_result(self, message, call: IncomingCall, worker_ctx, result, exc_info):
        payload = {"result": result if exc_info is None else None,
                   "error": None if exc_info is None else error_payload(exc_info[1])}
        if reply_allowed(call):
            Publisher(self.container.config[AMQP_URI_CONFIG_KEY]).publish(
                payload, exchange=REPLIES_EXCHANGE, routing_key=call.reply_to,
                correlation_id=call.correlation_id, serializer="json")
        elif call.reply_to:
            log.warning("no reply to %s: not a reply key of %s", call.reply_to, call.caller)
        self.queue_consumer.ack_message(message)
        return result, exc_info


gateway_call = GatewayCall.decorator


class InternalRpc(DependencyProvider):
    """``rpc(operation, args, kwargs)``: a nameko RPC to ``<service>.<method>``, carrying the
    worker's context data (``caller_system``) as nameko headers."""

    rpc_reply_listener = ReplyListener()

    def get_dependency(self, worker_ctx):
        def rpc(operation: str, args: list, kwargs: dict):
            service, method = operation.split(".", 1)
            return MethodProxy(worker_ctx, service, method, self.rpc_reply_listener)(*args, **kwargs)
        return rpc
