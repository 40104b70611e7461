"""``shared.glue.pg_wait`` on a real PostgreSQL under eventlet: a quick answer is waited for in
place (no hub switch a statement, which was most of what a statement cost a service), and a
statement that waits on a lock another green thread of the same process holds still lets that
thread run and release it (no deadlock, as a plain blocking driver would have)."""
from __future__ import annotations

import eventlet
import psycopg2
import pytest
from psycopg2 import extensions

from shared.glue import pg_wait
from tests.support import infra

LOCK_KEY = 7_171_717


@pytest.fixture
def dsn():
    url = infra.create_postgres_database()
    yield url.replace("postgresql+psycopg2://", "postgresql://")
    infra.drop_postgres_database(url)


@pytest.fixture
def installed():
    before = extensions.get_wait_callback()   # the root conftest installs pg_wait already
    assert pg_wait.install()
    yield
    extensions.set_wait_callback(before)


@pytest.fixture
def hub_switches(monkeypatch):
    """How often a statement's wait yielded to the hub."""
    count = {"n": 0}
    real = eventlet.hubs.trampoline

    def counting(*args, **kwargs):
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(eventlet.hubs, "trampoline", counting)
    return count


def test_quick_statements_are_answered_without_a_hub_switch(dsn, installed, hub_switches):
    connection = psycopg2.connect(dsn)
    cursor = connection.cursor()
    hub_switches["n"] = 0   # connecting may have waited
    for number in range(100):
        cursor.execute("SELECT %s", (number,))
        assert cursor.fetchone() == (number,)
    connection.commit()
    connection.close()
    # eventlet's own callback switches once or more for every statement (over 100 here).
    assert hub_switches["n"] < 10


def test_a_lock_held_by_another_green_thread_does_not_deadlock_the_process(dsn, installed, hub_switches):
    holder, waiter = psycopg2.connect(dsn), psycopg2.connect(dsn)
    holder.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))   # held until commit
    order = []

    def release_later():
        eventlet.sleep(0.2)   # runs only if the waiter's statement below yields to the hub
        order.append("released")
        holder.commit()

    eventlet.spawn(release_later)
    with eventlet.Timeout(10):
        waiter.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    order.append("acquired")
    waiter.commit()
    assert order == ["released", "acquired"]
    assert hub_switches["n"] >= 1
    holder.close()
    waiter.close()
