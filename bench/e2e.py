"""End to end on SQLite (the default): signed webhooks → intake → ComplaintFiled → routing →
ComplaintRouted → notification → the Graph API sandbox. Fixed offered loads (50, 100, 200/s)
for latency, then saturation for the sustained rate; each service's peak RSS under that load
(part 5) is written to ``rss.json`` as well."""
from __future__ import annotations

import json

from bench.common import RESULTS, log, save
from bench.harness import RssSampler, SandboxWatcher, fixed_load, running_platform, saturation, warm_up


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
    loads, rss = {}, {}
    for rate in (50, 100, 200):
        loads[str(rate)], peaks = _fresh(lambda platform, watcher: fixed_load(platform, watcher, rate, seconds))
        _merge(rss, peaks)
    saturated, peaks = _fresh(lambda platform, watcher: saturation(platform, watcher, 10 if quick else 20))
    _merge(rss, peaks)
    baseline = _baseline_rate()
    result = {"database": "sqlite", "fixed_loads": loads, "saturation": saturated, "rss_mb": rss}
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
