"""The rate budgets every replica of a service shares (``shared.core.shared_budget``), on SQLite
and PostgreSQL: two processes spending one key's budget together never get more than the one
budget (and get it: the refill is right), the sender's reservations from two processes are spaced
as one budget's, a pause set by one holds the other, a shared bucket answers exactly as the
in-process ``TokenBucketLimiter`` it replaces, and the table keeps only the keys that hold
information."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest

from shared.core import migrations
from shared.core.db import Database
from shared.core.ratelimit import TokenBucketLimiter
from shared.core.shared_budget import PRUNE_MARGIN_SECONDS, Budgets, SharedPacer, SharedTokenBucket, budget_key
from tests.support import infra
from tests.support.platform import ROOT

SERVICE = "notification"   # any service: the table is in the core consumer branch every one has


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'budgets.db'}"
        migrations.upgrade(SERVICE, url)
        yield url
    else:
        url = infra.create_postgres_database()
        try:
            migrations.upgrade(SERVICE, url)
            yield url
        finally:
            infra.drop_postgres_database(url)


@pytest.fixture
def database(database_url):
    db = Database(SERVICE, database_url, migrations.metadata_for(SERVICE))
    yield db
    db.dispose()


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- two processes, one budget ------------------------------------------------------------------

REPLICA = r"""
import json, sys, time
from sqlalchemy import MetaData
from shared.core.db import Database
from shared.core.shared_budget import Budgets, SharedPacer, SharedTokenBucket
url, mode, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
db = Database("notification", url, MetaData())   # the migrated database; the budgets need no models
budgets = Budgets(db)
budgets.count()                       # connected
out = []
print("ready", flush=True)
start = float(sys.stdin.readline())
while time.time() < start:
    time.sleep(0.001)
if mode == "take":
    limiter = SharedTokenBucket(budgets, "TEST_RATE_PER_MINUTE", per_minute=600, burst=5)
    while time.time() < start + seconds:
        before = time.time()
        if limiter.take("203.0.113.7").allowed:
            out.append([before, time.time()])
else:
    # The slot granted is the clock reading ``reserve`` subtracted last plus the wait it returned:
    # recorded from that reading, not from a later ``time.time()`` (on a loaded machine the process
    # may be descheduled in between, which moved one slot 4 ms in a CI run).
    last = [0.0]
    def clock():
        last[0] = time.time()
        return last[0]
    budgets.clock = clock
    pacer = SharedPacer(budgets, "graph:send:100000000000001", 20, app_key="graph:app")
    for _ in range(15):
        wait = pacer.acquire()
        out.append(last[0] + wait)
print(json.dumps(out))
db.dispose()
"""


def _replicas(url: str, mode: str, seconds: float = 2.0, count: int = 2) -> list:
    """Start ``count`` processes; once each has imported and connected, let them all go at once."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    processes = [subprocess.Popen([sys.executable, "-c", REPLICA, url, mode, str(seconds)], cwd=ROOT, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(count)]
    for process in processes:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()[-3000:]
    start = time.time() + 0.2
    for process in processes:
        process.stdin.write(f"{start}\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return [start] + results


def test_two_processes_spend_one_budget_between_them(database_url):
    """600 a minute (10/s) with a burst of 5, two processes asking as fast as they can for 2 s:
    together at most 5 + 10/s × elapsed — not twice that — and about that many (refill works)."""
    start, *per_process = _replicas(database_url, "take", seconds=2.0)
    granted = sorted(at for calls in per_process for at, _ in calls)
    assert all(per_process), "each replica got some of the budget"
    # Every call granted by the end of the window, however the two interleaved:
    ends = sorted(end for calls in per_process for _, end in calls)
    elapsed = ends[-1] - start
    assert len(granted) <= 5 + 10 * elapsed + 1, (len(granted), elapsed)
    # …and in any stretch of the race, no more than the burst plus the stretch's refill.
    for i, first in enumerate(granted):
        for j in range(i + 1, len(granted)):
            window = granted[j] - first
            assert j - i + 1 <= 5 + 10 * (window + 0.05) + 1, (j - i + 1, window)
    # The refill reached the replicas (loosely: the exact refill is pinned by the next tests, and
    # a loaded machine may not let the two ask all the time).
    assert len(granted) >= 5 + 5, len(granted)


def test_two_senders_reserve_slots_of_one_budget(database_url):
    """The sender's pacing (20/s for one Page) from two processes: 30 reservations, each slot its
    own, spaced one interval (50 ms) apart — the Page sees 20/s, not 40/s."""
    _, *per_process = _replicas(database_url, "pace")
    slots = sorted(at for calls in per_process for at in calls)
    assert len(slots) == 30
    gaps = [b - a for a, b in zip(slots, slots[1:])]
    # The first slot is "now" as the statement was sent, and the call goes once it answered: the
    # next slot follows that "now" by one interval, so the first gap is short by the statement's
    # time. Every later slot is spaced from its predecessor exactly.
    assert gaps[0] > 0 and min(gaps[1:]) >= 0.05 - 1e-3, gaps
    # (the first slots go to whichever process asks first; both get theirs spread over the run)
    assert slots[-1] - slots[1] >= 28 * 0.05 - 1e-3


# --- the same answers as the in-process limiter ---------------------------------------------------

def test_a_shared_bucket_answers_as_the_in_process_one(database):
    """A random walk of takes and peeks on a few keys at random moments: the shared bucket (no
    local filter) and ``TokenBucketLimiter`` give the same decisions and the same Retry-After."""
    rng = random.Random(17)
    clock = Clock()
    shared = SharedTokenBucket(Budgets(database, clock=clock), "TEST", per_minute=12, burst=4, local=False)
    memory = TokenBucketLimiter(12, burst=4, clock=clock)
    answers = []
    for _ in range(300):
        clock.now += rng.choice([0.0, 0.0, rng.uniform(0, 1.5), rng.uniform(0, 8)])
        key = rng.choice(["198.51.100.1", "198.51.100.2", "2001:db8::1"])
        if rng.random() < 0.2:
            pair = (shared.peek(key), memory.peek(key))
        else:
            pair = (shared.take(key), memory.take(key))
        assert pair[0] == pair[1], (len(answers), key, pair)
        answers.append(pair[0].allowed)
    assert 50 < sum(answers) < 250   # the walk saw both answers


def test_the_local_filter_refuses_only_what_the_shared_bucket_refuses(database):
    """Two replicas' limiters (each with its in-process first filter) on one database: what the
    pair grants is exactly what one shared bucket would grant."""
    clock = Clock()
    budgets_a, budgets_b = Budgets(database, clock=clock), Budgets(database, clock=clock)
    a = SharedTokenBucket(budgets_a, "TEST", per_minute=60, burst=3)
    b = SharedTokenBucket(budgets_b, "TEST", per_minute=60, burst=3)
    a.local.clock = b.local.clock = clock
    reference = TokenBucketLimiter(60, burst=3, clock=clock)
    rng = random.Random(5)
    for step in range(200):
        clock.now += rng.choice([0.0, 0.3, 0.7, 1.1])
        replica = a if rng.random() < 0.5 else b
        assert replica.take("k").allowed == reference.take("k").allowed, step


def test_limiters_of_different_names_keep_their_own_buckets(database):
    budgets = Budgets(database, clock=Clock())
    web = SharedTokenBucket(budgets, "INTAKE_WEB_RATE_PER_MINUTE", per_minute=1)
    open311 = SharedTokenBucket(budgets, "OPEN311_RATE_PER_MINUTE", per_minute=1)
    assert web.take("192.0.2.1").allowed and not web.take("192.0.2.1").allowed
    assert open311.take("192.0.2.1").allowed
    refused = web.take("192.0.2.1")
    assert refused.retry_after_seconds == 60


# --- the sender's pacing ---------------------------------------------------------------------------

def test_reservations_and_pauses_are_shared(database):
    clock = Clock()
    one = SharedPacer(Budgets(database, clock=clock), "graph:send:1", 4, app_key="graph:app")
    two = SharedPacer(Budgets(database, clock=clock), "graph:send:1", 4, app_key="graph:app")
    assert [one.acquire(), two.acquire(), one.acquire(), two.acquire()] == [0.0, 0.25, 0.5, 0.75]
    clock.now += 10
    assert two.acquire() == 0.0
    one.penalise(3)                       # Meta said "slow down" to one replica: both wait
    assert two.acquire() == pytest.approx(3.0)
    # An app-level pause holds every Page's budget, including one no replica has used yet.
    budgets = Budgets(database, clock=clock)
    budgets.penalise("graph:app", 7)
    other_page = SharedPacer(Budgets(database, clock=clock), "graph:send:2", 4, app_key="graph:app")
    assert other_page.acquire() == pytest.approx(7.0)
    assert one.acquire() == pytest.approx(7.0)
    # No cap (rate 0): only the pauses hold.
    unlimited = SharedPacer(budgets, "graph:pages:2", 0, app_key="graph:app")
    clock.now += 8
    assert [unlimited.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_an_uncapped_pacer_sees_a_pause_recorded_elsewhere_within_the_recheck(database):
    """Without a cap the pacer reads the pauses again only every PAUSE_RECHECK_SECONDS while there
    is none (not before every send); its own penalty holds at once."""
    from shared.core.shared_budget import PAUSE_RECHECK_SECONDS
    clock = Clock()
    pacer = SharedPacer(Budgets(database, clock=clock), "graph:send:1", 0, app_key="graph:app")
    elsewhere = Budgets(database, clock=clock)
    reads = []
    original = pacer.budgets.pause_left
    pacer.budgets.pause_left = lambda *args: reads.append(args) or original(*args)   # type: ignore[method-assign]
    assert [pacer.acquire() for _ in range(5)] == [0.0] * 5 and len(reads) == 1
    elsewhere.penalise("graph:app", 5)            # another replica met an app-wide limit
    clock.now += PAUSE_RECHECK_SECONDS / 2
    assert pacer.acquire() == 0.0                  # not seen yet: at most the recheck later
    clock.now += PAUSE_RECHECK_SECONDS / 2 + 0.01
    assert pacer.acquire() == pytest.approx(5 - PAUSE_RECHECK_SECONDS - 0.01)
    assert pacer.acquire() == pytest.approx(5 - PAUSE_RECHECK_SECONDS - 0.01)   # a pause is read every time
    clock.now += 5
    assert pacer.acquire() == 0.0
    pacer.penalise(2)                              # its own: at once
    assert pacer.acquire() == pytest.approx(2)


# --- bounded rows -----------------------------------------------------------------------------------

def test_rows_are_only_kept_for_buckets_that_are_not_full(database):
    """Three hundred clients once each leave three hundred rows; once their buckets have refilled the
    prune (run by the limiter itself every few seconds) deletes them — and a client still
    limited, or a pause still running, is kept."""
    clock = Clock()
    budgets = Budgets(database, clock=clock, prune_every_seconds=5)
    limiter = SharedTokenBucket(budgets, "TEST", per_minute=60, burst=2, local=False)
    for n in range(300):
        assert limiter.take(f"10.0.{n // 250}.{n % 250}").allowed
    assert budgets.count() >= 300
    limiter.take("192.0.2.9")
    limiter.take("192.0.2.9")             # empty: refilled in 2 s
    budgets.penalise("graph:app", 120)
    clock.now += PRUNE_MARGIN_SECONDS + 1.5   # the 300 refilled (1 s) more than the margin ago
    limiter.take("192.0.2.9")             # the next operation past prune_every prunes
    assert budgets.count() == 2           # the client that just spent, and the pause
    clock.now += 200
    assert budgets.prune() == 2 and budgets.count() == 0
    # After a prune a client starts from a full bucket, exactly as without the row.
    assert limiter.take("192.0.2.9").allowed and limiter.take("192.0.2.9").allowed
    assert not limiter.take("192.0.2.9").allowed


def test_long_keys_fit_the_column(database):
    limiter = SharedTokenBucket(Budgets(database, clock=Clock()), "OPEN311_RATE_PER_MINUTE", per_minute=1)
    long_client = "open311:" + "x" * 500
    assert limiter.take(long_client).allowed and not limiter.take(long_client).allowed
    assert limiter.take(long_client + "y").allowed           # another key, another bucket
    assert len(budget_key("TEST", long_client)) <= 200


def test_budget_writes_skip_the_fsync_but_the_service_s_own_do_not(tmp_path):
    """SQLite: budgets are written on a connection with ``synchronous=NORMAL`` (no fsync per
    spend); the service's own transactions keep ``synchronous=FULL``."""
    url = f"sqlite:///{tmp_path / 'budgets.db'}"
    migrations.upgrade(SERVICE, url)
    database = Database(SERVICE, url, migrations.metadata_for(SERVICE))
    try:
        budgets = Budgets(database)
        assert budgets.engine is not database.engine and Budgets(database).engine is budgets.engine
        with budgets.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1      # NORMAL
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2      # FULL
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert SharedTokenBucket(budgets, "TEST", per_minute=1).take("k").allowed
        with database.read() as connection:   # visible to the service's own connections at once
            assert connection.exec_driver_sql("SELECT COUNT(*) FROM rate_budgets").scalar() == 1
    finally:
        database.dispose()


def test_reading_the_pauses_opens_no_transaction_on_postgresql(database):
    """The sender reads a Page's pauses before every send: on PostgreSQL one statement, no BEGIN
    and COMMIT around it (the reads of ``Database.read``); the pause itself is read as before."""
    budgets = Budgets(database)
    budgets.penalise("page:1", 30)
    with budgets._read_only() as connection:
        if database.dialect == "postgresql":
            assert connection.connection.dbapi_connection.status == 1   # STATUS_READY: no BEGIN sent
            assert connection.connection.dbapi_connection.autocommit
    assert 25 < budgets.pause_left("page:1") <= 30
    assert budgets.pause_left("page:2") == 0
