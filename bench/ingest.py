"""Webhook ingest (part 3): intake alone (its consumers idle), signed Messenger webhooks that
each file a complaint — accepted webhooks/s at saturation, and time to the 200 at 200/s offered.
The full platform's figures at 50/100/200/s are in e2e.json (there intake shares the CPUs)."""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from bench.common import WebhookLoad, log, percentiles, save
from bench.harness import RssSampler, running_platform
from tests.support.platform import DEV_PAGE_ID


LABELLED = Path(__file__).resolve().parents[1] / "tests" / "data" / "labelled_complaints.yaml"


def classifier_rate(rounds: int = 3) -> tuple[float, dict, dict]:
    """Warm classifications per second over the labelled complaints (one core, no I/O): the
    classifier must stay far above the platform's target of 300 complaints/s. Also the time per
    complaint in ms (budget: p99 < 5 ms with the full gazetteer), on the first pass (every word
    new to the stem cache, as an unseen text's words are) and warm."""
    from services.intake.domain.classifier import Classifier

    classifier = Classifier()  # a fresh one: its stem cache is empty for the first pass
    texts = [case["text"] for case in yaml.safe_load(LABELLED.read_text(encoding="utf-8"))["complaints"]]
    classifier.classify("pemanasan")
    cold, warm = [], []
    for text in texts:
        started = time.perf_counter()
        classifier.classify(text)
        cold.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    for text in texts * rounds:
        began = time.perf_counter()
        classifier.classify(text)
        warm.append((time.perf_counter() - began) * 1000)
    rate = round(rounds * len(texts) / (time.perf_counter() - started), 1)
    return rate, percentiles(cold, (50, 99)), percentiles(warm, (50, 99))


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    seconds = 5 if quick else 15
    rate, cold_ms, warm_ms = classifier_rate()
    log(f"ingest: the classifier alone, warm: {rate} complaints/s; per complaint "
        f"p50 {warm_ms['p50']} ms, p99 {warm_ms['p99']} ms warm, "
        f"p50 {cold_ms['p50']} ms, p99 {cold_ms['p99']} ms on first sight of the words")
    log("ingest: starting intake alone")
    with running_platform(services=("intake",), with_sandbox=False) as platform:
        sampler = RssSampler(platform).start()
        WebhookLoad(platform.url("intake"), DEV_PAGE_ID).fixed_rate(20, 1, senders=2)  # warm-up
        result = {}
        classifier_per_s = rate
        for rate in (200,):
            load = WebhookLoad(platform.url("intake"), DEV_PAGE_ID)
            log(f"  offered {rate}/s for {seconds}s")
            offered = load.fixed_rate(rate, seconds)
            result[f"fixed_{rate}"] = {**offered, "accepted": len(load.answered), "failures": load.failures,
                                       "webhook_to_200_s": percentiles(load.answered.values())}
            log(f"    p99 {result[f'fixed_{rate}']['webhook_to_200_s']['p99']}s")
        for concurrency in (8, 32):
            load = WebhookLoad(platform.url("intake"), DEV_PAGE_ID)
            log(f"  saturation with {concurrency} senders for {seconds}s")
            shape = load.saturate(seconds, concurrency)
            result[f"saturation_{concurrency}"] = {
                **shape, "accepted": len(load.answered), "failures": load.failures,
                "accepted_webhooks_per_s": round(len(load.answered) / shape["seconds"], 1),
                "webhook_to_200_s": percentiles(load.answered.values())}
            log(f"    {result[f'saturation_{concurrency}']['accepted_webhooks_per_s']}/s")
        result["rss_mb"] = sampler.stop()
    result["classifier_per_s"] = classifier_per_s
    result["classifier_ms"] = {"warm": warm_ms, "first_sight": cold_ms}
    save("ingest", result)
    return result
