"""The named locks replicas take on their shared database (``shared.core.exclusive``), on a SQLite
file and on PostgreSQL: one holder at a time across engines (processes), a waiter gets the lock
once it is let go, and a process that dies holding it lets go at once."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import create_engine

from shared.core.exclusive import exclusive
from tests.support.platform import ROOT

HOLD = """
import sys, time
from sqlalchemy import create_engine
from shared.core.exclusive import exclusive
with exclusive(create_engine(sys.argv[1]), "held") as mine:
    print("held" if mine else "refused", flush=True)
    time.sleep(60)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    return request.getfixturevalue("postgres_url")


def test_one_holder_at_a_time_and_a_waiter_gets_it_after(url):
    first, second = create_engine(url), create_engine(url)
    try:
        with exclusive(first, "relay") as held:
            with exclusive(second, "relay") as also, exclusive(second, "another") as other:
                assert held and not also and other
            got = []
            waiter = threading.Thread(target=lambda: got.append(_wait(second)))
            waiter.start()
            time.sleep(0.5)
            assert not got  # still waiting while the first holds it
        waiter.join(10)
        assert got == [True]
        with exclusive(second, "relay") as again:
            assert again
    finally:
        first.dispose()
        second.dispose()


def _wait(engine) -> bool:
    with exclusive(engine, "relay", wait=True) as held:
        return held


def test_a_holder_that_dies_lets_go(url):
    engine = create_engine(url)
    process = subprocess.Popen([sys.executable, "-c", HOLD, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        with exclusive(engine, "held") as mine:
            assert not mine
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        deadline = time.monotonic() + 10
        while True:
            with exclusive(engine, "held") as mine:
                if mine:
                    break
            assert time.monotonic() < deadline, "the lock outlived its process"
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
        engine.dispose()


def test_a_kept_lock_stays_held_across_rounds_until_let_go(url):
    from shared.core.exclusive import KeptLock
    first, second = create_engine(url), create_engine(url)
    try:
        kept, other = KeptLock(first, "relay"), KeptLock(second, "relay")
        assert kept.take() and kept.take()       # the second round finds it still held
        assert not other.take()
        with exclusive(second, "relay") as held:
            assert not held
        kept.let_go()
        assert other.take() and not kept.take()
        other.let_go()
        with exclusive(first, "relay") as held:
            assert held
    finally:
        first.dispose()
        second.dispose()


def test_work_on_a_kept_lock_session_fails_once_the_session_is_lost(postgres_url):
    # The relay reads and marks on the session holding its lock: if the server dropped that
    # session, the lock went with it, and the work fails instead of running unlocked.
    from sqlalchemy import text

    from shared.core.exclusive import KeptLock
    engine, admin = create_engine(postgres_url), create_engine(postgres_url)
    try:
        kept = KeptLock(engine, "relay")
        assert kept.take()
        pid = kept.session.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        time.sleep(0.2)
        with pytest.raises(Exception):
            kept.session.execute(text("SELECT 1"))
        kept.let_go()
        assert kept.take()   # a fresh session takes it again
        kept.let_go()
    finally:
        engine.dispose()
        admin.dispose()
