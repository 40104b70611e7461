"""Part of a rebuild's phase 1 in a process of its own (started by ``repository._ReadHelper``):
``python -m services.reporting.adapters.read_helper OUT SOURCE POSITION PAGE FROM`` reads SOURCE's
log after POSITION in pages of PAGE events — over RPC (``FROM`` = ``rpc``: ``SOURCE.events_since``
with reporting's own broker settings, as the service reads) or straight from a store's database
(``FROM`` = its SQLAlchemy URL: the bench and the tests) — checks each event as the rebuild does
(``repository._facts_of_page``) and writes the fact rows into the new SQLite file OUT (no journal,
no syncs: the rebuild sorts them in with its own and deletes the file; a crash costs a rebuild
again). Prints one JSON line: events, facts, skipped, the position read up to, seconds, CPU
seconds, peak RSS."""
from __future__ import annotations

import contextlib
import gc
import json
import os
import sqlite3
import sys
import time
from typing import Any, Callable, Iterator

from services.reporting.adapters.repository import (FACT_CHUNK, READ_HELPER_TABLE as TABLE, _FACT_COLUMNS,
                                                     _facts_of_page, _pages)


@contextlib.contextmanager
def _fetcher(source: str, where: str) -> Iterator[Callable[[str, int, int], list[Any]]]:
    if where == "rpc":
        from nameko.standalone.rpc import ClusterRpcProxy

        from shared.core import config
        from shared.glue import message_json
        message_json.install()   # replies decoded by orjson, as in the service
        with ClusterRpcProxy(config.nameko_config("reporting"), timeout=120) as proxy:
            yield lambda name, position, limit: getattr(proxy, name).events_since(position, limit)
        return
    from sqlalchemy import MetaData

    from shared.core.db import Database
    from shared.core.eventstore import EventStore
    store = EventStore(source, MetaData())
    database = Database(source, where, store.events.metadata)
    try:
        def fetch(_name: str, position: int, limit: int) -> list[Any]:
            with database.read() as connection:
                return store.events_since(connection, position, limit)
        yield fetch
    finally:
        database.dispose()


def read_into(out_path: str, source: str, position: int, page: int, where: str) -> dict[str, Any]:
    out = sqlite3.connect(out_path, isolation_level=None)
    try:
        out.execute("PRAGMA journal_mode = OFF")
        out.execute("PRAGMA synchronous = OFF")
        out.execute(f"CREATE TABLE {TABLE} ({', '.join(_FACT_COLUMNS)})")
        insert = f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(_FACT_COLUMNS))})"
        positions = {source: position}
        events = skipped = 0
        buffer: list[tuple] = []
        written = [0]

        def write() -> None:
            out.execute("BEGIN")
            out.executemany(insert, buffer)
            out.execute("COMMIT")
            written[0] += len(buffer)
            buffer.clear()

        with _fetcher(source, where) as fetch:
            for batch in _pages(fetch, source, positions, page):
                skipped += _facts_of_page(batch, source, buffer)
                events += len(batch)
                if len(buffer) >= FACT_CHUNK:
                    write()
        write()
        facts = written[0]
        return {"events": events, "facts": facts, "skipped": skipped, "position": positions[source]}
    finally:
        out.close()


def main(argv: list[str]) -> int:
    out_path, source, position, page, where = argv
    gc.disable()  # as the rebuild itself (``repository._collector_paused``): nothing here makes cycles
    started, cpu = time.perf_counter(), os.times()
    result = read_into(out_path, source, int(position), int(page), where)
    used = os.times()
    peak = None
    with contextlib.suppress(OSError), open("/proc/self/status") as status:  # Linux: the peak RSS
        for line in status:
            if line.startswith("VmHWM:"):
                peak = round(int(line.split()[1]) / 1024, 1)
    print(json.dumps({**result, "seconds": round(time.perf_counter() - started, 3),
                      "cpu_seconds": round(used.user + used.system - cpu.user - cpu.system, 2),
                      "peak_rss_mb": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
