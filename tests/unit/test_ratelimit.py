"""The token bucket of ``shared.core.ratelimit``: burst, refill, Retry-After, per-key isolation,
bounded memory, and no lost update when many green threads take at once."""
from __future__ import annotations

import eventlet
import pytest

from shared.core.ratelimit import TokenBucketLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_burst_then_refused_with_retry_after_then_refilled():
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=30, clock=clock)
    assert all(limiter.take("1.2.3.4").allowed for _ in range(30))
    refused = limiter.take("1.2.3.4")
    assert not refused.allowed and refused.retry_after_seconds == 2     # 30/min: one every 2 s
    clock.now += 2.0
    assert limiter.take("1.2.3.4").allowed
    assert not limiter.take("1.2.3.4").allowed
    clock.now += 60
    assert sum(limiter.take("1.2.3.4").allowed for _ in range(40)) == 30  # never more than the burst


def test_keys_are_independent():
    limiter = TokenBucketLimiter(per_minute=2, clock=Clock())
    assert limiter.take("a").allowed and limiter.take("a").allowed
    assert not limiter.take("a").allowed
    assert limiter.take("b").allowed


def test_memory_stays_bounded():
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=60, max_keys=100, clock=clock)
    for n in range(1000):
        limiter.take(f"10.0.{n // 256}.{n % 256}")
        clock.now += 0.01
    assert len(limiter) <= 100


def test_refuses_a_zero_rate():
    with pytest.raises(ValueError):
        TokenBucketLimiter(per_minute=0)


def test_concurrent_green_threads_never_overspend():
    limiter = TokenBucketLimiter(per_minute=50, clock=Clock())
    pool = eventlet.GreenPool(100)
    results = list(pool.imap(lambda _n: (eventlet.sleep(0), limiter.take("same"))[1].allowed, range(500)))
    assert sum(results) == 50
