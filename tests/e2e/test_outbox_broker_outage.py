"""An event recorded while the broker is unreachable is published once it is back: the outbox
relay retries on its timer and nothing is lost. The outage is real — intake talks to RabbitMQ
through a TCP forwarder process that the test kills and restarts."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pika
import pytest
import requests

from tests.support.infra import free_port
from tests.support.platform import ROOT, Platform, wait_for


class Forwarder:
    def __init__(self, port: int):
        self.port = port
        self.process = None

    def start(self):
        self.process = subprocess.Popen([sys.executable, "-m", "tests.support.tcpproxy", str(self.port),
                                         "127.0.0.1", "5672"], cwd=ROOT)
        wait_for(lambda: _connects(self.port), 10, message="forwarder listening")

    def stop(self):
        self.process.kill()
        self.process.wait()


def _connects(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def intake_behind_forwarder(amqp_uri, tmp_path):
    forwarder = Forwarder(free_port())
    forwarder.start()
    vhost = amqp_uri.rsplit("/", 1)[1]
    platform = Platform(amqp_uri, tmp_path, services=("intake",), with_sandbox=False,
                        extra_env={"AMQP_URI": f"amqp://guest:guest@127.0.0.1:{forwarder.port}/{vhost}"})
    platform.start_all()
    yield platform, forwarder
    platform.stop_all()
    if forwarder.process.poll() is None:
        forwarder.stop()


def test_event_recorded_during_outage_is_published_after_it(intake_behind_forwarder, amqp_uri):
    platform, forwarder = intake_behind_forwarder
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.exchange_declare("intake.events", exchange_type="topic", durable=True)
    queue = channel.queue_declare(queue="outside-system-test", durable=True).method.queue
    channel.queue_bind(queue=queue, exchange="intake.events", routing_key="#")

    forwarder.stop()  # the broker is now unreachable for intake
    wait_for(lambda: requests.get(f"{platform.url('intake')}/health", timeout=5).status_code == 503, 20,
             message="intake reporting the broker as down")
    response = requests.post(f"{platform.url('intake')}/api/complaints", timeout=10,
                             json={"text": "Sampah menumpuk di pasar Cakranegara sudah seminggu."})
    assert response.status_code == 201
    complaint_id = response.json()["complaint_id"]
    time.sleep(2)  # the relay tries, fails, and keeps the event in the outbox
    assert channel.basic_get(queue, auto_ack=False)[0] is None

    forwarder.start()  # the broker is back

    def published():
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        return json.loads(body) if method else None
    envelope = wait_for(published, 30, message="the event published after the outage")
    assert envelope["complaint_id"] == complaint_id and envelope["event_type"] == "ComplaintFiled"
    assert platform.processes["intake"].poll() is None  # the service survived the outage
    assert requests.get(f"{platform.url('intake')}/health", timeout=5).status_code == 200
    channel.queue_delete(queue)
    connection.close()
