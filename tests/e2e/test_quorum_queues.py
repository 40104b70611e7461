"""The services' queues on the real broker (issue 18): every durable queue a service declares is a
quorum queue by default and classic only with ``NTBCARE_QUEUE_TYPE=classic``; ``AMQP_URI`` may
list several addresses and a service whose first address is down starts and works through the
next; ``ntbcare queues migrate`` turns a stopped platform's classic queues into quorum queues and
the messages left in them are consumed afterwards."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tests.support import infra
from tests.support.infra import free_port
from tests.support.platform import ROOT, Platform, wait_for


@pytest.fixture
def rabbit_vhost():
    """A vhost per test (not per module): each test declares the same queue names, of either type."""
    name = f"ntbcare-test-{uuid.uuid4().hex[:8]}"
    infra.create_vhost(name)
    yield name
    infra.delete_vhost(name)


@pytest.fixture
def amqp_uri(rabbit_vhost):
    return infra.amqp_uri(rabbit_vhost)


def service_queues(vhost: str) -> dict[str, dict]:
    """Durable, shared queues (not nameko's per-process ``rpc.reply-…`` ones)."""
    return {queue["name"]: queue for queue in infra.queues(vhost)
            if queue["durable"] and not queue["exclusive"] and not queue["auto_delete"]
            and not queue["name"].startswith("rpc.reply-")}


def routed(platform: Platform, complaint_id: str):
    with platform.rpc() as rpc:
        return [event for event in rpc.routing.events_since(0, 1000)
                if event["complaint_id"] == complaint_id and event["event_type"] == "ComplaintRouted"]


def file_complaint(platform: Platform, text: str) -> str:
    with platform.rpc() as rpc:
        return rpc.intake.file_complaint({"text": text, "channel": "api"})["complaint_id"]


def test_every_queue_a_service_declares_is_a_quorum_queue(amqp_uri, rabbit_vhost, tmp_path):
    platform = Platform(amqp_uri, tmp_path, services=("intake", "routing", "gateway"), with_sandbox=False)
    try:
        platform.start_all()
        queues = service_queues(rabbit_vhost)
        # RPC queues, event-handler queues and the gateway's own (calls, outside readers' feeds).
        assert {"rpc-intake", "rpc-routing", "gateway-calls", "dinas-pupr-si.feed"} <= set(queues)
        assert any(name.startswith("evt-intake-") and name.endswith(".on_complaint_filed") for name in queues)
        assert any(name.startswith("evt-routing-") and "--gateway." in name for name in queues)
        assert {name: queue["type"] for name, queue in queues.items()} == {name: "quorum" for name in queues}
        # The services' reply queues (not this test's own proxy's): classic, and transient
        # (dropped with their node, declared anew elsewhere).
        replies = [queue for queue in infra.queues(rabbit_vhost)
                   if queue["name"].startswith(("rpc.reply-intake-", "rpc.reply-routing-", "rpc.reply-gateway-"))]
        assert replies and all(queue["type"] == "classic" and not queue["durable"] for queue in replies), replies
        # And they work: a complaint filed over RPC is routed through the event queues.
        complaint_id = file_complaint(platform, "Jalan di Desa Kuripan Lombok Barat rusak parah.")
        wait_for(lambda: routed(platform, complaint_id), 30, message="ComplaintRouted over quorum queues")
    finally:
        platform.stop_all()


def test_classic_queues_only_when_opted_out(amqp_uri, rabbit_vhost, tmp_path):
    platform = Platform(amqp_uri, tmp_path, services=("routing",), with_sandbox=False,
                        extra_env={"NTBCARE_QUEUE_TYPE": "classic"})
    try:
        platform.start_all()
        queues = service_queues(rabbit_vhost)
        assert "rpc-routing" in queues and any(name.startswith("evt-intake-") for name in queues)
        assert {queue["type"] for queue in queues.values()} == {"classic"}
    finally:
        platform.stop_all()


def test_a_service_starts_and_works_while_the_first_broker_address_is_down(amqp_uri, rabbit_vhost, tmp_path):
    closed = free_port()  # nothing listens there
    vhost_path = amqp_uri.rsplit("/", 1)[1]
    both = f"amqp://guest:guest@127.0.0.1:{closed}/{vhost_path};{amqp_uri}"
    platform = Platform(both, tmp_path, services=("intake", "routing"), with_sandbox=False)
    try:
        platform.start_all()
        # pika takes the list too (`ntbcare events tail`: a list of URLParameters).
        tail = subprocess.Popen([sys.executable, "-m", "shared.cli", "events", "tail", "--count", "1",
                                 "--routing-key", "ComplaintFiled"], cwd=ROOT, env=platform.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in iter(tail.stderr.readline, ""):
            if line.startswith("listening on"):  # bound before the event is published
                break
        complaint_id = file_complaint(platform, "Sampah menumpuk di pasar Cakranegara sudah seminggu.")
        wait_for(lambda: routed(platform, complaint_id), 30, message="ComplaintRouted with the first address down")
        out, _ = tail.communicate(timeout=30)
        assert complaint_id in out and "ComplaintFiled" in out
        assert "quorum" == service_queues(rabbit_vhost)["rpc-routing"]["type"]
        log = platform.log("intake") + platform.log("routing")
        assert "guest:guest@" not in log  # the failover warnings redact every address's password
    finally:
        platform.stop_all()


def test_migrate_turns_classic_queues_into_quorum_queues_and_loses_nothing(amqp_uri, rabbit_vhost, tmp_path):
    classic = Platform(amqp_uri, tmp_path / "classic", services=("intake", "routing"), with_sandbox=False,
                       extra_env={"NTBCARE_QUEUE_TYPE": "classic", "NTBCARE_CATCHUP_SECONDS": "3600"})
    classic.start_all()
    try:
        def filed_queue():
            return next((name for name in service_queues(rabbit_vhost)
                         if name.startswith("evt-intake-ComplaintFiled--routing.")), None)
        queue = wait_for(filed_queue, 30, message="routing's queue of ComplaintFiled declared")
        classic.kill("routing")  # its event queues fill while it is away
        waiting = [file_complaint(classic, f"Lampu jalan di Gomong mati, laporan {n}.") for n in range(5)]
        wait_for(lambda: service_queues(rabbit_vhost)[queue]["messages"] == 5, 30,
                 message="five ComplaintFiled waiting in routing's classic queue")
    finally:
        classic.stop_all()

    env = {"AMQP_URI": amqp_uri, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "RABBITMQ_MANAGEMENT_URL": infra.RABBIT_MANAGEMENT}
    migrate = subprocess.run([sys.executable, "-m", "shared.cli", "queues", "migrate"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr + migrate.stdout
    assert f"migrated {queue} (classic → quorum, 5 messages kept)" in migrate.stdout
    queues = service_queues(rabbit_vhost)
    assert {q["type"] for q in queues.values()} == {"quorum"}, {n: q["type"] for n, q in queues.items()}
    assert not [name for name in queues if name.endswith(".migrating")]
    wait_for(lambda: service_queues(rabbit_vhost)[queue]["messages"] == 5, 10,
             message="the five messages in the new quorum queue")
    again = subprocess.run([sys.executable, "-m", "shared.cli", "queues", "migrate"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "migrated" not in again.stdout  # nothing left to do

    # The upgraded routing consumes them from the quorum queue (catch-up is an hour away: pushed).
    quorum = Platform(amqp_uri, tmp_path / "classic", services=("intake", "routing"), with_sandbox=False,
                      extra_env={"NTBCARE_CATCHUP_SECONDS": "3600"})
    try:
        quorum.start_all()
        for complaint_id in waiting:
            wait_for(lambda complaint_id=complaint_id: routed(quorum, complaint_id), 30,
                     message="a complaint left in the classic queue routed after the migration")
        wait_for(lambda: service_queues(rabbit_vhost)[queue]["messages"] == 0, 10, message="the queue drained")
    finally:
        quorum.stop_all()


def test_migrate_refuses_queues_with_consumers(amqp_uri, rabbit_vhost, tmp_path):
    platform = Platform(amqp_uri, tmp_path, services=("routing",), with_sandbox=False,
                        extra_env={"NTBCARE_QUEUE_TYPE": "classic"})
    try:
        platform.start_all()
        env = {"AMQP_URI": amqp_uri, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
               "RABBITMQ_MANAGEMENT_URL": infra.RABBIT_MANAGEMENT}
        result = subprocess.run([sys.executable, "-m", "shared.cli", "queues", "migrate"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and "stop the services first" in result.stderr
        assert {q["type"] for q in service_queues(rabbit_vhost).values()} == {"classic"}
    finally:
        platform.stop_all()


def test_migrate_both_ways_keeps_each_message_its_routing_key_and_headers(amqp_uri, rabbit_vhost):
    """What the gateway needs of a moved call: its routing key (the operation) and its properties."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.exchange_declare("ntbcare.gateway", "topic", durable=True)
    channel.queue_declare("gateway-calls", durable=True)  # classic, as before issue 18
    channel.queue_bind("gateway-calls", "ntbcare.gateway", routing_key="#")
    channel.confirm_delivery()
    for n in range(3):
        channel.basic_publish("ntbcare.gateway", f"intake.operation_{n}", f'{{"n": {n}}}'.encode(),
                              pika.BasicProperties(correlation_id=f"c{n}", reply_to="lapor-sp4n.r",
                                                   headers={"h": n}, delivery_mode=2))
    connection.close()
    env = {"AMQP_URI": amqp_uri, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "RABBITMQ_MANAGEMENT_URL": infra.RABBIT_MANAGEMENT}

    def migrate(*args):
        result = subprocess.run([sys.executable, "-m", "shared.cli", "queues", "migrate", *args], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr + result.stdout
        return result.stdout

    assert "would migrate gateway-calls (classic → quorum, " in migrate("--dry-run")
    assert "migrated gateway-calls (classic → quorum, 3 messages kept)" in migrate()
    assert service_queues(rabbit_vhost)["gateway-calls"]["type"] == "quorum"
    assert "migrated gateway-calls (quorum → classic, 3 messages kept)" in migrate("--to", "classic")
    assert service_queues(rabbit_vhost)["gateway-calls"]["type"] == "classic"

    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    got = []
    while True:
        method, properties, body = channel.basic_get("gateway-calls", auto_ack=True)
        if method is None:
            break
        got.append((method.routing_key, properties.correlation_id, properties.reply_to, properties.headers, body))
    # Bound again: a new call reaches the queue.
    channel.basic_publish("ntbcare.gateway", "intake.later", b"{}")
    wait_for(lambda: channel.queue_declare("gateway-calls", passive=True).method.message_count == 1, 10,
             message="the queue bound again after the migration")
    connection.close()
    assert sorted(got) == [(f"intake.operation_{n}", f"c{n}", "lapor-sp4n.r", {"h": n}, f'{{"n": {n}}}'.encode())
                           for n in range(3)]
