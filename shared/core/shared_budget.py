"""Rate budgets every replica of a service shares: one row per key in the service's own database
(``rate_budgets``), so two notification processes spend one Page's send budget between them and
two intake processes one client's web-form budget — not one each.

Replicas of a service share its database (PostgreSQL, or the SQLite file on one host), so the row
is the bucket. Each operation is one statement in a short transaction of its own — an
``INSERT … ON CONFLICT (budget_key) DO UPDATE … RETURNING`` that reads and moves the bucket
atomically (PostgreSQL locks the row; SQLite's ``BEGIN IMMEDIATE`` serialises writers) — with no
other I/O inside it, so under eventlet nothing yields while SQLite's write lock is held.

The bucket is kept in GCRA form: ``tat``, the theoretical arrival time of the next call at the
configured rate (seconds since the epoch, wall clock: replicas on several hosts need synchronised
clocks, as they do for everything else). A token bucket of ``capacity`` tokens refilling at
``rate`` is the same thing: a call passes when ``tat - (capacity - 1) / rate <= now``, and then
``tat`` moves to ``max(tat, now) + 1 / rate``; a refused call changes nothing. A row whose
``tat`` has passed is a full bucket — the same as no row — so ``prune`` deletes such rows: the
table holds only the keys that spent something in the last refill period (a minute by default
for the public endpoints), whatever the number of clients.

* ``Budgets`` — the statements over one database;
* ``SharedTokenBucket`` — ``take``/``peek`` like ``shared.core.ratelimit.TokenBucketLimiter``, for
  the public endpoints; an in-process bucket in front refuses a client that this process alone
  already saw exhaust its budget without touching the database (it only spends what the shared
  bucket granted, so it never refuses what the shared one would pass);
* ``SharedPacer`` — ``acquire``/``penalise`` like the notification sender's ``RateLimiter``: a
  reservation of the next slot of the shared budget and how long to wait for it, and pauses (a
  rate-limit answer from Meta) that every replica then keeps.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
from typing import Any, Callable, Iterator

from sqlalchemy import Column, Float, MetaData, String, Table, text
from sqlalchemy.engine import Connection

from shared.core.db import autocommit
from shared.core.ratelimit import Decision, TokenBucketLimiter

TABLE = "rate_budgets"
KEY_LENGTH = 200
PRUNE_EVERY_SECONDS = 10.0
# A row is pruned only this long after its bucket refilled: a replica whose clock runs a little
# ahead must not drop a bucket the others still count.
PRUNE_MARGIN_SECONDS = 5.0


def budget_table(metadata: MetaData) -> Table:
    """The ``rate_budgets`` table (core ``consumer`` migration branch), declared in ``metadata``."""
    if TABLE in metadata.tables:
        return metadata.tables[TABLE]
    return Table(
        TABLE, metadata,
        Column("budget_key", String(KEY_LENGTH), primary_key=True),
        # Theoretical arrival time of the next call (seconds since the epoch).
        Column("tat", Float(53), nullable=False),
        # No call before this (a pause after a rate-limit answer); 0 when none.
        Column("blocked_until", Float(53), nullable=False),
        # The start granted to the last reservation (what ``reserve`` returns).
        Column("granted_at", Float(53), nullable=False),
    )


def budget_key(*parts: str) -> str:
    """A key of at most ``KEY_LENGTH`` characters (a long one is hashed, keeping its prefix)."""
    key = ":".join(parts)
    if len(key) <= KEY_LENGTH:
        return key
    return key[:KEY_LENGTH - 65] + "#" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class Budgets:
    """The shared buckets of one database. ``database`` is a ``shared.core.db.Database`` (its
    URL and dialect; its ``unsynced_engine`` writes). Every method is one short
    transaction."""

    def __init__(self, database: Any, clock: Callable[[], float] = time.time,
                 prune_every_seconds: float = PRUNE_EVERY_SECONDS):
        self.database = database
        # Its unsynced engine (Database.unsynced_engine; on SQLite 0.7 → 0.2 ms a reservation here,
        # and that long the process's green threads wait). A budget is not data: a power loss may
        # forget its last few spends (a client's bucket looks a little fuller), never a complaint
        # or a message, whose transactions keep synchronous=FULL — their commits sync the shared
        # WAL file, budget writes before them included.
        self.engine = database.unsynced_engine
        self.clock = clock
        self.prune_every_seconds = prune_every_seconds
        self._next_prune = float("-inf")
        self._prune_lock = threading.Lock()
        greatest = "GREATEST" if database.dialect == "postgresql" else "MAX"
        table = TABLE
        app = f"COALESCE((SELECT b.blocked_until FROM {table} AS b WHERE b.budget_key = :app_key), 0)"
        self._take = text(
            f"INSERT INTO {table} (budget_key, tat, blocked_until, granted_at) "
            f"VALUES (:key, :now + :interval, 0, :now) "
            f"ON CONFLICT (budget_key) DO UPDATE "
            f"SET tat = {greatest}({table}.tat, :now) + :interval, granted_at = :now "
            f"WHERE {table}.tat - :tolerance <= :now "
            f"RETURNING tat")
        self._read = text(f"SELECT tat, blocked_until FROM {table} WHERE budget_key = :key")
        start = f"{greatest}(:now, {table}.blocked_until, {table}.tat - :tolerance, {app})"
        self._reserve = text(
            f"INSERT INTO {table} (budget_key, tat, blocked_until, granted_at) "
            f"VALUES (:key, {greatest}(:now, {app}) + :interval, 0, {greatest}(:now, {app})) "
            f"ON CONFLICT (budget_key) DO UPDATE "
            f"SET granted_at = {start}, tat = {greatest}({table}.tat, {start}) + :interval "
            f"RETURNING granted_at")
        self._penalise = text(
            f"INSERT INTO {table} (budget_key, tat, blocked_until, granted_at) "
            f"VALUES (:key, :now, :until, :now) "
            f"ON CONFLICT (budget_key) DO UPDATE "
            f"SET blocked_until = {greatest}({table}.blocked_until, :until)")
        self._pause = text(f"SELECT MAX(blocked_until) FROM {table} WHERE budget_key IN (:key, :app_key)")
        self._prune = text(f"DELETE FROM {table} WHERE tat < :before AND blocked_until < :before")

    @contextlib.contextmanager
    def _read_only(self) -> Iterator[Connection]:
        # PostgreSQL: one statement, no BEGIN and COMMIT around it (Database.read's reasoning; the
        # sender reads the pauses before every send).
        with self.engine.connect() as connection:
            connection = connection.execution_options(readonly=True)   # SQLite: a plain BEGIN
            with autocommit(connection, self.database.dialect == "postgresql"), connection.begin():
                yield connection

    # -- token buckets (public endpoints) ---------------------------------------------------
    def take(self, key: str, interval: float, tolerance: float) -> Decision:
        """Spend one call of ``key``'s bucket if it has one (one call per ``interval`` seconds,
        ``tolerance`` seconds of burst beyond the first); refused: nothing is spent."""
        now = self.clock()
        with self.engine.begin() as connection:
            granted = connection.execute(self._take, {"key": key, "now": now, "interval": interval,
                                                      "tolerance": tolerance}).first()
            row = None if granted is not None else connection.execute(self._read, {"key": key}).first()
        self._maybe_prune(now)
        if granted is not None:
            return Decision(True)
        return self._refusal(row, now, tolerance)

    def peek(self, key: str, interval: float, tolerance: float) -> Decision:
        """Whether ``take`` would pass now, spending nothing."""
        now = self.clock()
        with self._read_only() as connection:
            row = connection.execute(self._read, {"key": key}).first()
        if row is None or row[0] - tolerance <= now:
            return Decision(True)
        return self._refusal(row, now, tolerance)

    @staticmethod
    def _refusal(row: Any, now: float, tolerance: float) -> Decision:
        wait = (row[0] - tolerance - now) if row is not None else 1.0
        return Decision(False, max(1, math.ceil(wait)))

    # -- pacing (the notification sender) ---------------------------------------------------
    def reserve(self, key: str, interval: float, tolerance: float = 0.0, app_key: str = "") -> float:
        """Reserve ``key``'s next slot; return the seconds to wait for it (0: now). No slot
        starts before a pause of ``key`` or of ``app_key`` ends."""
        now = self.clock()
        with self.engine.begin() as connection:
            granted = connection.execute(self._reserve, {"key": key, "now": now, "interval": interval,
                                                         "tolerance": tolerance, "app_key": app_key}).scalar_one()
        self._maybe_prune(now)
        # From now, not from before the transaction: the time it took is already waited.
        return max(0.0, float(granted) - self.clock())

    def pause_left(self, key: str, app_key: str = "") -> float:
        """Seconds until a pause of ``key`` or ``app_key`` ends (0: none): all a budget without a
        cap needs, read without taking the write lock."""
        with self._read_only() as connection:
            until = connection.execute(self._pause, {"key": key, "app_key": app_key}).scalar()
        return max(0.0, float(until or 0) - self.clock())

    def penalise(self, key: str, seconds: float) -> None:
        """No slot of ``key`` before ``seconds`` from now (extends, never shortens, a pause)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        now = self.clock()
        with self.engine.begin() as connection:
            connection.execute(self._penalise, {"key": key, "now": now, "until": now + seconds})

    # -- bounded rows -------------------------------------------------------------------------
    def prune(self, now: float | None = None) -> int:
        """Delete the rows of full buckets with no pause running (they hold no information)."""
        before = (self.clock() if now is None else now) - PRUNE_MARGIN_SECONDS
        with self.engine.begin() as connection:
            return int(connection.execute(self._prune, {"before": before}).rowcount or 0)

    def _maybe_prune(self, now: float) -> None:
        if now < self._next_prune or not self._prune_lock.acquire(blocking=False):
            return
        try:
            self._next_prune = now + self.prune_every_seconds
            self.prune(now)
        finally:
            self._prune_lock.release()

    def count(self) -> int:
        with self._read_only() as connection:
            return int(connection.execute(text(f"SELECT COUNT(*) FROM {TABLE}")).scalar_one())


class SharedTokenBucket:
    """A per-key token bucket shared by every replica, with ``TokenBucketLimiter``'s interface
    (``take``, ``peek``): each key may spend ``burst`` (default ``per_minute``) calls at once and
    regains ``per_minute`` a minute, counted across the processes that share the database.
    ``name`` keeps this limiter's keys apart from other limiters' in the same table."""

    def __init__(self, budgets: Budgets, name: str, per_minute: float, burst: float | None = None,
                 local: bool = True):
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.budgets = budgets
        self.name = name
        self.rate_per_second = per_minute / 60.0
        self.capacity = float(burst if burst is not None else per_minute)
        self.interval = 1.0 / self.rate_per_second
        self.tolerance = (self.capacity - 1.0) * self.interval
        # First filter: spends only what the shared bucket granted, so it refuses only a key this
        # process alone has already seen exhaust the budget (which the shared bucket refuses too).
        self.local = TokenBucketLimiter(per_minute, burst) if local else None

    def _key(self, key: str) -> str:
        return budget_key(self.name, key)

    def take(self, key: str) -> Decision:
        if self.local is not None:
            first = self.local.peek(key)
            if not first.allowed:
                return first
        decision = self.budgets.take(self._key(key), self.interval, self.tolerance)
        if decision.allowed and self.local is not None:
            self.local.take(key)
        return decision

    def peek(self, key: str) -> Decision:
        if self.local is not None:
            first = self.local.peek(key)
            if not first.allowed:
                return first
        return self.budgets.peek(self._key(key), self.interval, self.tolerance)


#: How long an uncapped pacer goes on trusting "no pause" before it reads the shared budget again.
#: A pause recorded elsewhere (another replica, or another Page's pacer meeting an app-wide limit)
#: holds here at most this much later — a few calls Meta refuses and the sender retries — instead
#: of a database read before every send.
PAUSE_RECHECK_SECONDS = 0.2


class SharedPacer:
    """The sender's ``RateLimiter`` interface (``acquire``, ``penalise``) over a shared budget:
    ``rate_per_second`` calls a second for ``key`` across every replica (0: no cap, pauses still
    hold — read again at most every ``PAUSE_RECHECK_SECONDS`` while there is none), in bursts of
    at most ``burst``; a pause of ``app_key`` holds it too."""

    def __init__(self, budgets: Budgets, key: str, rate_per_second: float, burst: int = 1,
                 app_key: str = ""):
        if rate_per_second < 0:
            raise ValueError("rate_per_second must be >= 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.budgets = budgets
        self.key = budget_key(key)
        self.app_key = budget_key(app_key) if app_key else ""
        self.interval = 1.0 / rate_per_second if rate_per_second else 0.0
        self.tolerance = (burst - 1) * self.interval
        self._no_pause_until = float("-inf")

    def acquire(self) -> float:
        """Reserve one call; return the seconds the caller must wait before making it."""
        if not self.interval:   # no cap: only the pauses hold (a read, no write per call)
            now = self.budgets.clock()
            if now < self._no_pause_until:
                return 0.0
            left = self.budgets.pause_left(self.key, self.app_key)
            if not left:
                self._no_pause_until = now + PAUSE_RECHECK_SECONDS
            return left
        return self.budgets.reserve(self.key, self.interval, self.tolerance, self.app_key)

    def penalise(self, seconds: float) -> None:
        self._no_pause_until = float("-inf")
        self.budgets.penalise(self.key, seconds)


def shared_limiter_from_env(variable: str, default: str, database: Any = None,
                            ) -> "SharedTokenBucket | TokenBucketLimiter | None":
    """The limit ``variable`` configures (per minute; 0: none), shared through ``database`` by
    every replica of the service — or, without a database (a test's bare provider), per process."""
    from shared.core.ratelimit import per_minute_from_env
    per_minute = per_minute_from_env(variable, default)
    if per_minute <= 0:
        return None
    if database is None:
        return TokenBucketLimiter(per_minute)
    return SharedTokenBucket(Budgets(database), variable, per_minute)
