"""The second half of a rebuild's phase 2, in a process of its own (started by
``repository._DeriveHelper``): ``python -m services.reporting.adapters.derive_helper DB
GENERATION FIRST OUT CHUNK`` reads the new generation's facts of the complaints from ``FIRST``
on from the SQLite file ``DB``, derives their rows as the rebuild does (``_derived_chunks``) and
writes them into the tables of the same shape in the new file ``OUT`` (no journal, no syncs:
the rebuild copies them and deletes the file; a crash costs a rebuild again). Prints one JSON
line: complaints, seconds, CPU seconds, peak RSS."""
from __future__ import annotations

import gc
import json
import os
import sqlite3
import sys
import time

from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable

from services.reporting.adapters import tables
from services.reporting.adapters.repository import _derived_chunks, _sqlite_fact_rows


def derive_into(db_path: str, generation: int, first: str, out_path: str, chunk: int) -> int:
    projection = tables.projection(generation)
    source = sqlite3.connect(db_path, isolation_level=None)
    out = sqlite3.connect(out_path, isolation_level=None)
    try:
        out.execute("PRAGMA journal_mode = OFF")
        out.execute("PRAGMA synchronous = OFF")
        for table in (projection.complaints, projection.assignments, projection.answers):
            out.execute(str(CreateTable(table).compile(dialect=sqlite.dialect())))
        statements = {table.name: f"INSERT INTO {table.name} VALUES ({', '.join('?' * len(table.columns))})"
                      for table in (projection.complaints, projection.assignments, projection.answers)}
        complaints = 0
        source.execute("BEGIN")  # one snapshot of the facts for the whole read
        partitions = _sqlite_fact_rows(source, projection.facts.name, chunk * 5, first, None)
        for rows_by_table in _derived_chunks(projection, partitions, chunk):
            out.execute("BEGIN")
            for table, rows in rows_by_table:
                if rows:
                    out.executemany(statements[table.name], rows)
            out.execute("COMMIT")
            complaints += len(rows_by_table[0][1])
        source.execute("COMMIT")
        return complaints
    finally:
        source.close()
        out.close()


def main(argv: list[str]) -> int:
    db_path, generation, first, out_path, chunk = argv
    gc.disable()  # as the rebuild itself (``repository._collector_paused``): nothing here makes cycles
    started, cpu = time.perf_counter(), os.times()
    complaints = derive_into(db_path, int(generation), first, out_path, int(chunk))
    used = os.times()
    peak = None
    try:
        with open("/proc/self/status") as status:  # Linux: the kernel's peak RSS of this process
            for line in status:
                if line.startswith("VmHWM:"):
                    peak = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    print(json.dumps({"complaints": complaints, "seconds": round(time.perf_counter() - started, 3),
                      "cpu_seconds": round(used.user + used.system - cpu.user - cpu.system, 2),
                      "peak_rss_mb": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
