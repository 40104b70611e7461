"""Append vs raw insert, per backend, in the same run (issue 17, "a cheaper core").

For SQLite (WAL, ``synchronous=FULL``) and PostgreSQL (``fsync=on``, ``synchronous_commit=on``):
one event per transaction — an ``events`` row of the real schema plus its ``outbox`` row —
written raw (sqlite3 / psycopg2, one prepared INSERT each) and through ``EventStore.append`` in
``Database.transaction()`` (validation, the complaint's version, the position, the envelope, the
outbox row, the after-commit hooks). The two loops alternate in short rounds so both see the same
machine load; the ratio raw ÷ append is the figure (target ≤ 2). Also 500 events per transaction
both ways. The load average is recorded before and after.
"""
from __future__ import annotations

import os
import sqlite3
import time
import uuid

from bench.baseline import EVENTS_DDL, OUTBOX_DDL, _filed_data, _row
from bench.common import log, save, temp_dir
from tests.support import infra

ROUNDS = 5


def _store(url: str):
    from sqlalchemy import MetaData

    from shared.core.db import Database
    from shared.core.eventstore import EventStore

    metadata = MetaData()
    store = EventStore("intake", metadata)
    database = Database("intake", url, metadata, store)
    database.create_all()
    return database


def _append_loop(database, seconds: float, batch: int = 1) -> tuple[int, float]:
    from shared.core.eventstore import PendingEvent

    sample = _filed_data()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        with database.transaction() as tx:
            if batch == 1:
                tx.append([PendingEvent("ComplaintFiled", str(uuid.uuid4()), sample, expected_version=0)])
            else:
                tx.append([PendingEvent("ComplaintFiled", str(uuid.uuid4()), sample) for _ in range(batch)])
        n += batch
    return n, time.perf_counter() - started


class _SqliteRaw:
    def __init__(self, path):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(EVENTS_DDL)
        self.db.execute(OUTBOX_DDL)
        self.position = 0

    def loop(self, seconds: float, batch: int = 1) -> tuple[int, float]:
        insert = "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)"
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            rows = [_row(self.position + i + 1) for i in range(batch)]
            self.position += batch
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(insert, rows)
            self.db.executemany("INSERT INTO outbox VALUES (?)", [(r[0],) for r in rows])
            self.db.execute("COMMIT")
            n += batch
        return n, time.perf_counter() - started

    def close(self):
        self.db.close()


class _PostgresRaw:
    def __init__(self, url: str):
        import psycopg2
        self.db = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
        cur = self.db.cursor()
        cur.execute(EVENTS_DDL)
        cur.execute(OUTBOX_DDL)
        self.db.commit()
        cur.execute("SHOW synchronous_commit")
        self.synchronous_commit = cur.fetchone()[0]
        cur.execute("SHOW fsync")
        self.fsync = cur.fetchone()[0]
        self.position = 0

    def loop(self, seconds: float, batch: int = 1) -> tuple[int, float]:
        from psycopg2.extras import execute_values
        cur = self.db.cursor()
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            rows = [_row(self.position + i + 1) for i in range(batch)]
            self.position += batch
            if batch == 1:
                cur.execute("INSERT INTO events VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows[0])
                cur.execute("INSERT INTO outbox VALUES (%s)", (rows[0][0],))
            else:
                execute_values(cur, "INSERT INTO events VALUES %s", rows, page_size=batch)
                execute_values(cur, "INSERT INTO outbox VALUES %s", [(r[0],) for r in rows], page_size=batch)
            self.db.commit()
            n += batch
        return n, time.perf_counter() - started

    def close(self):
        self.db.close()


def _compare(raw, database, seconds: float, rounds: int) -> dict:
    """Alternate raw and append rounds (single events, then 500 per transaction)."""
    out = {}
    for label, batch in (("one_per_tx", 1), ("batched", 500)):
        totals = {"raw": [0, 0.0, 0.0], "append": [0, 0.0, 0.0]}
        for _ in range(rounds):
            for name, run in (("raw", lambda: raw.loop(seconds, batch)),
                              ("append", lambda: _append_loop(database, seconds, batch))):
                cpu = time.process_time()
                n, elapsed = run()
                totals[name][0] += n
                totals[name][1] += elapsed
                totals[name][2] += time.process_time() - cpu
        raw_rate = totals["raw"][0] / totals["raw"][1]
        append_rate = totals["append"][0] / totals["append"][1]
        out[f"{label}_raw_events_per_s"] = round(raw_rate)
        out[f"{label}_append_events_per_s"] = round(append_rate)
        out[f"{label}_ratio_raw_over_append"] = round(raw_rate / append_rate, 2)
        # This process's CPU per event (the database server's own work is not in it): less
        # sensitive to other load on the machine than the rates.
        out[f"{label}_raw_cpu_us_per_event"] = round(totals["raw"][2] / totals["raw"][0] * 1e6, 1)
        out[f"{label}_append_cpu_us_per_event"] = round(totals["append"][2] / totals["append"][0] * 1e6, 1)
    return out


def sqlite_part(seconds: float, rounds: int) -> dict:
    with temp_dir() as directory:
        raw = _SqliteRaw(directory / "raw.db")
        database = _store(f"sqlite:///{directory}/store.db")
        try:
            out = _compare(raw, database, seconds, rounds)
        finally:
            raw.close()
            database.dispose()
    out["settings"] = "WAL, synchronous=FULL, outbox row with each event"
    return out


def postgres_part(seconds: float, rounds: int) -> dict:
    raw_url, store_url = infra.create_postgres_database(), infra.create_postgres_database()
    try:
        raw = _PostgresRaw(raw_url)
        database = _store(store_url)
        try:
            out = _compare(raw, database, seconds, rounds)
        finally:
            raw.close()
            database.dispose()
        out["settings"] = f"fsync={raw.fsync}, synchronous_commit={raw.synchronous_commit}, outbox row with each event"
    finally:
        infra.drop_postgres_database(raw_url)
        infra.drop_postgres_database(store_url)
    return out


def run(args=None) -> dict:
    quick = bool(getattr(args, "quick", False))
    seconds, rounds = (0.5, 2) if quick else (2.0, ROUNDS)
    result = {"load_average_before": list(os.getloadavg())}
    for name, part in (("sqlite", sqlite_part), ("postgresql", postgres_part)):
        log(f"append: {name}, EventStore.append vs raw insert, {rounds} alternating rounds of {seconds}s")
        result[name] = part(seconds, rounds)
        log(f"  {result[name]}  (load {os.getloadavg()[0]:.2f})")
    result["load_average_after"] = list(os.getloadavg())
    result["target"] = "one_per_tx ratio raw/append <= 2 on both backends"
    save("append", result)
    return result


if __name__ == "__main__":
    run()
