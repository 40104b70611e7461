"""Projection rebuild (part 4): a synthetic history seeded into intake's, routing's and
notification's own event stores through their append API (large transactions), then reporting's
``repository.rebuild`` — the code behind ``reporting.rebuild()`` — run in a process of its own so
its peak RSS (VmHWM) is its own. It reads the source logs in pages of 1000 straight from the
stores (the running service reads the same pages over RPC, ``<source>.events_since``). The same
rows are also read raw (sqlite3, no decoding) and through ``events_since`` (decoded) for
comparison, and the rebuild is repeated on the first 10% of each log to show whether memory
grows with the number of events. ``rebuild_json`` is the rebuild again with every page turned
into plain JSON objects (``json.loads(json.dumps(page))``, what an RPC reply carries): each
envelope is then checked as a received one (``fast_check``, else the catalogue), as the running
service does.

``NTBCARE_BENCH_REBUILD_SOURCES=DIR`` reuses sources seeded before (``DIR/{intake,routing,
notification}.db``) instead of seeding ``--rebuild-events`` again.

``service_rpc``: the running platform (every service its own process) on a history of
``NTBCARE_BENCH_SERVICE_REBUILD_COMPLAINTS`` complaints (30,000 ≈ 120,000 events; 2,000 with
``--quick``) seeded into the services' own stores; once reporting has caught up, ``reporting.rebuild()``
is called over RPC twice and timed — the sources answer ``events_since`` over RPC, as in
production."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import log, save, temp_dir

ROOT = Path(__file__).resolve().parents[1]


def seed(directory: Path, events_wanted: int) -> dict:
    from tests.support.reporting_seed import Seeder
    seeder = Seeder(directory)
    started = time.perf_counter()
    total, last = 0, {}
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    while total < events_wanted:
        seeder.history(10_000, start, months=12, seed=total)
        seeder.secrets.clear()
        seeder.complaints.clear()
        last = seeder.flush(chunk=10_000)
        total = sum(last.values())
    seconds = time.perf_counter() - started
    for store in seeder.stores.values():
        store.database.dispose()
    return {"events": total, "per_source": last, "seconds": round(seconds, 1),
            "append_events_per_s": round(total / seconds)}


def _count(sources: Path) -> int:
    import sqlite3
    total = 0
    for name in ("intake", "routing", "notification"):
        with sqlite3.connect(sources / f"{name}.db") as db:
            total += db.execute("SELECT count(*) FROM events").fetchone()[0]
    return total


def _worker(mode: str, directory: Path, fraction: float) -> dict:
    env = dict(os.environ, NTBCARE_AUTO_MIGRATE="1")
    output = subprocess.run([sys.executable, "-m", "bench.rebuild_worker", mode, str(directory), str(fraction)],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    if output.returncode != 0:
        return {"error": output.stderr[-2000:]}
    return json.loads(output.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    wanted = args.rebuild_events or (50_000 if args.quick else 1_000_000)
    result = {"method": __doc__.split("\n\n")[0].replace("\n", " ")}
    reuse = os.environ.get("NTBCARE_BENCH_REBUILD_SOURCES")
    with temp_dir() as directory:
        if reuse:
            (directory / "sources").symlink_to(Path(reuse).resolve(), target_is_directory=True)
            result["seed"] = {"events": _count(directory / "sources"), "reused": str(reuse)}
        else:
            log(f"rebuild: seeding {wanted:,} events through the event stores' append API")
            result["seed"] = seed(directory / "sources", wanted)
        log(f"  {result['seed']}")
        for fraction in (0.1, 1.0):
            label = f"{int(fraction * 100)}pct"
            for mode in ("raw_sqlite", "events_since", "rebuild", "rebuild_json"):
                log(f"  {mode} over {label} of the logs")
                result[f"{mode}_{label}"] = _worker(mode, directory, fraction)
                log(f"    {result[f'{mode}_{label}']}")
    complaints = int(os.environ.get("NTBCARE_BENCH_SERVICE_REBUILD_COMPLAINTS", "2000" if args.quick else "30000"))
    log(f"  service_rpc: the running platform, {complaints:,} complaints seeded, reporting.rebuild() over RPC")
    result["service_rpc"] = service_rebuild(complaints)
    log(f"    {result['service_rpc']}")
    save("rebuild", result)
    return result


def service_rebuild(complaints: int, rounds: int = 2) -> dict:
    from bench.common import vhost
    from tests.support.platform import Platform, wait_for
    from tests.support.reporting_seed import Seeder
    with vhost() as amqp_uri, temp_dir() as data_dir:
        seeder = Seeder(data_dir)
        seeder.history(complaints, datetime(2019, 1, 1, tzinfo=timezone.utc), months=24)
        last = seeder.flush(chunk=10_000)
        seeder.mark_consumed()
        seeder.dispose()
        platform = Platform(amqp_uri, data_dir, extra_env={"NTBCARE_AUTO_MIGRATE": "1"}, with_sandbox=False)
        platform.start_all(timeout=120)
        try:
            def caught_up() -> bool:
                return all(platform.checkpoint("reporting", source) >= position for source, position in last.items())
            wait_for(caught_up, 1200, interval=1, message="reporting caught up with the seeded logs")
            runs = []
            for _ in range(rounds):
                started = time.perf_counter()
                with platform.rpc(timeout=1200) as rpc:
                    outcome = rpc.reporting.rebuild()
                seconds = time.perf_counter() - started
                runs.append({"events": outcome["events"], "seconds": round(seconds, 2),
                             "events_per_s": round(outcome["events"] / seconds),
                             "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()]})
        finally:
            platform.stop_all()
    best = max(runs, key=lambda run: run["events_per_s"])
    return {"complaints": complaints, "events": best["events"], "events_per_s": best["events_per_s"],
            "runs": runs}
