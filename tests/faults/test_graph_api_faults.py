"""Fault 3: the Graph API misbehaves mid-stream — 30 % of calls fail with temporary errors, then
Meta rate-limits the Page (613), then the Page's token is revoked and later restored. Every
message still reaches the citizen exactly once: temporary errors are retried with backoff, a rate
limit pauses the Page, an invalid token holds the queue until the token works again. On SQLite
and on PostgreSQL (a shorter stream there)."""
from __future__ import annotations

import time

import pytest
import requests

from tests.faults.scenario import STORES, named, run_scenario
from tests.support.platform import DEV_PAGE_ID

pytestmark = pytest.mark.parametrize("store", STORES, indirect=True, scope="module")


def control(platform, path, payload=None, method="POST"):
    response = requests.request(method, f"{platform.sandbox_url}/_sandbox/{path}", json=payload, timeout=10)
    response.raise_for_status()
    return response.json()


def test_graph_api_errors_rate_limits_and_a_revoked_token(platform, rabbit_vhost, store):
    def inject():
        try:
            # Temporary failures: Meta's 1200 and 2, and bare 5xx pages.
            control(platform, "faults", {"code": 1200, "rate": 0.1})
            control(platform, "faults", {"code": 2, "rate": 0.1})
            control(platform, "faults", {"http_status": 503, "rate": 0.12})
            time.sleep(4)
            control(platform, "faults", method="DELETE")
            # Its usage header says 0 minutes: the pause is the platform's backoff (a real
            # estimated_time_to_regain_access of minutes would outlast the scenario).
            control(platform, "faults", {"code": 613, "rate": 0.3, "regain_minutes": 0})
            time.sleep(3)
            control(platform, "faults", method="DELETE")
            control(platform, "revoke", {"page_id": DEV_PAGE_ID})
            time.sleep(3)
        finally:
            control(platform, "faults", method="DELETE")
            control(platform, "restore", {"page_id": DEV_PAGE_ID})

    figures = run_scenario(named("3 Graph API errors", store), platform, rabbit_vhost, inject,
                           seconds=14 if store == "sqlite" else 12, fault_at=2)
    failed = [c for c in platform.sandbox_calls() if c["status"] != 200]
    assert len(failed) >= 5  # the faults really hit the stream
    figures["graph_calls_refused"] = len(failed)
