"""The unauthenticated public status lookup is rate-limited per client address, so tracking
codes cannot be guessed quickly; a limited client is told when to come back."""
from __future__ import annotations

import pytest
import requests

from tests.support.platform import Platform


@pytest.fixture(scope="module")
def platform(amqp_uri, tmp_path_factory):
    running = Platform(amqp_uri, tmp_path_factory.mktemp("status-limit"), services=("reporting",),
                       with_sandbox=False, extra_env={"REPORTING_STATUS_RATE_PER_MINUTE": "5"}).start_all()
    yield running
    running.stop_all()


def test_status_lookups_are_limited_per_address(platform):
    url = f"{platform.url('reporting')}/api/complaints/NTB-00000-00000"
    answers = [requests.get(url, timeout=10) for _ in range(8)]
    assert [a.status_code for a in answers[:5]] == [404] * 5
    assert all(a.status_code == 429 and int(a.headers["Retry-After"]) >= 1 for a in answers[5:])
    # Only lookups are limited.
    assert requests.get(f"{platform.url('reporting')}/health", timeout=10).status_code == 200
