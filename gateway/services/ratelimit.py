"""Per-tenant request limits configured as `[[ratelimits]]` (Cloudflare's `simple` shape).

A token bucket per key: `limit` requests per `period` seconds, refilled continuously, so a
burst up to `limit` passes and then requests are spaced out.

Where the buckets live depends on the engine, chosen once when the gateway is built
(`buckets_for`): on SQLite, in memory (one process per database file, and no database trip
on the embedded hot path) — like Cloudflare's binding, a guard against abuse, not an exact
quota; on PostgreSQL, in the database (`gateway.store.rate_buckets`), so that N instances
share one tenant's limit instead of granting it N times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from gateway.config import RateLimit
from gateway.errors import RateLimited
from gateway.store import rate_buckets
from gateway.store.engine import Engine

# Channel tests send real (billed) messages: without a [[ratelimits]] entry named
# CHANNEL_TEST_RATE_LIMITER they are still limited, to this.
CHANNEL_TEST_LIMIT = RateLimit("CHANNEL_TEST_RATE_LIMITER", "", limit=5, period=60)

# how often an instance deletes the shared buckets that are full again (they mean the same
# as no row): the table holds the keys active in the last period or so, not every key ever
SWEEP_EVERY = 300.0


class _Limit:
    def __init__(self, rule: RateLimit, what: str) -> None:
        self.rule = rule
        self.what = what
        self.rate = rule.limit / rule.period

    def refusal(self, wait: float) -> RateLimited:
        retry = max(1, math.ceil(wait))
        return RateLimited(
            f"Too many {self.what}: at most {self.rule.limit} per {self.rule.period} s",
            details={"limit": self.rule.limit, "period": self.rule.period},
            headers={"Retry-After": str(retry)},
        )


class TokenBuckets(_Limit):
    """The buckets of one limit in this process's memory."""

    def __init__(self, rule: RateLimit, what: str = "requests") -> None:
        super().__init__(rule, what)
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

    async def check(self, key: str) -> None:
        wait = self.take(key)
        if wait > 0:
            raise self.refusal(wait)


class SharedBuckets(_Limit):
    """The buckets of one limit in the database, shared by every instance on it."""

    def __init__(self, rule: RateLimit, db: Engine, what: str = "requests") -> None:
        super().__init__(rule, what)
        self.db = db
        self._swept_at = time.monotonic()

    def claim(self, key: str) -> rate_buckets.Claim:
        return rate_buckets.Claim(self.rule.name, key, self.rule.limit, self.rule.period)

    async def check(self, key: str) -> None:
        await _take_shared([(self, key)])

    async def sweep(self) -> int:
        """Delete this limit's buckets that are full again; returns how many."""
        self._swept_at = time.monotonic()
        name = self.rule.name
        return await self.db.write_fn(lambda conn: rate_buckets.sweep_buckets(conn, name))

    async def sweep_when_due(self) -> None:
        if time.monotonic() - self._swept_at >= SWEEP_EVERY:
            await self.sweep()


Limiter = TokenBuckets | SharedBuckets


def buckets_for(db: Engine, rule: RateLimit, what: str = "requests") -> Limiter:
    """The limit `rule` where this engine keeps it: the database on PostgreSQL, memory on
    SQLite."""
    if db.dialect == "postgres":
        return SharedBuckets(rule, db, what)
    return TokenBuckets(rule, what)


async def take_all(claims: Sequence[tuple[Limiter, str]]) -> None:
    """One token from each (bucket, key), or none at all: the first empty one answers 429, so
    a request refused by one limit does not use up another."""
    memory = [(b, key) for b, key in claims if isinstance(b, TokenBuckets)]
    if not memory:
        await _take_shared([(b, key) for b, key in claims if isinstance(b, SharedBuckets)])
        return
    if len(memory) != len(claims):
        raise TypeError("the limits of one request live in one place")
    for buckets, key in memory:
        wait = buckets.wait(key)
        if wait > 0:
            raise buckets.refusal(wait)
    for buckets, key in memory:
        buckets.take(key)


async def _take_shared(claims: Sequence[tuple[SharedBuckets, str]]) -> None:
    """All the claims in one write transaction (`rate_buckets.take_all`)."""
    if not claims:
        return
    db = claims[0][0].db
    wanted = [buckets.claim(key) for buckets, key in claims]
    waits = await db.write_fn(lambda conn: rate_buckets.take_all(conn, wanted))
    for (buckets, _), wait in zip(claims, waits, strict=True):
        if wait > 0:
            raise buckets.refusal(wait)
    for buckets, _ in claims:
        await buckets.sweep_when_due()
