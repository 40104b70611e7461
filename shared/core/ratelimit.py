"""A small in-process token bucket per key (e.g. per client IP) for unauthenticated public
endpoints. Each key may spend ``capacity`` requests at once and regains ``rate_per_second``;
``take(key)`` answers whether this request may pass and, if not, how many seconds to wait (for a
``Retry-After`` header).

Green-thread safe: one lock around the read-modify-write of a bucket (under eventlet the lock is
a green lock). Memory is bounded: past ``max_keys`` buckets, the ones that have refilled
completely — they hold no information — are dropped; if none has, the oldest is dropped.
Per process. The services' public endpoints use ``shared.core.shared_budget.SharedTokenBucket``
(the same interface and answers, the bucket a row of the service's database, so every replica
spends one budget), which keeps one of these in front as a first filter.

``TrustedProxies`` decides which address a request counts against (``NTBCARE_TRUSTED_PROXIES``).
"""
from __future__ import annotations

import functools
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence


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

    def peek(self, key: str) -> Decision:
        """Whether ``take`` would pass now, spending nothing: for limits that count only
        failures (check first, ``take`` on a failure)."""
        with self._lock:
            now = self.clock()
            if key not in self._buckets:
                return Decision(True)
            tokens, at = self._buckets[key]
            tokens = min(self.capacity, tokens + (now - at) * self.rate_per_second)
            if tokens >= 1.0:
                return Decision(True)
            return Decision(False, max(1, math.ceil((1.0 - tokens) / self.rate_per_second)))

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


# --- the client address a per-address limit counts -----------------------------------------------

TRUSTED_PROXIES_VARIABLE = "NTBCARE_TRUSTED_PROXIES"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The reverse proxies (addresses or CIDR blocks) whose ``X-Forwarded-For`` is believed.

    Behind a TLS proxy every request's TCP peer is the proxy, so limits per peer put every
    citizen in one bucket. Only when the peer is a trusted proxy is the header read, from the
    right: each trusted proxy appends the address it received from, so the right-most address
    that is *not* a trusted proxy is the client — addresses further left were written by the
    client itself and are ignored (a client cannot pick its own bucket). Empty (the default):
    the header is never read and the peer is the client.
    """

    def __init__(self, networks: Sequence[IPNetwork] = ()):
        self.networks = tuple(networks)

    @classmethod
    def parse(cls, text: str | None, variable: str = TRUSTED_PROXIES_VARIABLE) -> "TrustedProxies":
        from shared.core.config import ConfigError
        networks = []
        for item in (text or "").split(","):
            item = item.strip()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(f"{variable} must list IP addresses or CIDR blocks separated by "
                                  f"commas; {item!r} is neither") from None
        return cls(networks)

    def __contains__(self, address: object) -> bool:
        parsed = _ip(address) if isinstance(address, str) else None
        return parsed is not None and any(parsed in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str:
        """The address a per-client limit counts: the peer, or — when the peer is a trusted
        proxy — the right-most untrusted address of ``X-Forwarded-For`` (all its header lines,
        in order). A malformed entry ends the walk at the last trusted hop, which then stands
        for the client (never an address the client chose)."""
        client = _normal(peer) or "unknown"
        if not self.networks or client not in self:
            return client
        hops = [hop.strip() for line in forwarded_for for hop in line.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = _normal(hop)
            if address is None:
                return client
            if address not in self:
                return address
            client = address
        return client


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a proxy may write it: ``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:80``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _normal(text: str | None) -> str | None:
    parsed = _ip(text) if text else None
    return str(parsed) if parsed is not None else None


@functools.lru_cache(maxsize=8)
def _parsed_proxies(text: str) -> TrustedProxies:
    return TrustedProxies.parse(text)


def trusted_proxies_from_env() -> TrustedProxies:
    """``NTBCARE_TRUSTED_PROXIES`` (read at every call, parsed once per value)."""
    from shared.core.config import env
    return _parsed_proxies(env(TRUSTED_PROXIES_VARIABLE, "") or "")
