"""Per-sender pacing of sends: at most `rate` sends a second from one sender (a number, an
address), spread evenly (a leaky bucket): each send waits for its slot.

Where the slots live depends on the engine, chosen once when the dispatcher is built
(`pacer_for`): on SQLite, in memory (one process per database file); on PostgreSQL, in the
database (`gateway.store.rate_buckets.next_slot`), so that N instances sending from one
number space its sends by the interval instead of sending N times its pace.

The dispatcher books the slots of a whole claim at once (`book`): per sender one take of as
many consecutive slots as the claim has sends from it — on PostgreSQL one statement per
sender in one write for the claim, instead of a write per send. A booked slot a send does
not use (it went to another provider) is simply lost: sends are spaced a little more, never
less.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

from gateway.store import rate_buckets
from gateway.store.engine import Connection, Engine

# how often an instance deletes the pacing slots that have passed
SWEEP_EVERY = 300.0


class _Pacing:
    """What both pacers share: `wait` sleeps until the slot `reserve` took, `book` takes the
    slots of a whole claim; both through the pacer's own `take`."""

    interval: float

    async def reserve(self, sender: str) -> float:
        """Take `sender`'s next slot; returns the seconds until it comes (0: now)."""
        return max(0.0, (await self.take({sender: 1}))[sender])

    async def take(self, counts: dict[str, int]) -> dict[str, float]:
        """Take `counts[sender]` consecutive slots of each sender: the seconds until the
        first of each comes."""
        raise NotImplementedError

    async def wait(self, sender: str) -> None:
        if not self.interval:
            return
        delay = await self.reserve(sender)
        if delay > 0:
            await asyncio.sleep(delay)

    async def book(self, senders: Sequence[str]) -> list[float]:
        """A slot for each send of a claim (`senders[i]` sends the i-th): the monotonic
        instant each may go, in order per sender."""
        if not self.interval or not senders:
            return [time.monotonic()] * len(senders)
        firsts = await self.take(dict(Counter(senders)))
        now = time.monotonic()  # after the take: a slot is never early by its round trip
        taken: dict[str, int] = {}
        booked = []
        for sender in senders:
            n = taken.get(sender, 0)
            taken[sender] = n + 1
            booked.append(now + max(0.0, firsts[sender] + n * self.interval))
        return booked

    @staticmethod
    async def wait_until(instant: float) -> None:
        """Sleep until the monotonic `instant` a booked slot comes."""
        delay = instant - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class Pacer(_Pacing):
    """Slots in this process's memory."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next: dict[str, float] = {}

    async def take(self, counts: dict[str, int]) -> dict[str, float]:
        now = time.monotonic()
        firsts = {}
        for sender, count in counts.items():
            slot = max(now, self._next.get(sender, now))
            self._next[sender] = slot + count * self.interval
            firsts[sender] = slot - now
        return firsts


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
        await self._sweep_when_due()
        return taken

    async def take(self, counts: dict[str, int]) -> dict[str, float]:
        interval = self.interval

        def take_all(conn: Connection) -> dict[str, float]:
            return {
                sender: rate_buckets.next_slot(conn, sender, interval, count)[1]
                for sender, count in sorted(counts.items())  # one lock order for everyone
            }

        firsts = await self.db.write_fn(take_all)
        await self._sweep_when_due()
        return firsts

    async def _sweep_when_due(self) -> None:
        if time.monotonic() - self._swept_at >= SWEEP_EVERY:
            await self.sweep()

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
