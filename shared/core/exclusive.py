"""Work only one process of a service may do at a time, whichever replica it runs in: the outbox
relay's publishing (one publisher per log keeps each source's events in position order and
published once), intake's inbox drain (a citizen's bubbles applied in the order Meta sent them),
reporting's rebuild and the migrations a starting replica runs.

Each is a named lock on the service's own database, held by a session, so a process that dies
lets go of it at once (no lease to wait out):

* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock`` / ``pg_advisory_lock``)
  on a connection of its own, kept for as long as the work runs. If the server drops that
  connection (a restart) the lock goes with it; the work then fails on its next statement anyway.
* SQLite: ``flock`` on a file next to the database (``<file>.<name>.lock``): replicas of a SQLite
  service share its file, so they share the directory too.
* An in-memory database (tests): a lock of the process.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
import time
from pathlib import Path
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from shared.core.db import autocommit

_LOCAL: dict[str, threading.Lock] = {}


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name`` (per database, like the locks)."""
    return int.from_bytes(hashlib.sha256(f"ntbcare:{name}".encode()).digest()[:8], "big", signed=True)


def _sqlite_file(engine: Engine) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


@contextlib.contextmanager
def exclusive(engine: Engine, name: str, wait: bool = False, poll_seconds: float = 0.1) -> Iterator[bool]:
    """Hold the lock ``name`` of the database behind ``engine`` while the block runs. Yields
    whether it is held: with ``wait`` False (the default) a lock held elsewhere yields False at
    once and the caller skips the work; with ``wait`` True it waits for it (PostgreSQL and SQLite
    alike, polling every ``poll_seconds`` on SQLite so a green thread never blocks its hub)."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with _postgresql_lock(engine, name, wait) as (held, _session):
            yield held
        return
    path = _sqlite_file(engine) if dialect == "sqlite" else None
    if path is None:
        lock = _LOCAL.setdefault(f"{engine.url}:{name}", threading.Lock())
        held = lock.acquire(blocking=False)
        while wait and not held:
            time.sleep(poll_seconds)
            held = lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                lock.release()
        return
    with open(f"{path}.{name}.lock", "a+b") as handle:
        held = _try_flock(handle.fileno())
        while wait and not held:
            time.sleep(poll_seconds)
            held = _try_flock(handle.fileno())
        try:
            yield held
        finally:
            if held:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _postgresql_lock(engine: Engine, name: str, wait: bool) -> Iterator[tuple[bool, Connection]]:
    """The advisory lock, and the session (a connection in autocommit) that holds it."""
    key = lock_key(name)
    # The lock is the session's, not a transaction's: taking and letting go of it need no BEGIN
    # and COMMIT around them (four round trips of the six each use of the lock cost).
    with engine.connect() as connection, autocommit(connection):
        if wait:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            held = True
        else:
            held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
        try:
            yield held, connection
        finally:
            if held:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                except Exception:  # the connection is gone (or its transaction broken): the lock goes with it
                    connection.invalidate()


class KeptLock:
    """``exclusive(engine, name)`` for work done in rounds, one after another in one green thread
    (the outbox relay): ``take`` before a round takes the lock, or finds it still held from the
    round before; ``let_go`` gives it back. Keeping it while rounds follow each other saves taking
    and giving it back every round (two statements on PostgreSQL); the caller lets go when a round
    finds nothing to do or fails, so another replica can take over.

    On PostgreSQL ``session`` is the connection holding the lock (in autocommit): work done on it
    fails if that session was lost — and the lock with it — so nothing runs believing it holds a
    lock it lost. Elsewhere ``session`` is None."""

    def __init__(self, engine: Engine, name: str):
        self.engine = engine
        self.name = name
        self.session: Connection | None = None
        self._stack: contextlib.ExitStack | None = None

    @property
    def held(self) -> bool:
        return self._stack is not None

    def take(self) -> bool:
        if self._stack is not None:
            return True
        stack = contextlib.ExitStack()
        try:
            if self.engine.dialect.name == "postgresql":
                held, session = stack.enter_context(_postgresql_lock(self.engine, self.name, wait=False))
            else:
                held, session = stack.enter_context(exclusive(self.engine, self.name)), None
        except BaseException:
            stack.close()
            raise
        if not held:
            stack.close()
            return False
        self._stack, self.session = stack, session
        return True

    def let_go(self) -> None:
        stack, self._stack, self.session = self._stack, None, None
        if stack is not None:
            stack.close()


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
