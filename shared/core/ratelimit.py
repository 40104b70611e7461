"""A small in-process token bucket per key (e.g. per client IP) for unauthenticated public
endpoints. Each key may spend ``capacity`` requests at once and regains ``rate_per_second``;
``take(key)`` answers whether this request may pass and, if not, how many seconds to wait (for a
``Retry-After`` header).

Green-thread safe: one lock around the read-modify-write of a bucket (under eventlet the lock is
a green lock). Memory is bounded: past ``max_keys`` buckets, the ones that have refilled
completely — they hold no information — are dropped; if none has, the oldest is dropped.
Per process: with several intake processes behind a balancer each keeps its own buckets, so the
effective limit is the configured one times the number of processes.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: int = 0     # whole seconds, at least 1 when refused


class TokenBucketLimiter:
    def __init__(self, per_minute: float, burst: float | None = None, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate_per_second = per_minute / 60.0
        self.capacity = float(burst if burst is not None else per_minute)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> Decision:
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate_per_second)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                allowed = Decision(True)
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate_per_second
                allowed = Decision(False, max(1, math.ceil(wait)))
            if len(self._buckets) > self.max_keys:
                self._forget_full(now)
            return allowed

    def _forget_full(self, now: float) -> None:
        for key, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.rate_per_second >= self.capacity:
                del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)   # least recently used first

    def __len__(self) -> int:
        return len(self._buckets)


def per_minute_from_env(variable: str, default: str) -> float:
    """A per-minute rate from the environment (0: no limit); a malformed value stops the service
    at start with a clear message rather than silently meaning "no limit"."""
    from shared.core.config import ConfigError, env
    raw = env(variable, default)
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if value < 0 or value != value:
        raise ConfigError(f"{variable} must be a number of requests per minute (0 for no limit), not {raw!r}")
    return value


def limiter_from_env(variable: str, default: str) -> "TokenBucketLimiter | None":
    per_minute = per_minute_from_env(variable, default)
    return TokenBucketLimiter(per_minute) if per_minute > 0 else None
