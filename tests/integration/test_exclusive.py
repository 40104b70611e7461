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
