"""Group commit on the writing side: short units of work that several green threads submit at
about the same time run in ONE transaction, and each caller returns only after that commit.

A service's hot writes are many tiny transactions from concurrent green threads — the sender's
eight lanes each leasing a message and recording its outcome, every webhook request storing its
body before Meta's 200. On SQLite each commit is an ``fdatasync`` that blocks the whole process
(the eventlet hub waits with it), and on either database each transaction costs its begin, commit
and round trips; under load they, not the statements, were most of the time. Here the first caller
becomes the group's *leader*: it lets the green threads that are ready run (so those with a unit of
their own join this group), then runs every queued unit, in arrival order, in one transaction, and
wakes their callers after the commit. Callers that arrive while a group is being written wait for
the next one, which the leader also writes — or, once its own unit is done, hands to the first of
them. An idle writer waits for no one: a lone unit is written at once, as before.

What a caller sees is what it saw with a transaction of its own:

* it returns after the commit that made its unit durable, with its unit's return value;
* a unit that raises gets its exception, and the others are not lost with it: the group is rolled
  back and each unit is written again in a transaction of its own, so the error reaches the unit
  that caused it (units are therefore only database work, safe to run again after a rollback);
* ``tx.discard()`` inside a unit means "I wrote nothing" — it ends that unit's part only, and a
  group in which every unit discarded is rolled back, not committed (no empty commit to sync).

Units must not yield to other green threads while they run (no calls out, no sleeps): on SQLite a
yield inside an open write transaction stalls the hub on the database's busy wait.
"""
from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Generic, Optional, TypeVar

from shared.core.db import Database

T = TypeVar("T")

#: Most units written in one transaction (a bound on how long one commit keeps the others).
DEFAULT_MAX_UNITS = 64


class _Unit(Generic[T]):
    __slots__ = ("work", "wake", "finished", "result", "error")

    def __init__(self, work: Callable[[Any], T]):
        self.work = work
        self.wake = threading.Event()   # set when finished, or when asked to lead the next group
        self.finished = False
        self.result: Optional[T] = None
        self.error: Optional[BaseException] = None

    def finish(self, result: Any = None, error: Optional[BaseException] = None) -> None:
        self.result, self.error, self.finished = result, error, True
        self.wake.set()

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit:
    """Writes units of work (``run(unit)``, ``unit(tx) -> result``) submitted together in one
    transaction of ``database``."""

    def __init__(self, database: Database, max_units: int = DEFAULT_MAX_UNITS,
                 pause: Callable[[], None] = lambda: time.sleep(0)):
        self.database = database
        self.max_units = max(1, max_units)
        # Lets the green threads that are ready run before a group is taken (time.sleep(0) is
        # eventlet's under the services' monkey-patching), so that concurrent units join it.
        self._pause = pause
        self._queue: deque[_Unit[Any]] = deque()
        self._leading = False
        self.groups = 0      # transactions written (a figure for tests and benches)
        self.units = 0

    def run(self, work: Callable[[Any], T]) -> T:
        unit: _Unit[T] = _Unit(work)
        self._queue.append(unit)
        if self._leading:
            unit.wake.wait()        # written by a leader, or asked to lead
        else:
            self._leading = True
            self._pause()
        if not unit.finished:
            self._lead(unit)
        return unit.outcome()

    def _lead(self, mine: _Unit[Any]) -> None:
        try:
            while not mine.finished:
                group = [self._queue.popleft() for _ in range(min(self.max_units, len(self._queue)))]
                self._write(group)
        finally:
            if self._queue:
                self._queue[0].wake.set()    # unfinished: it leads the next group
            else:
                self._leading = False

    def _write(self, group: list[_Unit[Any]]) -> None:
        try:
            results = self._together(group)
        except Exception as error:
            if len(group) == 1:
                group[0].finish(error=error)
                return
            for unit in group:   # find the unit that failed; the others are written alone
                self._alone(unit)
        except BaseException as interrupted:   # this green thread is being killed
            for unit in group:
                unit.finish(error=interrupted)
            raise
        else:
            for unit, result in zip(group, results):
                unit.finish(result)

    def _together(self, group: list[_Unit[Any]]) -> list[Any]:
        with self.database.transaction() as tx:
            tx.grouped, results, wrote = True, [], False
            for unit in group:
                tx.discarded = False
                results.append(unit.work(tx))
                wrote = wrote or not tx.discarded
            tx.grouped = tx.discarded = False
            if not wrote:
                tx.discard()
        self.groups += 1
        self.units += len(group)
        return results

    def _alone(self, unit: _Unit[Any]) -> None:
        try:
            unit.finish(self._together([unit])[0])
        except Exception as error:
            unit.finish(error=error)


_BY_DATABASE: "weakref.WeakKeyDictionary[Database, GroupCommit]" = weakref.WeakKeyDictionary()


def group_commit_for(database: Database) -> GroupCommit:
    """The database's one ``GroupCommit``: every writer of a process that asks shares its groups
    (objects built per request, like intake's webhook inbox, find the same one)."""
    writes = _BY_DATABASE.get(database)
    if writes is None:
        writes = _BY_DATABASE[database] = GroupCommit(database)
    return writes
