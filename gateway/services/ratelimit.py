"""Per-tenant request limits configured as `[[ratelimits]]` (Cloudflare's `simple` shape).

A token bucket per key: `limit` requests per `period` seconds, refilled continuously, so a
burst up to `limit` passes and then requests are spaced out. In memory, per process — like
Cloudflare's binding, it is a guard against abuse, not an exact quota.
"""

from __future__ import annotations

import math
import time

from gateway.config import RateLimit
from gateway.errors import RateLimited


class TokenBuckets:
    def __init__(self, rule: RateLimit) -> None:
        self.rule = rule
        self.rate = rule.limit / rule.period
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        now = time.monotonic()
        tokens, stamp = self._buckets.get(key, (float(self.rule.limit), now))
        tokens = min(float(self.rule.limit), tokens + (now - stamp) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    def check(self, key: str) -> None:
        wait = self.take(key)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise RateLimited(
                f"Too many requests: at most {self.rule.limit} per {self.rule.period} s",
                details={"limit": self.rule.limit, "period": self.rule.period},
                headers={"Retry-After": str(retry)},
            )
