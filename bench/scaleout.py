"""Scale-out (part 6): every service on PostgreSQL (a database each), saturation with one
instance of each service, then again after a second instance of routing and notification is
started (same database, same queues, another web port). Then the proof that per-complaint order
held: routing's versions of each complaint are 1..n with no gap, and at the sandbox each
citizen's acknowledgment (from ComplaintFiled) arrived before the routed message."""
from __future__ import annotations

from bench.common import log, save
from bench.harness import SandboxWatcher, running_platform, saturation, start_second_instance, warm_up
from tests.support import infra

SERVICES = ("intake", "routing", "notification", "reporting")


def order_proof(platform, watcher) -> dict:
    versions: dict[str, list[int]] = {}
    position = 0
    with platform.rpc(timeout=120) as rpc:
        while True:
            page = rpc.routing.events_since(position, 1000)
            if not page:
                break
            for envelope in page:
                versions.setdefault(envelope["complaint_id"], []).append(envelope["version"])
            position = page[-1]["position"]
    gaps = sum(1 for v in versions.values() if v != list(range(1, len(v) + 1)))
    out_of_order = sum(1 for calls in watcher.calls.values()
                       if [c["kind"] for c in sorted(calls, key=lambda c: c["seq"])
                           if c["status"] == 200][:1] == ["other"])
    return {"routing_complaints": len(versions), "routing_complaints_with_version_gaps_or_disorder": gaps,
            "citizens": len(watcher.calls),
            "citizens_whose_routed_message_came_before_the_acknowledgment": out_of_order,
            "ok": gaps == 0 and out_of_order == 0}


def run(args) -> dict:
    seconds = 8 if args.quick else 20
    urls = {name: infra.create_postgres_database() for name in SERVICES}
    env = {f"{name.upper()}_DATABASE_URL": url for name, url in urls.items()}
    result = {"database": "postgresql"}
    try:
        log("scaleout: platform on PostgreSQL")
        with running_platform(extra_env=env) as platform:
            watcher = SandboxWatcher(platform.sandbox_url).start()
            try:
                warm_up(platform, watcher)
                result["one_instance"] = saturation(platform, watcher, seconds)
                log("  starting a second routing and a second notification")
                result["second_instances"] = [start_second_instance(platform, "routing"),
                                              start_second_instance(platform, "notification")]
                result["two_instances"] = saturation(platform, watcher, seconds)
                result["order"] = order_proof(platform, watcher)
            finally:
                watcher.stop()
        one = result["one_instance"]["sustained_complaints_per_s"]
        two = result["two_instances"]["sustained_complaints_per_s"]
        result["throughput_gain"] = round(two / one, 2) if one else None
        log(f"  one {one}/s, two {two}/s, order {result['order']}")
    finally:
        for url in urls.values():
            infra.drop_postgres_database(url)
    save("scaleout", result)
    return result
