"""Runs a service's retention rules (``shared.core.retention``) in the background: at start, then
every ``NTBCARE_RETENTION_CHECK_SECONDS``.

A sub-extension of the ``Storage`` provider, so every service that has a store prunes without
an entrypoint or a worker dependency of its own. Failures are logged and retried on the next
tick: pruning late is harmless, stopping the service for it would not be.
"""
from __future__ import annotations

import logging
import threading

import eventlet
from nameko.extensions import Extension

from shared.core.retention import check_interval_seconds, run_rules

log = logging.getLogger(__name__)


class RetentionTimer(Extension):
    def setup(self):
        self._stop = threading.Event()  # green under eventlet's monkey patching
        self.runs = 0

    def start(self):
        self._stop.clear()
        self.container.spawn_managed_thread(self._run)

    def stop(self):
        self._stop.set()

    def kill(self):
        self._stop.set()

    def _storage(self):
        # The Storage provider this timer is declared on (nameko binds sub-extensions without a
        # reference to their parent, and importing it here would be circular).
        for dependency in self.container.dependencies:
            if getattr(dependency, "retention", None) is self:
                return dependency
        raise RuntimeError("RetentionTimer is declared on the Storage provider")

    def _run(self):
        while not self._stop.is_set():
            try:
                store = self._storage().ensure()
                run_rules(store.database, store.retention_rules, pause=lambda: eventlet.sleep(0))
            except Exception:
                log.exception("retention: pruning failed; tried again on the next tick")
            self.runs += 1
            self._stop.wait(check_interval_seconds())
