"""Per-sender pacing of sends: at most `rate` sends a second from one sender (a number, an
address), spread evenly (a leaky bucket): each send waits for its slot.

Where the slots live depends on the engine, chosen once when the dispatcher is built
(`pacer_for`): on SQLite, in memory (one process per database file); on PostgreSQL, in the
database (`gateway.store.rate_buckets.next_slot`), so that N instances sending from one
number space its sends by the interval instead of sending N times its pace.
"""

from __future__ import annotations

import asyncio
import time

from gateway.store import rate_buckets
from gateway.store.engine import Engine

# how often an instance deletes the pacing slots that have passed
SWEEP_EVERY = 300.0


class _Pacing:
    """What both pacers share: `wait` sleeps until the slot `reserve` took."""

    interval: float

    async def reserve(self, sender: str) -> float:
        raise NotImplementedError

    async def wait(self, sender: str) -> None:
        if not self.interval:
            return
        delay = await self.reserve(sender)
        if delay > 0:
            await asyncio.sleep(delay)


class Pacer(_Pacing):
    """Slots in this process's memory."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next: dict[str, float] = {}

    async def reserve(self, sender: str) -> float:
        """Take `sender`'s next slot; returns the seconds until it comes (0: now)."""
        now = time.monotonic()
        slot = max(now, self._next.get(sender, now))
        self._next[sender] = slot + self.interval
        return slot - now


class SharedPacer(_Pacing):
    """Slots in the database, shared by every instance on it (the database's clock)."""

    def __init__(self, db: Engine, rate: float) -> None:
        self.db = db
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._swept_at = time.monotonic()

    async def slot(self, sender: str) -> tuple[float, float]:
        """Take `sender`'s next slot: the slot (seconds since the epoch, database clock) and
        the seconds until it comes."""
        interval = self.interval
        taken = await self.db.write_fn(lambda c: rate_buckets.next_slot(c, sender, interval))
        if time.monotonic() - self._swept_at >= SWEEP_EVERY:
            await self.sweep()
        return taken

    async def reserve(self, sender: str) -> float:
        _, delay = await self.slot(sender)
        return max(0.0, delay)

    async def sweep(self) -> int:
        """Delete the slots that have passed (they mean the same as no row)."""
        self._swept_at = time.monotonic()
        return await self.db.write_fn(rate_buckets.sweep_slots)


def pacer_for(db: Engine, rate: float) -> Pacer | SharedPacer:
    """The pacer for this engine: in the database on PostgreSQL, in memory on SQLite (and
    whenever pacing is off: no database trip for nothing)."""
    if db.dialect == "postgres" and rate > 0:
        return SharedPacer(db, rate)
    return Pacer(rate)
