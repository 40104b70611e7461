"""Fault 4: Meta delivers the same webhook two and three times, out of order, while a citizen
sends a burst of 1,000 bubbles (1,000 Messenger messages from one PSID within the bubble window,
by Meta's timestamps, arriving shuffled, in bodies of one to four messages, some of them twice).
Every complaint is filed exactly once; the burst is one complaint amended 999 times whose final
text holds every bubble, and its citizen gets one acknowledgment. On SQLite, and on PostgreSQL
with a burst of 300 (a shorter run: every bubble is an amendment through every service)."""
from __future__ import annotations

import random
import threading
import time

import pytest

from sandbox.control import citizen_wrote
from tests.faults.scenario import STORES, named, run_scenario
from tests.support import facebook
from tests.support.platform import DEV_PAGE_ID

BUBBLES = {"sqlite": 1000, "postgresql": 300}
SENDERS = 8
pytestmark = pytest.mark.parametrize("store", STORES, indirect=True, scope="module")


def send_until_accepted(url: str, body: dict) -> int:
    """Deliver like Meta: again until the answer is 200; returns the attempts made."""
    for attempt in range(1, 100):
        try:
            if facebook.signed_post(url, body, timeout=15).status_code == 200:
                return attempt
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError("a bubble was never accepted")


def test_duplicate_out_of_order_webhooks_and_a_burst_of_bubbles(platform, rabbit_vhost, store):
    bubbles = BUBBLES[store]
    rng = random.Random(1000)
    psid = facebook.new_psid()
    start_ms = facebook.now_ms()
    # The sandbox, like Meta, answers only people who wrote to the Page.
    citizen_wrote(platform.sandbox_url, DEV_PAGE_ID, psid)
    # Meta's timestamps 15 ms apart: the whole burst spans 15 s, inside the 120 s bubble window.
    messages = [facebook.text_message(DEV_PAGE_ID, psid, f"gelembung-{i:04d}", timestamp_ms=start_ms + 15 * i)
                for i in range(bubbles)]
    rng.shuffle(messages)
    bodies = []
    while messages:
        size = rng.randint(1, 4)
        chunk, messages = messages[:size], messages[size:]
        bodies.append(facebook.page_body(facebook.messaging_entry(DEV_PAGE_ID, *chunk)))
    deliveries = bodies + rng.sample(bodies, len(bodies) // 10)  # a tenth delivered twice
    rng.shuffle(deliveries)
    burst = {"bodies": len(bodies), "deliveries": len(deliveries), "attempts": 0}
    url = f"{platform.url('intake')}/webhooks/facebook"

    def inject():
        lock = threading.Lock()
        started = time.monotonic()

        def sender(share):
            for body in share:
                attempts = send_until_accepted(url, body)
                with lock:
                    burst["attempts"] += attempts
        threads = [threading.Thread(target=sender, args=(deliveries[i::SENDERS],)) for i in range(SENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        burst["seconds"] = round(time.monotonic() - started, 1)

    # 1,000 bubbles are 1,000 amendments through every service: on this 2-core machine they settle
    # in 35-70 s (recovery_seconds in the figures), so the bound is wider than the default 90 s.
    stream_seconds = 14 if store == "sqlite" else 8
    figures = run_scenario(named(f"4 duplicates + {bubbles:,} bubbles", store), platform, rabbit_vhost, inject,
                           seconds=stream_seconds, fault_at=2, stream_seconds=stream_seconds,
                           stream_options={"duplicate_webhooks": True}, settle_timeout=150.0)
    with platform.rpc() as rpc:
        events = []
        while True:
            page = rpc.intake.events_since(events[-1]["position"] if events else 0, 1000)
            events += page
            if len(page) < 1000:
                break
    filed = [e for e in events if e["event_type"] == "ComplaintFiled"
             and (e["data"].get("reply_to") or {}).get("psid") == psid]
    assert len(filed) == 1
    amended = [e for e in events
               if e["event_type"] == "ComplaintAmended" and e["complaint_id"] == filed[0]["complaint_id"]]
    others = [e for e in events if e["complaint_id"] == filed[0]["complaint_id"]
              and e["event_type"] not in ("ComplaintFiled", "ComplaintAmended")]
    assert len(amended) == bubbles - 1 and not others
    final_text = max(amended, key=lambda e: e["version"])["data"]["text"]
    assert sorted(final_text.split("\n")) == [f"gelembung-{i:04d}" for i in range(bubbles)]
    acknowledgments = [c for c in platform.sandbox_calls(status=200) if (c.get("recipient") or {}).get("id") == psid]
    assert len(acknowledgments) == 1
    burst.update({"filed": len(filed), "amended": len(amended), "acknowledgments": len(acknowledgments)})
    print("burst:", burst)
    figures["burst"] = burst
