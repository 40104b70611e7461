"""Fault 6: intake's database is locked while webhooks arrive — the test itself holds SQLite's
exclusive write lock on ``intake.db`` (``BEGIN EXCLUSIVE``), first for less than intake's busy
timeout (writers wait: webhooks are answered late but answered), then for longer (writers give
up: webhooks get 503 and RPC calls an error, so Meta and the callers retry). Never 200 and then
lost: every retried delivery is filed exactly once.

SQLite only: the fault is SQLite's one database-wide write lock, held from outside the service.
PostgreSQL has no such lock a client can take on the whole database (its locks are per row or
table, and writers do not wait on one file); its failure — the server gone — is the PostgreSQL
restart scenario (``test_postgres_restart.py``)."""
from __future__ import annotations

import sqlite3
import time

from tests.faults.scenario import run_scenario

BUSY_SECONDS = 2
LONG_LOCK_SECONDS = 8
META_TIMEOUT_SECONDS = 4  # Meta wants an answer within a few seconds, then retries
PLATFORM_ENV = {"NTBCARE_SQLITE_BUSY_SECONDS": str(BUSY_SECONDS)}


def hold_exclusive_lock(path, seconds: float) -> None:
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def test_intake_database_locked_while_webhooks_arrive(platform, rabbit_vhost):
    database = platform.data_dir / "intake.db"

    def inject():
        hold_exclusive_lock(database, BUSY_SECONDS * 0.6)   # shorter than the busy timeout: they wait
        time.sleep(2)
        hold_exclusive_lock(database, LONG_LOCK_SECONDS)     # longer: 503 or no answer in time

    figures = run_scenario("6 intake database locked", platform, rabbit_vhost, inject, seconds=16, fault_at=3,
                           stream_options={"http_timeout": META_TIMEOUT_SECONDS})
    assert figures["refused_attempts"] > 0  # the lock really refused deliveries, which were retried
    assert platform.processes["intake"].poll() is None
