"""Calling an NTBCare RPC from another system with plain pika (no nameko), speaking nameko's RPC
protocol: publish ``{"args": [...], "kwargs": {...}}`` to the ``nameko-rpc`` topic exchange with
routing key ``<service>.<method>``, ``reply_to`` naming the routing key your reply queue is bound
with, and a ``correlation_id``; the reply is ``{"result": ..., "error": null | {...}}``.

It needs no permission to declare shared exchanges: only its own reply queue (prefix = its user
name), write to ``nameko-rpc`` for the routing keys it may call, read for its own reply key.

    python examples/pika_rpc_client.py amqp://lapor-sp4n:secret@broker:5672/ntbcare \
        intake.file_complaint '{"text": "Jalan rusak di Praya", "channel": "api"}'
"""
from __future__ import annotations

import json
import sys
import time
import uuid

import pika


class RemoteError(Exception):
    def __init__(self, error: dict):
        super().__init__(f"{error.get('exc_type')}: {error.get('value')}")
        self.error = error


class PikaRpcClient:
    def __init__(self, amqp_uri: str, queue_prefix: str, timeout: float = 30.0):
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        self.channel = self.connection.channel()
        self.reply_key = f"{queue_prefix}.replies-{uuid.uuid4().hex[:12]}"
        self.channel.queue_declare(self.reply_key, exclusive=True, auto_delete=True)
        self.channel.queue_bind(self.reply_key, "nameko-rpc", routing_key=self.reply_key)
        self.channel.confirm_delivery()
        self.timeout = timeout

    def call(self, service: str, method: str, *args, **kwargs):
        correlation_id = str(uuid.uuid4())
        self.channel.basic_publish(
            "nameko-rpc", f"{service}.{method}", json.dumps({"args": args, "kwargs": kwargs}),
            pika.BasicProperties(reply_to=self.reply_key, correlation_id=correlation_id,
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
    client = PikaRpcClient(uri, queue_prefix=pika.URLParameters(uri).credentials.username)
    print(json.dumps(client.call(service, method, payload), indent=2, ensure_ascii=False))
    client.close()
