"""Where the CPU of a complaint goes: every process of the platform (the four services, the Graph
API sandbox, RabbitMQ, and this process — the load generator and the sandbox watcher) measured
from ``/proc/<pid>/stat`` before and after a fixed load on SQLite, divided by the complaints it
carried. Two cores carry about 2,000 ms of CPU a second, so 2,000 ÷ the total is roughly the most
complaints a second this machine can sustain, whatever the queues do (issue 17's 300/s needs about
6.7 ms a complaint).

``python -m bench cpu`` (``--quick``: a shorter load). The load is offered below saturation (25/s for
30 s by default: ``NTBCARE_BENCH_CPU_RATE``, ``NTBCARE_BENCH_CPU_SECONDS``), so that the figures are
of the work itself, not of queues growing; ``acknowledgment`` says whether it kept up.
"""
from __future__ import annotations

import os
import subprocess

from bench.common import log, save
from bench.harness import SandboxWatcher, fixed_load, running_platform, warm_up

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rabbitmq_pid() -> int | None:
    found = subprocess.run(["pgrep", "-f", "beam.smp"], capture_output=True, text=True).stdout.split()
    return int(found[0]) if len(found) == 1 else None   # several nodes: not ours to attribute


def run(args) -> dict:
    rate = float(os.environ.get("NTBCARE_BENCH_CPU_RATE", "25"))
    seconds = float(os.environ.get("NTBCARE_BENCH_CPU_SECONDS", "10" if args.quick else "30"))
    log(f"cpu: {rate}/s offered for {seconds}s, CPU of every process per complaint")
    with running_platform() as platform:
        watcher = SandboxWatcher(platform.sandbox_url).start()
        try:
            warm_up(platform, watcher)
            pids = {name: process.pid for name, process in platform.processes.items()}
            broker = rabbitmq_pid()
            if broker:
                pids["rabbitmq"] = broker
            pids["load generator and watcher"] = os.getpid()
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            report = fixed_load(platform, watcher, rate, seconds, drain_timeout=120)
            after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        finally:
            watcher.stop()
    complaints = max(1, report["accepted_webhooks"])
    per_complaint = {name: round(1000 * (after[name] - before[name]) / complaints, 1) for name in pids}
    total = round(sum(per_complaint.values()), 1)
    result = {"offered_per_s": rate, "seconds": seconds, "complaints": report["accepted_webhooks"],
              "cpu_ms_per_complaint": per_complaint, "total_cpu_ms_per_complaint": total,
              "complaints_per_s_two_cores_could_carry": round(2000 / total, 1) if total else None,
              "acknowledgment_s": report["webhook_to_acknowledgment_s"],
              "nothing_lost": report["nothing_lost"], "load_average_1_5_15_at_start":
              report["load_average_1_5_15_at_start"]}
    for name, value in per_complaint.items():
        log(f"    {name:28s} {value:6.1f} ms a complaint")
    log(f"    total {total} ms a complaint: two cores carry about {result['complaints_per_s_two_cores_could_carry']}/s")
    save("cpu", result)
    return result
