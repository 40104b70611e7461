"""Everything a service keeps in its own database — its ``Database`` (the unit of work), its event
store, quarantine and consumer bookkeeping — built once per process. Framework-free: the nameko
``Storage`` provider (``shared.glue.providers``) only hands it to workers."""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import MetaData

from shared.core import config, metrics, migrations
from shared.core.consumer import consumer_tables
from shared.core.db import Database
from shared.core.eventstore import MAX_ID_PAGE, EventStore
from shared.core.exclusive import exclusive
from shared.core.quarantine import Quarantine, quarantine_table
from shared.core.retention import RetentionRule, quarantine_rule
from shared.core.shared_budget import budget_table


class ServiceStore:
    """Everything a service keeps in its own database, built once per process."""

    def __init__(self, name: str, metadata: MetaData, emits_events: bool, url: str | None = None):
        self.name = name
        self.metadata = metadata
        self.event_store = EventStore(name, metadata) if emits_events else None
        self.quarantine = Quarantine(quarantine_table(metadata))
        self.checkpoints, self.processed, self.failures = consumer_tables(metadata)
        budget_table(metadata)  # rate budgets shared by the service's replicas (shared_budget)
        self.database = Database(name, url or config.database_url(name), metadata, self.event_store)
        self.database.after_commit_hooks.append(lambda envelopes: metrics.record_appended(name, envelopes))
        self.on_ready: list[Callable[[], None]] = []
        # What is pruned after its *_RETENTION_DAYS (shared.core.retention); services add theirs.
        self.retention_rules: list[RetentionRule] = [quarantine_rule(self.quarantine)]

    def prepare(self) -> None:
        """Migrate (or check) the database, then let the service set up run-time tables."""
        migrations.prepare(self.name, self.database)
        # Run-time tables (reporting's projection generation) are made by the first replica to
        # start; one that starts with it waits, then finds them made.
        with exclusive(self.database.engine, "migrations", wait=True):
            for step in self.on_ready:
                step()

    def events_since(self, position: int, limit: int = 1000) -> list[dict[str, Any]]:
        if self.event_store is None:  # callers ask only a service that emits events
            raise RuntimeError(f"{self.name} has no event store")
        with self.database.read() as connection:
            return self.event_store.events_since(connection, position, limit)

    def event_ids_since(self, position: int, limit: int = MAX_ID_PAGE) -> list[list[Any]]:
        if self.event_store is None:
            raise RuntimeError(f"{self.name} has no event store")
        with self.database.read() as connection:
            return self.event_store.event_ids_since(connection, position, limit)
