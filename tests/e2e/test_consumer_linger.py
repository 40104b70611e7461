"""Lingering consumers on the real broker (``shared.glue.batching``, issue 17): a service that
lingers hands the events published within its linger to ONE batch (one transaction), and no sooner
than the oldest of them is that old; a full batch does not wait; a service that does not linger
hands the first event over at once, as before."""
from __future__ import annotations

import time
import uuid

import pytest
from nameko.containers import ServiceContainer
from nameko.standalone.events import event_dispatcher

from shared.core.events import types as ev
from shared.core.handlers import EventHandlers, handles
from shared.glue.subscriptions import listens_to


class Filed(EventHandlers):
    @handles(ev.COMPLAINT_FILED)
    def on_filed(self, tx, envelope):   # never called: the probe below only records its batches
        raise AssertionError


def probe(linger_ms: float):
    """A nameko service that records each batch it is handed: (when, the events' numbers)."""
    batches: list[tuple[float, list[int]]] = []

    @listens_to(Filed, linger_ms=linger_ms)
    class Probe:
        name = f"linger_probe_{uuid.uuid4().hex[:8]}"   # queues of its own in the module's vhost

        def receive(self, batch, source):
            batches.append((time.monotonic(), [payload["n"] for payload, _ in batch.items]))

    return Probe, batches


@pytest.fixture
def running(amqp_uri):
    containers = []

    def start(service):
        container = ServiceContainer(service, {"AMQP_URI": amqp_uri})
        container.start()
        containers.append(container)
        return container
    yield start
    for container in containers:
        container.stop()


def publish(amqp_uri, numbers, gap=0.0) -> float:
    """Publishes ComplaintFiled-typed events from intake's exchange; returns when the first went."""
    dispatch = event_dispatcher({"AMQP_URI": amqp_uri})
    first = time.monotonic()
    for index, number in enumerate(numbers):
        if index and gap:
            time.sleep(gap)
        dispatch("intake", ev.COMPLAINT_FILED, {"n": number})
    return first


def wait_for_events(batches, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while sum(len(numbers) for _, numbers in batches) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(len(numbers) for _, numbers in batches) == count, batches


def test_events_within_the_linger_share_one_batch_handed_over_when_the_oldest_is_that_old(
        running, amqp_uri, monkeypatch):
    monkeypatch.setenv("NTBCARE_CONSUMER_BATCH", "50")
    service, batches = probe(linger_ms=600)
    running(service)
    first = publish(amqp_uri, [1, 2, 3], gap=0.1)
    wait_for_events(batches, 3)
    [(handed_at, numbers)] = batches
    assert numbers == [1, 2, 3]
    assert handed_at - first >= 0.55   # the oldest waited its linger (less the broker's hop)


def test_a_full_batch_does_not_wait_for_the_linger(running, amqp_uri, monkeypatch):
    monkeypatch.setenv("NTBCARE_CONSUMER_BATCH", "3")
    service, batches = probe(linger_ms=8000)
    running(service)
    first = publish(amqp_uri, [1, 2, 3])
    wait_for_events(batches, 3, timeout=6)
    assert [numbers for _, numbers in batches] == [[1, 2, 3]]
    assert batches[0][0] - first < 4


def test_the_environment_overrides_the_service_s_linger(running, amqp_uri, monkeypatch):
    monkeypatch.setenv("NTBCARE_CONSUMER_BATCH", "50")
    service, batches = probe(linger_ms=8000)
    monkeypatch.setenv(f"{service.name.upper()}_CONSUMER_LINGER_MS", "0")
    running(service)
    first = publish(amqp_uri, [1])
    wait_for_events(batches, 1, timeout=6)
    assert batches[0][0] - first < 2


def test_a_service_that_does_not_linger_hands_the_first_event_over_at_once(running, amqp_uri, monkeypatch):
    monkeypatch.setenv("NTBCARE_CONSUMER_BATCH", "50")
    service, batches = probe(linger_ms=0)
    running(service)
    first = publish(amqp_uri, [1, 2], gap=0.5)
    wait_for_events(batches, 2)
    assert [numbers for _, numbers in batches] == [[1], [2]]
    assert batches[0][0] - first < 0.4


def test_an_urgent_event_ends_the_wait_and_takes_the_lingering_ones_with_it(running, amqp_uri, monkeypatch):
    monkeypatch.setenv("NTBCARE_CONSUMER_BATCH", "50")

    class Both(Filed):
        @handles(ev.COMPLAINT_ROUTED)
        def on_routed(self, tx, envelope):
            raise AssertionError

    batches: list[tuple[float, list[int]]] = []

    @listens_to(Both, linger_ms=8000, urgent=[ev.COMPLAINT_FILED])
    class Probe:
        name = f"linger_probe_{uuid.uuid4().hex[:8]}"

        def receive(self, batch, source):
            batches.append((time.monotonic(), [payload["n"] for payload, _ in batch.items]))

    running(Probe)
    dispatch = event_dispatcher({"AMQP_URI": amqp_uri})
    dispatch("routing", ev.COMPLAINT_ROUTED, {"n": 1})   # may wait up to 8 s
    time.sleep(0.3)
    assert batches == []
    urgent_at = time.monotonic()
    dispatch("intake", ev.COMPLAINT_FILED, {"n": 2})     # a citizen waits on this one
    wait_for_events(batches, 2, timeout=4)
    assert [numbers for _, numbers in batches] == [[1, 2]]
    assert batches[0][0] - urgent_at < 2
