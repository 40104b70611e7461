"""A service store with one ``effects`` table (id, position, actor), on SQLite or a fresh
PostgreSQL database: what the consumer contract tests (push, catch-up, batches, forged positions)
record their handlers' effects in."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Column, Integer, MetaData, String, Table

from shared.core.store import ServiceStore
from tests.support import infra


@contextmanager
def effects_store(backend: str, tmp_path) -> Iterator[ServiceStore]:
    metadata = MetaData()
    Table("effects", metadata, Column("id", Integer, primary_key=True, autoincrement=True),
          Column("position", Integer, nullable=False), Column("actor", String(50)))
    url = f"sqlite:///{tmp_path / 'consumer.db'}" if backend == "sqlite" else infra.create_postgres_database()
    service_store = ServiceStore("reporting", metadata, emits_events=False, url=url)
    try:
        service_store.database.create_all()
        yield service_store
    finally:
        service_store.database.dispose()
        if backend != "sqlite":
            infra.drop_postgres_database(url)
