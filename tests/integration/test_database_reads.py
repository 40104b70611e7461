"""Reads and named locks on PostgreSQL hold no transaction open (``Database.read``,
``shared.core.exclusive``): each statement is its own transaction there, so a service's reads cost
no BEGIN and COMMIT round trips, and a lock held for minutes is never "idle in transaction". A
streaming read (a server-side cursor) still gets its transaction; SQLite reads are unchanged."""
from __future__ import annotations

import time

import psycopg2.extensions
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text

from shared.core import db
from shared.core.db import Database
from shared.core.exclusive import exclusive


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'service.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_url")
    metadata = MetaData()
    Table("numbers", metadata, Column("n", Integer, primary_key=True))
    database = Database("test", url, metadata)
    database.create_all()
    with database.transaction() as tx:
        tx.execute(insert(metadata.tables["numbers"]), [{"n": n} for n in range(1, 51)])
    yield database
    database.dispose()


def _in_transaction(connection) -> bool:
    status = connection.connection.dbapi_connection.get_transaction_status()
    return status != psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_a_read_on_postgresql_opens_no_transaction(database):
    with database.read() as connection:
        assert connection.execute(text("SELECT count(*) FROM numbers")).scalar() == 50
        if database.dialect == "postgresql":
            assert not _in_transaction(connection)
    # The connection goes back to the pool as it came: a transaction after it is atomic again.
    with database.transaction() as tx:
        tx.execute(text("DELETE FROM numbers WHERE n = 1"))
        if database.dialect == "postgresql":
            assert _in_transaction(tx.connection)
    with database.read() as connection:
        assert connection.execute(text("SELECT count(*) FROM numbers")).scalar() == 49


def test_a_streaming_read_keeps_its_transaction_and_pages_every_row(database):
    numbers = database.metadata.tables["numbers"]
    with database.read(streaming=True) as connection:
        result = connection.execution_options(stream_results=True, yield_per=7).execute(
            select(numbers.c.n).order_by(numbers.c.n))
        pages = [[row[0] for row in page] for page in result.partitions()]
    assert [n for page in pages for n in page] == list(range(1, 51))
    assert max(len(page) for page in pages) == 7


def test_a_held_lock_is_not_idle_in_a_transaction(postgres_url):
    engine, admin = create_engine(postgres_url), create_engine(postgres_url)
    name = postgres_url.rsplit("/", 1)[1]
    try:
        with exclusive(engine, "relay") as held:
            assert held
            with admin.connect() as connection:
                states = connection.execute(text(
                    "SELECT state FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
                    {"name": name}).scalars().all()
            assert states and "idle in transaction" not in states
    finally:
        engine.dispose()
        admin.dispose()


def test_a_connection_pinged_after_sitting_idle_still_reads_and_locks(database, monkeypatch):
    """The pool pings a connection that sat idle before handing it out; the ping must leave no
    transaction open behind it, or the next read could not run in autocommit."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    database.dispose()
    database.engine = db.make_engine(database.url)
    for _ in range(3):
        with database.read() as connection:
            assert connection.execute(text("SELECT count(*) FROM numbers")).scalar() == 50
        with exclusive(database.engine, "relay") as held:
            assert held
        time.sleep(0.01)
