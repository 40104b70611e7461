"""Fault 8: PostgreSQL restarted mid-stream, with every service's database on it — first stopped
the hard way (``pg_ctl stop -m immediate``: no shutdown checkpoint, crash recovery on start,
what a killed server or a machine failure looks like), then, once it is back, the polite way
(``-m fast``: sessions ended, a clean shutdown), each time down for a few seconds.

The server is the test's own (``tests.support.postgres_server``: ``initdb`` + ``pg_ctl`` on a
free port, ``fsync`` on), so stopping it disturbs nobody. While it is down, webhooks get 503 (the
body cannot be stored; Meta sends it again) and RPC callers an error; a webhook answered 200 was
committed before the answer, and a committed transaction survives either kind of stop. Every
service keeps running: a pooled connection that died with the server fails its statement once,
SQLAlchemy invalidates the pool, and the caller tries again — a consumer's message is redelivered
or pulled by catch-up, the outbox relay and the sender retry on their next round.

Duplicates: a message Meta accepted while the commit recording it could not reach the database
stays pending and is sent again — the documented duplicate window, here opened by the database
instead of a crash: at most one message per sender thread per restart."""
from __future__ import annotations

import time

import pytest

from services.notification.adapters.sender import DEFAULT_SENDER_CONCURRENCY
from tests.faults.scenario import run_scenario
from tests.support.platform import SERVICES
from tests.support.postgres_server import PostgresServer, available

pytestmark = pytest.mark.skipif(not available(), reason="needs PostgreSQL's initdb and pg_ctl to run a server")

DOWN_SECONDS = 2
RESTARTS = ("immediate", "fast")


@pytest.fixture(scope="module")
def store():
    return "postgresql"


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def service_databases(postgres):
    return {service: postgres.create_database() for service in SERVICES}


def test_postgres_restarted_mid_stream(platform, rabbit_vhost, postgres):
    downtime: dict[str, float] = {}

    def inject():
        for mode in RESTARTS:
            downtime[mode] = round(postgres.restart(mode, down_seconds=DOWN_SECONDS), 1)
            if mode != RESTARTS[-1]:
                time.sleep(2)  # the stream runs against the restarted server before the next stop

    figures = run_scenario("8 PostgreSQL restart", platform, rabbit_vhost, inject, seconds=8, fault_at=2,
                           settle_timeout=120, allowed_duplicates=DEFAULT_SENDER_CONCURRENCY * len(RESTARTS))
    print("PostgreSQL down (s):", downtime)
    figures["postgres_down_seconds"] = downtime
    assert figures["refused_attempts"] > 0  # the restarts really refused deliveries, which were retried
    for service in platform.services:
        assert platform.processes[service].poll() is None, f"{service} died with PostgreSQL"
