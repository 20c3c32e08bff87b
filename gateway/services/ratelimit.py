"""Per-tenant request limits configured as `[[ratelimits]]` (Cloudflare's `simple` shape).

A token bucket per key: `limit` requests per `period` seconds, refilled continuously, so a
burst up to `limit` passes and then requests are spaced out. In memory, per process — like
Cloudflare's binding, it is a guard against abuse, not an exact quota.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from gateway.config import RateLimit
from gateway.errors import RateLimited

# Channel tests send real (billed) messages: without a [[ratelimits]] entry named
# CHANNEL_TEST_RATE_LIMITER they are still limited, to this.
CHANNEL_TEST_LIMIT = RateLimit("CHANNEL_TEST_RATE_LIMITER", "", limit=5, period=60)


class TokenBuckets:
    def __init__(self, rule: RateLimit, what: str = "requests") -> None:
        self.rule = rule
        self.what = what
        self.rate = rule.limit / rule.period
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, key: str, now: float) -> float:
        tokens, stamp = self._buckets.get(key, (float(self.rule.limit), now))
        return min(float(self.rule.limit), tokens + (now - stamp) * self.rate)

    def wait(self, key: str) -> float:
        """The seconds until a token is available (0 when one is), taking nothing."""
        tokens = self._tokens(key, time.monotonic())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        now = time.monotonic()
        tokens = self._tokens(key, now)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    def refusal(self, wait: float) -> RateLimited:
        retry = max(1, math.ceil(wait))
        return RateLimited(
            f"Too many {self.what}: at most {self.rule.limit} per {self.rule.period} s",
            details={"limit": self.rule.limit, "period": self.rule.period},
            headers={"Retry-After": str(retry)},
        )

    def check(self, key: str) -> None:
        wait = self.take(key)
        if wait > 0:
            raise self.refusal(wait)


def take_all(claims: Sequence[tuple[TokenBuckets, str]]) -> None:
    """One token from each (bucket, key), or none at all: the first empty one answers 429, so
    a request refused by one limit does not use up another."""
    for buckets, key in claims:
        wait = buckets.wait(key)
        if wait > 0:
            raise buckets.refusal(wait)
    for buckets, key in claims:
        buckets.take(key)
