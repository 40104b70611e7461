"""A PostgreSQL connection the server dropped (a restart, a failover, an idle timeout) is never
handed out twice: an idle one is pinged and replaced on checkout; a busy one fails its statement
once as a disconnect, the pool is invalidated, and the next transaction works. (Pinging only
idle connections keeps a round trip off every append; see ``shared.core.db._ping_after_idle``.)"""
from __future__ import annotations

import time

import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.exc import DBAPIError

from shared.core import db as core_db
from shared.core.db import Database
from shared.core.eventstore import EventStore
from tests.support import infra


@pytest.fixture
def database():
    url = infra.create_postgres_database()
    metadata = MetaData()
    database = Database("routing", url, metadata, EventStore("routing", metadata))
    database.create_all()
    yield database
    database.dispose()
    infra.drop_postgres_database(url)


def _backend_pid(database) -> int:
    with database.read() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar()


def _kill(pid: int) -> None:
    admin = create_engine(infra.POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    time.sleep(0.2)


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(database):
    pid = _backend_pid(database)
    _kill(pid)
    time.sleep(core_db.PING_AFTER_IDLE_SECONDS + 0.2)
    assert _backend_pid(database) != pid  # no error: the ping found it dead and the pool replaced it


def test_a_busy_connection_the_server_dropped_fails_once_and_the_next_transaction_works(database, monkeypatch):
    monkeypatch.setattr(core_db, "PING_AFTER_IDLE_SECONDS", 3600.0)  # as if it had just been used
    database.dispose()
    database.engine = core_db.make_engine(database.engine.url.render_as_string(hide_password=False))
    pid = _backend_pid(database)
    _kill(pid)
    with pytest.raises(DBAPIError) as failure:
        _backend_pid(database)
    assert failure.value.connection_invalidated
    assert _backend_pid(database) != pid
