"""Work that runs behind an entrypoint's answer: one managed green thread per service process that
runs ``work(store)`` whenever it is woken (and at least every ``interval_seconds()``), one run at
a time. Intake's webhook stores Meta's body, wakes it and answers 200 at once; the thread then
processes the stored inbox. Workers get a ``Waker``.

Eventlet rules kept here: the thread yields only while it waits and where ``work`` chooses to
(between webhook items, outside any transaction) — SQLite calls never yield, so no other green
thread runs inside one of its write transactions.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from nameko.extensions import DependencyProvider

from shared.core.store import ServiceStore
from shared.glue.providers import Storage, _find

log = logging.getLogger(__name__)


class Waker:
    """What a worker gets: ``wake()`` asks the background thread for a run soon (it never blocks)."""

    def __init__(self, provider: "BackgroundWork"):
        self._provider = provider

    def wake(self) -> None:
        self._provider.wake()

    @property
    def runs(self) -> int:
        return self._provider.runs


class BackgroundWork(DependencyProvider):
    def __init__(self, work: Callable[[ServiceStore], object], interval_seconds: Callable[[], float],
                 name: str = "background work"):
        self.work = work
        self.interval_seconds = interval_seconds
        self.name = name

    def setup(self):
        self.store: ServiceStore = _find(self.container, Storage).ensure()
        self._wake = threading.Event()  # green under eventlet's monkey patching
        self._running = False
        self.runs = 0

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
                self.work(self.store)
            except Exception:  # the database is unwell: what is left stays stored for the next run
                log.exception("%s failed; retried on the next wake-up", self.name)
            self.runs += 1
