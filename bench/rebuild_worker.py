"""One measurement of the rebuild part in a process of its own (``python -m bench.rebuild_worker
MODE DIR FRACTION``); prints one JSON line: events, seconds, events/s, this process's CPU time
(user + system, with its children's: the rebuild's derive helper) per event over the same span,
peak RSS (VmHWM; the helper's own is in ``derive_helper``). CPU time is the figure to compare on
a shared machine: wall time there depends on what else runs."""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

from bench.common import proc_status

SOURCES = ("intake", "routing", "notification")


def caps(directory: Path, fraction: float) -> dict[str, int]:
    out = {}
    for source in SOURCES:
        db = sqlite3.connect(directory / "sources" / f"{source}.db")
        out[source] = int(db.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0] * fraction)
        db.close()
    return out


def _cpu_seconds() -> float:
    """This process's CPU time and that of its children waited for (the rebuild's derive helper)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main(mode: str, directory: str, fraction: str) -> dict:
    directory = Path(directory)
    limit = caps(directory, float(fraction))
    before = proc_status(os.getpid()).get("VmHWM")
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    events = 0
    phases: dict = {}
    if mode == "raw_sqlite":
        for source in SOURCES:
            db = sqlite3.connect(directory / "sources" / f"{source}.db")
            for _row in db.execute("SELECT * FROM events WHERE position <= ? ORDER BY position", (limit[source],)):
                events += 1
            db.close()
    else:
        from tests.support.reporting_seed import _metadata
        from shared.core.store import ServiceStore
        stores = {name: ServiceStore(name, _metadata(name), emits_events=True,
                                     url=f"sqlite:///{directory / 'sources' / (name + '.db')}") for name in SOURCES}

        def fetch(source, position, page):
            if position >= limit[source]:
                return []
            rows = stores[source].events_since(position, page)
            rows = [row for row in rows if row["position"] <= limit[source]]
            if mode == "rebuild_json":  # as an RPC reply: plain JSON objects, checked as received
                return json.loads(json.dumps(rows))
            return rows

        if mode == "events_since":
            for source in SOURCES:
                position = 0
                while True:
                    page = fetch(source, position, 1000)
                    if not page:
                        break
                    events += len(page)
                    position = page[-1]["position"]
        else:
            from services.reporting.adapters import repository
            from services.reporting.service import build_store
            target = directory / f"reporting-{fraction}.db"
            store = build_store(f"sqlite:///{target}")
            store.prepare()
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            progress: dict = {}
            # Routing's log read by the rebuild's helper process straight from its store (the
            # service's helper reads it over RPC); not for the 10 % runs, whose logs are capped.
            helper_reads = {"routing": f"sqlite:///{directory / 'sources' / 'routing.db'}"} \
                if float(fraction) >= 1 and mode == "rebuild" else None
            outcome = repository.rebuild(store.database, fetch, store.checkpoints, store.processed,
                                         store.failures, progress=progress, helper_reads=helper_reads)
            events = outcome.get("events", 0) if isinstance(outcome, dict) else 0
            phases = {name: progress.get(name) for name in ("read_seconds", "derive_seconds")}
            # Phase 2's helper process (SQLite, large logs): its own peak RSS and CPU time.
            phases["derive_helper"] = progress.get("derive_helper_result")
            phases["read_helper"] = progress.get("read_helper_result")
            store.database.dispose()
            target.unlink(missing_ok=True)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
    status = proc_status(os.getpid())
    out = {"mode": mode, "events": events, "seconds": round(seconds, 2),
           "events_per_s": round(events / seconds) if seconds else None,
           "cpu_seconds": round(cpu, 2), "cpu_us_per_event": round(cpu * 1e6 / events, 1) if events else None,
           "peak_rss_mb": status.get("VmHWM"), "rss_before_mb": before,
           "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()]}
    if mode.startswith("rebuild"):
        out.update(phases)
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
