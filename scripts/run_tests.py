"""Runs the whole suite the way `make test` (and CI) does: the test files in a few parallel pytest
processes ("shards"), then the two fault scenarios that need the machine (ALONE_GROUPS), side by side.

Why: most of the suite waits — on service processes starting, on the broker, on clocks — rather
than on the CPU (a serial run keeps about half of one core busy), so a few shards side by side
finish in a fraction of the time on the same 2 cores. pytest-xdist cannot do it here: its workers
deadlock once eventlet patches threading, and every test needs eventlet. The broker-restart
scenario stops the machine's RabbitMQ, so it runs last and alone.

Files are dealt to shards longest first (the greedy "longest processing time" rule) by the time
each file took in the last measured run (`tests/test_times.json`; a file not in it counts
`UNKNOWN_SECONDS`). Every run writes what it measured to `var/test-times.json`;
`--update-times` copies it over `tests/test_times.json`.

    .venv/bin/python -m scripts.run_tests                 # what `make test` runs
    .venv/bin/python -m scripts.run_tests --shards 2 -- -x   # extra arguments go to every pytest
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMES = ROOT / "tests" / "test_times.json"
MEASURED = ROOT / "var" / "test-times.json"
LOGS = ROOT / "var" / "test-logs"
# After the shards, side by side (each its own pytest process), the two scenarios that must not
# share the machine with the suite: the broker restart stops the machine's own RabbitMQ; the
# cluster scenario runs three RabbitMQ nodes of its own and failed twice inside a full parallel
# run (notification's event queues left unconsumed, not understood yet; docs/guarantees.md) while
# it passed every time with less beside it. Every other fault scenario has a vhost and data of
# its own (the PostgreSQL restart its own PostgreSQL server) and is dealt to a shard like any file.
ALONE_GROUPS = (("tests/faults/test_broker_restart.py",), ("tests/faults/test_broker_cluster.py",))
ALONE = tuple(path for group in ALONE_GROUPS for path in group)
UNKNOWN_SECONDS = 10.0


def suite_files() -> list[str]:
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py"))
    return [name for name in files if not name.startswith(ALONE)]


def deal(files: list[str], times: dict[str, float], shards: int) -> list[list[str]]:
    """Longest first, each file to the shard with the least work so far."""
    loads = [0.0] * shards
    dealt: list[list[str]] = [[] for _ in range(shards)]
    for name in sorted(files, key=lambda f: (-times.get(f, UNKNOWN_SECONDS), f)):
        lightest = loads.index(min(loads))
        dealt[lightest].append(name)
        loads[lightest] += times.get(name, UNKNOWN_SECONDS)
    return [sorted(files_of_shard) for files_of_shard in dealt if files_of_shard]


def pytest_command(paths: list[str], extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", *paths, *extra]


def run(args: argparse.Namespace) -> int:
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    shards = deal(suite_files(), times, args.shards)
    LOGS.mkdir(parents=True, exist_ok=True)
    times_dir = LOGS / "times"
    times_dir.mkdir(exist_ok=True)
    for stale in times_dir.glob("*.json"):
        stale.unlink()

    started = time.monotonic()
    running = []
    for index, paths in enumerate(shards):
        log = (LOGS / f"shard-{index}.log").open("w")
        env = dict(os.environ, NTBCARE_TEST_SHARD=str(index),
                   NTBCARE_TEST_TIMES_OUT=str(times_dir / f"shard-{index}.json"))
        process = subprocess.Popen(pytest_command(paths, args.pytest_args), cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        running.append((index, paths, process, log))
        print(f"shard {index}: {len(paths)} files", flush=True)

    results = []
    for index, paths, process, log in running:
        code = process.wait()
        log.close()
        results.append((index, code, time.monotonic() - started))
        print(f"\n{'=' * 30} shard {index} ({len(paths)} files, exit {code}) {'=' * 30}", flush=True)
        sys.stdout.write((LOGS / f"shard-{index}.log").read_text(errors="replace"))
        sys.stdout.flush()
    parallel_seconds = time.monotonic() - started

    alone_started = time.monotonic()
    alone_runs = []
    for index, group in enumerate(ALONE_GROUPS):
        log = (LOGS / f"alone-{index}.log").open("w")
        env = dict(os.environ, NTBCARE_TEST_SHARD=str(len(shards) + index),
                   NTBCARE_TEST_TIMES_OUT=str(times_dir / f"alone-{index}.json"))
        alone_runs.append((group, subprocess.Popen(pytest_command(list(group), args.pytest_args), cwd=ROOT,
                                                   env=env, stdout=log, stderr=subprocess.STDOUT), log, index))
    alone_code = 0
    for group, process, log, index in alone_runs:
        code = process.wait()
        log.close()
        print(f"\n{'=' * 30} alone: {' '.join(group)} (exit {code}) {'=' * 30}", flush=True)
        sys.stdout.write((LOGS / f"alone-{index}.log").read_text(errors="replace"))
        sys.stdout.flush()
        if code not in (0, 5):
            alone_code = code
    alone_seconds = time.monotonic() - alone_started

    measured: dict[str, float] = {}
    for part in times_dir.glob("*.json"):
        measured.update(json.loads(part.read_text()))
    MEASURED.write_text(json.dumps(dict(sorted(measured.items())), indent=1) + "\n")
    if args.update_times:
        TIMES.write_text(json.dumps({k: round(v, 1) for k, v in sorted(measured.items())}, indent=1) + "\n")

    print(f"\n{'=' * 30} summary {'=' * 30}")
    failed = False
    for index, code, _ in results:
        ok = code in (0, 5)  # 5: a shard that selected no test
        failed |= not ok
        print(f"shard {index}: exit {code}" + ("" if ok else "   <-- FAILED (see its output above)"))
        if not ok:
            for line in (LOGS / f"shard-{index}.log").read_text(errors="replace").splitlines():
                if line.startswith(("FAILED ", "ERROR ")):
                    print(f"  {line}")
    print(f"alone: exit {alone_code}" + ("" if alone_code in (0, 5) else "   <-- FAILED"))
    failed |= alone_code not in (0, 5)
    print(f"wall time: {parallel_seconds:.0f} s in {len(shards)} shards, then {alone_seconds:.0f} s alone")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=int(os.environ.get("TEST_SHARDS", "3")))
    parser.add_argument("--update-times", action="store_true",
                        help="write the measured per-file times to tests/test_times.json")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to every pytest")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
