"""The batching entrypoint (``shared.glue.batching``, issue 17) without a broker: deliveries that
arrive while a batch is handled wait for the next one; a batch is at most NTBCARE_CONSUMER_BATCH
deliveries; nothing is acknowledged before the batch's worker returned (after its commit), and
everything is when it did — also when it raised, as nameko's ``EventHandler`` does; deliveries a
dying container cannot take are requeued; the worker's payload reaches the consumer as one batch."""
from __future__ import annotations

import pytest
from nameko.events import EventHandler
from nameko.exceptions import ContainerBeingKilled

from shared.core import config
from shared.glue import batching
from shared.glue.batching import BatchedEventHandler, BatchingQueueConsumer, DeliveryBatch, batch_size
from shared.glue.providers import ConsumerApi


class Channel:
    """A channel's acknowledgments as the broker applies them: ``multiple`` covers every earlier
    delivery of the channel."""

    def __init__(self):
        self.connection = object()
        self.messages = []
        self.ack_frames = 0

    def ack(self, tag, multiple):
        self.ack_frames += 1
        for message in self.messages:
            if message.tag == tag or (multiple and message.tag < tag):
                message.acked = True


CHANNEL = Channel()


class Message:
    def __init__(self, tag, channel=None):
        self.tag = self.delivery_tag = tag
        self.headers = {}
        self.channel = channel or CHANNEL
        self.channel.messages.append(self)
        self.acked = self.requeued = False

    def ack(self, multiple=False):
        self.channel.ack(self.tag, multiple)

    def requeue(self):
        self.requeued = True


class Provider:
    """What the queue consumer needs of a ``BatchedEventHandler``."""

    requeue_on_error = False

    def __init__(self, queue_consumer, source):
        self.queue_consumer = queue_consumer
        self.source_service = source

    handle_message_processed = EventHandler.handle_message_processed
    unpack_message_headers = EventHandler.unpack_message_headers


class Container:
    max_workers = 10
    service_name = "probe"
    service_cls = object   # no linger of its own (PROBE_CONSUMER_LINGER_MS unset)

    def __init__(self):
        self.threads = []
        self.workers = []
        self.killed = False

    def spawn_managed_thread(self, fn, identifier=None):
        self.threads.append(fn)   # runs when the test says: the consumer thread has yielded

    def spawn_worker(self, entrypoint, args, kwargs, context_data=None, handle_result=None):
        if self.killed:
            raise ContainerBeingKilled()
        self.workers.append((entrypoint, args, handle_result))

    def run_threads(self):
        threads, self.threads = self.threads, []
        for fn in threads:
            fn()


@pytest.fixture(autouse=True)
def fresh_channel():
    global CHANNEL
    CHANNEL = Channel()


@pytest.fixture
def consumer(monkeypatch):
    monkeypatch.setenv("NTBCARE_CONSUMER_BATCH", "3")
    queue_consumer = BatchingQueueConsumer()
    queue_consumer.container = Container()
    queue_consumer.setup()
    return queue_consumer


def deliver(consumer, provider, tag):
    message = Message(tag)
    consumer.handle_message(provider, {"position": tag}, message)
    return message


def test_deliveries_while_a_batch_runs_wait_for_the_next_batch_and_acks_follow_the_worker(consumer):
    routing, intake = Provider(consumer, "routing"), Provider(consumer, "intake")
    container = consumer.container
    first = [deliver(consumer, routing, 1), deliver(consumer, intake, 2)]   # read before the hub switched
    container.run_threads()
    [(entrypoint, (batch,), handle_result)] = container.workers
    assert entrypoint is routing and isinstance(batch, DeliveryBatch)
    assert batch.items == [({"position": 1}, "routing"), ({"position": 2}, "intake")]
    later = [deliver(consumer, routing, tag) for tag in (3, 4, 5, 6)]
    container.run_threads()
    assert len(container.workers) == 1           # one batch at a time
    assert not any(m.acked for m in first + later)  # nothing acked before the worker returned
    handle_result(None, ["handled", "handled"], None)
    assert all(m.acked for m in first) and not any(m.acked for m in later)
    container.run_threads()
    [_, (_, (second, ), second_result)] = container.workers
    assert [body["position"] for body, _ in second.items] == [3, 4, 5]   # at most NTBCARE_CONSUMER_BATCH
    second_result(None, None, (RuntimeError, RuntimeError("boom"), None))  # a failed worker: acked too
    assert all(m.acked for m in later[:3]) and not later[3].acked
    container.run_threads()
    container.workers[-1][2](None, None, None)
    assert later[3].acked and not any(m.requeued for m in first + later)


def test_a_dying_container_gets_its_batch_requeued(consumer):
    provider = Provider(consumer, "routing")
    consumer.container.killed = True
    messages = [deliver(consumer, provider, tag) for tag in (1, 2)]
    consumer.container.run_threads()
    assert all(m.requeued for m in messages) and not any(m.acked for m in messages)


def test_the_batch_reaches_the_consumer_as_one(monkeypatch):
    calls = []

    class Core:
        def handle_batch(self, items):
            calls.append(("batch", items))
            return ["handled"] * len(items)

        def handle(self, payload, source):
            calls.append(("one", payload, source))
            return "handled"

    api = ConsumerApi(type("Provider", (), {"consumer": Core()})())
    assert api.handle(DeliveryBatch([({"a": 1}, "routing"), ({"b": 2}, "intake")]), "routing") == ["handled"] * 2
    assert api.handle({"c": 3}, "routing") == "handled"
    assert calls == [("batch", [({"a": 1}, "routing"), ({"b": 2}, "intake")]), ("one", {"c": 3}, "routing")]


def test_batch_size_from_the_environment(monkeypatch):
    monkeypatch.delenv("NTBCARE_CONSUMER_BATCH", raising=False)
    assert batch_size() == batching.DEFAULT_BATCH
    monkeypatch.setenv("NTBCARE_CONSUMER_BATCH", "0")
    assert batch_size() == 0
    for wrong in ("-1", "many"):
        monkeypatch.setenv("NTBCARE_CONSUMER_BATCH", wrong)
        with pytest.raises(config.ConfigError):
            batch_size()


def test_the_batched_handler_is_nameko_s_event_handler_on_its_own_queue_consumer():
    assert issubclass(BatchedEventHandler, EventHandler)
    assert isinstance(BatchedEventHandler.queue_consumer, BatchingQueueConsumer)


@pytest.mark.parametrize("gone", ["connection reset", "connection closed", "forced closed", "channel closed"])
def test_an_ack_or_requeue_on_a_gone_connection_or_channel_is_left_to_redelivery(gone):
    # nameko kills the service container when an ack raises; the broker delivers an unacked
    # message again after the reconnect, so these must pass quietly (shared/glue/compat.py).
    import amqp.exceptions

    from shared.glue import compat
    compat.install()
    error = {"connection reset": ConnectionResetError(), "connection closed":
             amqp.exceptions.RecoverableConnectionError("connection already closed"),
             "forced closed": amqp.exceptions.ConnectionForced("node going down"),
             "channel closed": amqp.exceptions.PreconditionFailed("unknown delivery tag 5")}[gone]

    class Gone(Message):
        def ack(self):
            raise error

        def requeue(self):
            raise error

    consumer = BatchingQueueConsumer()
    consumer.ack_message(Gone(1))
    consumer.requeue_message(Gone(2))


def test_a_batch_is_acknowledged_with_one_frame_per_channel(consumer):
    # One basic.ack (multiple) up to the batch's last delivery, not one per message: on a quorum
    # queue each is an entry in the queue's log. A reconnect mid-batch leaves two channels.
    provider = Provider(consumer, "routing")
    old_channel = CHANNEL
    first = [deliver(consumer, provider, tag) for tag in (1, 2)]
    reopened = Channel()
    after = Message(1, reopened)
    consumer.handle_message(provider, {"position": 3}, after)
    consumer.container.run_threads()
    [(_, (batch,), handle_result)] = consumer.container.workers
    assert len(batch) == 3
    handle_result(None, ["handled"] * 3, None)
    assert all(m.acked for m in first) and after.acked
    assert (old_channel.ack_frames, reopened.ack_frames) == (1, 1)


def test_the_linger_comes_from_the_environment_or_the_service(monkeypatch):
    monkeypatch.delenv("ROUTING_CONSUMER_LINGER_MS", raising=False)
    assert batching.linger_seconds("routing", 100) == 0.1
    monkeypatch.setenv("ROUTING_CONSUMER_LINGER_MS", "0")
    assert batching.linger_seconds("routing", 100) == 0
    for wrong in ("-5", "soon", "60000"):
        monkeypatch.setenv("ROUTING_CONSUMER_LINGER_MS", wrong)
        with pytest.raises(config.ConfigError, match="ROUTING_CONSUMER_LINGER_MS"):
            batching.linger_seconds("routing", 100)


def test_the_services_that_nobody_waits_for_linger_and_the_acknowledgment_s_path_does_not():
    from shared.core.events import types as ev
    from services.gateway.service import GatewayService
    from services.intake.service import IntakeService
    from services.notification.service import NotificationService
    from services.reporting.service import ReportingService
    from services.routing.service import RoutingService
    assert GatewayService.consumer_linger_ms == 0
    assert min(IntakeService.consumer_linger_ms, RoutingService.consumer_linger_ms,
               ReportingService.consumer_linger_ms, NotificationService.consumer_linger_ms) > 0
    # the acknowledgment's event, and every citizen's message, never waits in notification
    assert {ev.COMPLAINT_FILED, ev.CITIZEN_MESSAGE_RECEIVED, ev.STATUS_REQUESTED} <= NotificationService.consumer_urgent
    assert not NotificationService.consumer_urgent & set(NotificationService.subscriptions["routing"])
    # intake closes (or makes confidential) a complaint at once; only CitizenNotified lingers there
    assert set(IntakeService.subscriptions["routing"]) <= IntakeService.consumer_urgent
    assert ev.CITIZEN_NOTIFIED not in IntakeService.consumer_urgent
