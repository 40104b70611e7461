"""Calling NTBCare from another system with plain pika (no nameko), through the gateway
(docs/gateway.md): publish ``{"args": [...], "kwargs": {...}}`` to the ``ntbcare.gateway``
exchange with routing key ``<service>.<method>``, ``reply_to`` = a routing key of your own
(``<your user>.…``) that your reply queue is bound with on ``ntbcare.replies``, a
``correlation_id`` and **``user_id`` = your broker user** (RabbitMQ refuses any other value, so
it proves who calls). The reply is nameko's: ``{"result": ..., "error": null | {exc_type, value, …}}``.

It needs only: configure/read/write on its own ``<user>.…`` queues, write on ``ntbcare.gateway``,
read on ``ntbcare.replies`` for its own keys. Which operations it may call is the gateway's grant
file; anything else is answered with a ``Forbidden`` error.

    python examples/pika_rpc_client.py amqp://lapor-sp4n:secret@broker:5672/ntbcare \
        intake.file_complaint '{"text": "Jalan rusak di Praya", "channel": "api"}'
"""
from __future__ import annotations

import json
import sys
import time
import uuid

import pika

GATEWAY_EXCHANGE = "ntbcare.gateway"
REPLIES_EXCHANGE = "ntbcare.replies"


class RemoteError(Exception):
    def __init__(self, error: dict):
        super().__init__(f"{error.get('exc_type')}: {error.get('value')}")
        self.error = error


class PikaRpcClient:
    def __init__(self, amqp_uri: str, queue_prefix: str | None = None, timeout: float = 30.0):
        # Several broker nodes may be given separated by ";" (as NTBCare's AMQP_URI): pika tries
        # each in turn until one answers.
        every = [pika.URLParameters(address.strip()) for address in amqp_uri.split(";") if address.strip()]
        self.user = every[0].credentials.username
        self.connection = pika.BlockingConnection(every)
        self.channel = self.connection.channel()
        # The gateway answers only to keys under the caller's own name.
        self.reply_key = f"{queue_prefix or self.user}.replies-{uuid.uuid4().hex[:12]}"
        self.channel.queue_declare(self.reply_key, exclusive=True, auto_delete=True)
        self.channel.queue_bind(self.reply_key, REPLIES_EXCHANGE, routing_key=self.reply_key)
        self.channel.confirm_delivery()
        self.timeout = timeout

    def call(self, service: str, method: str, *args, **kwargs):
        correlation_id = str(uuid.uuid4())
        self.channel.basic_publish(
            GATEWAY_EXCHANGE, f"{service}.{method}", json.dumps({"args": args, "kwargs": kwargs}),
            pika.BasicProperties(reply_to=self.reply_key, correlation_id=correlation_id, user_id=self.user,
                                 content_type="application/json", delivery_mode=2),
            mandatory=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            method_frame, properties, body = self.channel.basic_get(self.reply_key, auto_ack=True)
            if method_frame is None:
                self.connection.sleep(0.05)
                continue
            if properties.correlation_id != correlation_id:
                continue
            reply = json.loads(body)
            if reply.get("error"):
                raise RemoteError(reply["error"])
            return reply["result"]
        raise TimeoutError(f"{service}.{method}: no reply within {self.timeout}s")

    def close(self):
        self.connection.close()


if __name__ == "__main__":
    uri, target, payload = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    service, method = target.split(".", 1)
    client = PikaRpcClient(uri)
    print(json.dumps(client.call(service, method, payload), indent=2, ensure_ascii=False))
    client.close()
