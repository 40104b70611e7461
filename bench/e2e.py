"""End to end on SQLite (the default): signed webhooks → intake → ComplaintFiled → routing →
ComplaintRouted → notification → the Graph API sandbox. Everyday offered loads (5 and 20/s) for
the acknowledgment's latency when the platform is not saturated — so a change that buys
throughput with latency shows —, fixed offered loads (50, 100, 200/s) for latency under pressure,
then saturation for the sustained rate; each service's peak RSS under that load (part 5) is
written to ``rss.json`` as well."""
from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from kombu import Connection

from bench.common import RESULTS, log, save, temp_dir, vhost
from bench.harness import BENCH_ENV, RssSampler, SandboxWatcher, fixed_load, running_platform, saturation, warm_up
from shared.glue.batching import DEFAULT_BATCH, batch_size
from tests.support.platform import Platform


#: Offered rates at everyday load (issue 17: acknowledgment p99 < 300 ms at 5/s, < 1 s at 20/s).
EVERYDAY_RATES = (5, 20)
EVERYDAY_SECONDS = 30   # 150 and 600 complaints: enough for a p99


def _fresh(measure):
    """Run ``measure(platform, watcher)`` on a platform of its own, so that the backlog one load
    leaves behind cannot slow the next; returns its result and each service's peak RSS."""
    with running_platform() as platform:
        watcher = SandboxWatcher(platform.sandbox_url).start()
        sampler = RssSampler(platform).start()
        try:
            warm_up(platform, watcher)
            return measure(platform, watcher), sampler.stop()
        finally:
            watcher.stop()


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    seconds = 5 if quick else 20
    log("e2e: the platform on SQLite, NOTIFICATION_SEND_RATE=0, a fresh platform per load")
    loads, everyday, rss = {}, {}, {}
    for rate in EVERYDAY_RATES:
        everyday[str(rate)], peaks = _fresh(
            lambda platform, watcher: fixed_load(platform, watcher, rate, 5 if quick else EVERYDAY_SECONDS))
        _merge(rss, peaks)
    for rate in (50, 100, 200):
        loads[str(rate)], peaks = _fresh(lambda platform, watcher: fixed_load(platform, watcher, rate, seconds))
        _merge(rss, peaks)
    saturated, peaks = _fresh(lambda platform, watcher: saturation(platform, watcher, 10 if quick else 20))
    _merge(rss, peaks)
    consuming = consumer_alone(150 if quick else 600)
    baseline = _baseline_rate()
    result = {"database": "sqlite",
              # How pushed events were consumed (shared.glue.batching): events per transaction at
              # most, 0 = one nameko worker and one transaction per delivery.
              "consumer_batch": batch_size(),
              "everyday_loads": everyday, "fixed_loads": loads, "saturation": saturated,
              "consumer_alone": consuming, "rss_mb": rss}
    if baseline:
        result["baseline_publish_confirm_each_msgs_per_s"] = baseline["publish_confirm_each_msgs_per_s"]
        result["baseline_publish_confirm_pipelined_msgs_per_s"] = baseline["publish_confirm_pipelined_msgs_per_s"]
        # Each complaint is at least 4 confirmed publishes + 7 acked deliveries through the broker
        # (ComplaintFiled to 3 consumers, ComplaintRouted to 2, CitizenNotified x2 to reporting).
        result["ratio_to_baseline_pipelined_publish"] = round(
            saturated["sustained_complaints_per_s"] / baseline["publish_confirm_pipelined_msgs_per_s"], 4)
    save("e2e", result)
    save("rss", {"under": "e2e fixed loads and saturation (SQLite); the highest peak of the four runs",
                 "rss_mb": rss})
    return result


def _merge(into: dict, peaks: dict) -> None:
    for name, values in peaks.items():
        current = into.setdefault(name, {})
        for key, value in values.items():
            if value is not None and (current.get(key) is None or value > current[key]):
                current[key] = value


def _baseline_rate() -> dict | None:
    path = RESULTS / "baseline.json"
    if path.exists():
        return json.loads(path.read_text()).get("rabbitmq")
    return None


# -- one consumer alone: pushed events drained with and without group commit ---------------------
def consumer_alone(complaints: int, batches=(0, DEFAULT_BATCH), rounds: int = 2) -> dict:
    """Reporting alone (the consumer with the most transactions per complaint) drains a backlog of
    pushed events — a seeded history of ``complaints`` complaints, every event type of the three
    sources, published persistent to the sources' exchanges as their relays would — once with one
    nameko worker and one transaction per delivery (``NTBCARE_CONSUMER_BATCH=0``) and once in
    batches, alternately on fresh processes and databases, so both see the same machine. Catch-up
    finds no source to pull from (the other services are not running): every event arrives by push.
    Rate = events ÷ (first publish → every checkpoint at its source's head)."""
    from tests.support.reporting_seed import Seeder
    with temp_dir() as sources_dir:
        seeder = Seeder(sources_dir)
        seeder.history(complaints, datetime(2026, 1, 1, tzinfo=timezone.utc), months=1)
        seeder.flush()
        events = []
        for source, store in seeder.stores.items():
            position = 0
            while page := store.events_since(position, 1000):
                events += [(source, event) for event in page]
                position = page[-1]["position"]
        seeder.dispose()
    from services.reporting.service import ReportingService
    subscribed = {(source, event_type) for source, types in ReportingService.subscriptions.items()
                  for event_type in types}
    # What reporting subscribes to (the rest never reaches its queues), as the sources published it.
    events = sorted((item for item in events if (item[0], item[1]["event_type"]) in subscribed),
                    key=lambda item: item[1]["occurred_at"])
    runs: dict[str, list[dict]] = {str(size): [] for size in batches}
    for round_ in range(rounds):
        for size in batches if round_ % 2 == 0 else batches[::-1]:
            runs[str(size)].append(_drain(events, size))
            log(f"  reporting alone, NTBCARE_CONSUMER_BATCH={size}: {runs[str(size)][-1]['events_per_s']} events/s")
    # A run that did not see every event handled within its deadline has no rate (None): it is
    # kept in ``runs`` as it was, and the best of each size is of the runs that finished.
    best = {size: max((run["events_per_s"] for run in done if run["events_per_s"] is not None), default=None)
            for size, done in runs.items()}
    first, last = best[str(batches[0])], best[str(batches[-1])]
    return {"events": len(events), "complaints": complaints, "runs": runs, "best_events_per_s": best,
            "gain": round(last / max(0.001, first), 2) if first is not None and last is not None else None}


def _drain(events: list, size: int) -> dict:
    with vhost() as amqp_uri, temp_dir() as data_dir:
        env = dict(BENCH_ENV, NTBCARE_CONSUMER_BATCH=str(size), NTBCARE_CATCHUP_SECONDS="3600")
        platform = Platform(amqp_uri, data_dir, extra_env=env, services=("reporting",), with_sandbox=False)
        try:
            platform.start_all(timeout=90)
            _wait_consuming(amqp_uri)
            load_average = list(Path("/proc/loadavg").read_text().split()[:3])
            started = time.time()
            _publish_confirmed(amqp_uri, events)
            published = time.time() - started
            database = data_dir / "reporting.db"
            deadline = time.time() + 600
            caught_up = False
            while time.time() < deadline and not caught_up:
                time.sleep(0.1)
                # Every pushed event handled is recorded by position until catch-up confirms it
                # (and there is nothing to pull from here).
                with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                    handled = connection.execute(
                        "SELECT count(*) FROM processed_events WHERE position > 0").fetchone()[0]
                caught_up = handled >= len(events)
            elapsed = time.time() - started
        finally:
            platform.stop_all()
    return {"events_per_s": round(len(events) / elapsed, 1) if caught_up else None, "seconds": round(elapsed, 2),
            "publishing_s": round(published, 2), "caught_up": caught_up,
            "load_average_1_5_15_at_start": [float(x) for x in load_average]}


def _publish_confirmed(amqp_uri: str, events: list, window: int = 500) -> None:
    """Publish the events persistent to their sources' exchanges as the relays do: pipelined, a
    window of publishes and then the broker's confirms of all of them. (Unconfirmed, the last few
    publishes before the connection closed could be lost on their way into a quorum queue: a
    reporting-alone run then waited for events that never came.)"""
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        channel.confirm_select()
        confirmed = [0]
        channel.events["basic_ack"].add(lambda tag, multiple: confirmed.__setitem__(0, max(confirmed[0], tag)))
        channel.events["basic_nack"].add(lambda tag, multiple: (_ for _ in ()).throw(
            RuntimeError(f"the broker refused publish {tag}")))
        sent = 0
        for source, event in events:
            message = channel.prepare_message(json.dumps(event), content_type="application/json",
                                              content_encoding="utf-8", properties={"delivery_mode": 2})
            channel.basic_publish(message, exchange=f"{source}.events", routing_key=event["event_type"])
            sent += 1
            if sent % window == 0 or sent == len(events):
                while confirmed[0] < sent:
                    connection.drain_events(timeout=30)


def _wait_consuming(amqp_uri: str, timeout: float = 60) -> None:
    """Until reporting's event queues are declared, bound and consumed (its web server answers
    /health before its consumers have started)."""
    from services.reporting.service import ReportingService
    from shared.glue.subscriptions import handler_name
    queues = [f"evt-{source}-{event_type}--reporting.{handler_name(event_type)}"
              for source, types in ReportingService.subscriptions.items() for event_type in types]
    deadline = time.time() + timeout
    with Connection(amqp_uri) as connection:
        while time.time() < deadline:
            try:
                channel = connection.channel()
                if all(channel.queue_declare(queue=name, passive=True).consumer_count for name in queues):
                    return
            except Exception:  # not declared yet: a passive declare closes the channel
                pass
            time.sleep(0.2)
    raise TimeoutError("reporting's event queues have no consumer")
