"""Work that runs behind an entrypoint's answer: one managed green thread per service process that
runs ``work(store, priority)`` whenever it is woken (and at least every ``interval_seconds()``), one
run at a time. Intake's webhook stores Meta's body, wakes it and answers 200 at once; the thread then
processes the stored inbox. Workers get a ``Waker``.

The answers go first (``ForegroundFirst``): the work and the requests share one eventlet hub, so a
body being processed holds up every 200 behind it. Under a flood of webhooks the work gives way
between its items while requests are being answered — the 200 is what Meta retries and, failing
for long, disables the subscription over; the processing behind it only starts later.

Eventlet rules kept here: the thread yields only while it waits and where ``work`` chooses to
(between webhook items, outside any transaction) — SQLite calls never yield, so no other green
thread runs inside one of its write transactions.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Iterator

from nameko.extensions import DependencyProvider

from shared.core.store import ServiceStore
from shared.glue.providers import Storage, _find

log = logging.getLogger(__name__)


class ForegroundFirst:
    """Whether requests a client is waiting on are being answered, and the background work's
    pause between two of its items: it waits while they are, up to ``longest_wait`` seconds (so
    that the work still moves, slowly, under a flood that never stops). A request answered in
    the last ``recent`` seconds counts too: the next one of a burst is usually on its way."""

    def __init__(self, recent: float = 0.01, longest_wait: float = 0.5, step: float = 0.002, lately: float = 0.5,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.recent, self.longest_wait, self.step, self.lately = recent, longest_wait, step, lately
        self._clock, self._sleep = clock, sleep   # time.sleep is eventlet's under monkey patching
        self.in_flight = 0
        self.last_seen = float("-inf")

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Around the part of a request its client waits on."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last_seen = self._clock()

    def busy(self) -> bool:
        return self._seen_within(self.recent)

    def arriving(self) -> bool:
        """Whether requests came in the last ``lately`` seconds: the work then keeps its items
        small — a gap of a few milliseconds in a flood (the sender stalled) must not let a group
        of eight items hold the hub for a tenth of a second."""
        return self._seen_within(self.lately)

    def _seen_within(self, seconds: float) -> bool:
        """A request is being answered, or one was in the last ``seconds``."""
        return self.in_flight > 0 or self._clock() - self.last_seen < seconds

    def give_way(self) -> None:
        """Between two background items (never inside a transaction): let every other green
        thread run once, then wait while requests are being answered."""
        self._sleep(0)
        deadline = self._clock() + self.longest_wait
        while self.busy() and self._clock() < deadline:
            self._sleep(self.step)


class Waker:
    """What a worker gets: ``wake()`` asks the background thread for a run soon (it never blocks);
    ``foreground()`` wraps what a waiting client's answer needs, so that the work gives way to it."""

    def __init__(self, provider: "BackgroundWork"):
        self._provider = provider

    def wake(self) -> None:
        self._provider.wake()

    def foreground(self) -> contextlib.AbstractContextManager:
        return self._provider.priority.request()

    @property
    def runs(self) -> int:
        return self._provider.runs


class BackgroundWork(DependencyProvider):
    def __init__(self, work: Callable[[ServiceStore, ForegroundFirst], object],
                 interval_seconds: Callable[[], float], name: str = "background work"):
        self.work = work
        self.interval_seconds = interval_seconds
        self.name = name

    def setup(self):
        self.store: ServiceStore = _find(self.container, Storage).ensure()
        self._wake = threading.Event()  # green under eventlet's monkey patching
        self._running = False
        self.runs = 0
        self.priority = ForegroundFirst()

    def start(self):
        self._running = True
        self._wake.set()                 # a first run at start: bodies left pending by a crash
        self._thread = self.container.spawn_managed_thread(self._run)

    def stop(self):
        self._running = False
        self._wake.set()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return Waker(self)

    def wake(self) -> None:
        self._wake.set()

    def _run(self):
        while self._running:
            self._wake.wait(self.interval_seconds())
            self._wake.clear()
            if not self._running:
                break
            try:
                self.work(self.store, self.priority)
            except Exception:  # the database is unwell: what is left stays stored for the next run
                log.exception("%s failed; retried on the next wake-up", self.name)
            self.runs += 1
