"""Token buckets and pacing slots in the database, shared by every instance on it.

A take is one upsert: the row of (limiter, key) is created full minus the token taken, or
refilled from its stored `tokens` and `stamp` and decremented, all in one
`INSERT … ON CONFLICT DO UPDATE … WHERE refilled >= 1 RETURNING`. Two instances taking from
one bucket queue on its row lock, so neither reads a count the other is changing. A refused
take updates nothing (the `WHERE`), yet PostgreSQL locks the row all the same: the
Retry-After read that follows in the same transaction sees the row as it is.

The clock is the database's (`clock_timestamp()`, seconds since the epoch), never the
caller's: instances run on machines whose clocks differ, and a bucket refilled by an
instance whose clock runs ahead would hand out the skew as tokens. `clock_timestamp()`
rather than `now()`: it is the instant the statement runs, not the start of its
transaction. A statement that waited for a row lock may read an instant earlier than the
stamp the lock holder wrote; elapsed time never goes below zero, and the stamp never moves
back.

A pacing slot is one upsert too: `next_slot = greatest(next_slot, now) + interval`,
returning the slot handed out and how long until it comes (on the database clock).

The store also runs on SQLite (julianday clock, `max`/`min`), where the gateway does not use
it: one SQLite file serves one process, which keeps its buckets in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.store.engine import Connection, Dialect

# rows swept by one statement: a sweep is a background chore, never a long lock
SWEEP_BATCH = 1000


@dataclass(frozen=True)
class Claim:
    """One token wanted from the bucket `key` of limiter `name` (`limit` per `period` s)."""

    name: str
    key: str
    limit: int
    period: float

    @property
    def rate(self) -> float:
        return self.limit / self.period


def _clock(dialect: Dialect) -> str:
    """The database's current instant, in seconds since the Unix epoch."""
    if dialect == "sqlite":
        return "((julianday('now') - 2440587.5) * 86400.0)"
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


def _greatest(dialect: Dialect) -> str:
    return "max" if dialect == "sqlite" else "GREATEST"


def _least(dialect: Dialect) -> str:
    return "min" if dialect == "sqlite" else "LEAST"


def _take_sql(dialect: Dialect) -> str:
    greatest, least = _greatest(dialect), _least(dialect)
    stamp = f"{greatest}(b.stamp, excluded.stamp)"
    elapsed = f"{greatest}(0.0, excluded.stamp - b.stamp)"
    refilled = f"{least}(:limit, b.tokens + {elapsed} * :rate)"
    # `WHERE true`: SQLite reads `ON CONFLICT` after a bare `FROM clock` as a join clause
    return f"""
WITH clock AS (SELECT {_clock(dialect)} AS now)
INSERT INTO rate_buckets AS b (name, key, tokens, stamp, full_at)
SELECT :name, :key, :limit - 1.0, now, now + 1.0 / :rate FROM clock WHERE true
ON CONFLICT (name, key) DO UPDATE SET
    tokens = {refilled} - 1.0,
    stamp = {stamp},
    full_at = {stamp} + (:limit - {refilled} + 1.0) / :rate
WHERE {refilled} >= 1.0
RETURNING tokens"""


def _wait_sql(dialect: Dialect) -> str:
    greatest, least = _greatest(dialect), _least(dialect)
    refilled = f"{least}(:limit, tokens + {greatest}(0.0, {_clock(dialect)} - stamp) * :rate)"
    return f"""
SELECT (1.0 - {refilled}) / :rate AS wait FROM rate_buckets WHERE name = :name AND key = :key"""


_REFUND = """
UPDATE rate_buckets SET tokens = tokens + 1.0, full_at = full_at - 1.0 / :rate
WHERE name = :name AND key = :key"""


def _params(claim: Claim) -> dict[str, object]:
    return {
        "name": claim.name,
        "key": claim.key,
        "limit": float(claim.limit),
        "rate": claim.rate,
    }


def _take(conn: Connection, claim: Claim) -> float:
    """Take one token: 0.0 when taken, else the seconds until one is there (nothing taken)."""
    params = _params(claim)
    if conn.execute(_take_sql(conn.dialect), params).fetchone() is not None:
        return 0.0
    row = conn.execute(_wait_sql(conn.dialect), params).fetchone()
    return max(float(row["wait"]), 1e-6) if row is not None else 1e-6


def take_all(conn: Connection, claims: Sequence[Claim]) -> list[float]:
    """One token from each claimed bucket, or none at all; returns, in the order given, the
    seconds until each bucket has a token (0.0: it had one). Call in one write transaction.

    Buckets are taken in one order (name, key) whatever the caller's, so that two requests
    claiming the same two buckets never wait for each other's locks (no deadlock). When one is
    refused, the tokens taken from the others are given back before the transaction commits:
    no other transaction saw them gone, their rows being locked until then."""
    order = sorted(range(len(claims)), key=lambda i: (claims[i].name, claims[i].key))
    waits = [0.0] * len(claims)
    for i in order:
        waits[i] = _take(conn, claims[i])
    if any(waits):
        for claim, wait in zip(claims, waits, strict=True):
            if not wait:
                conn.execute(_REFUND, _params(claim))
    return waits


def next_slot(
    conn: Connection, sender: str, interval: float, count: int = 1
) -> tuple[float, float]:
    """The next send slot of `sender`, one `interval` after the one before it (or now): the
    slot (seconds since the epoch, database clock) and the seconds until it comes.

    `count` > 1 takes that many consecutive slots at once (one statement for a claim's
    sends from one sender): the first is returned, the others follow it `interval` apart."""
    greatest, clock = _greatest(conn.dialect), _clock(conn.dialect)
    row = conn.execute(
        f"""
WITH clock AS (SELECT {clock} AS now)
INSERT INTO pacing_slots AS p (sender, next_slot)
SELECT :sender, now + :span FROM clock WHERE true
ON CONFLICT (sender) DO UPDATE
    SET next_slot = {greatest}(p.next_slot, excluded.next_slot - :span) + :span
RETURNING next_slot - :span AS slot, next_slot - :span - {clock} AS delay""",
        {"sender": sender, "span": float(interval) * max(1, count)},
    ).fetchone()
    assert row is not None  # an upsert always returns its row
    return float(row["slot"]), float(row["delay"])


def sweep_buckets(conn: Connection, name: str | None = None) -> int:
    """Delete the buckets (of limiter `name`, or all) that are full again: rows that mean
    the same as no row. Returns how many went."""
    of_name = "" if name is None else " AND name = :name"
    return _sweep(
        conn, "rate_buckets", "name, key", f"full_at < {_clock(conn.dialect)}{of_name}", name
    )


def sweep_slots(conn: Connection) -> int:
    """Delete the pacing slots that have passed; returns how many."""
    return _sweep(conn, "pacing_slots", "sender", f"next_slot < {_clock(conn.dialect)}", None)


def _sweep(conn: Connection, table: str, key: str, condition: str, name: str | None) -> int:
    """On PostgreSQL a batch at a time, skipping rows another transaction holds (swept next
    time): a sweep never waits for a take, nor two instances' sweeps for each other."""
    params = {"name": name, "batch": SWEEP_BATCH}
    if conn.dialect == "sqlite":
        return conn.execute(f"DELETE FROM {table} WHERE {condition}", params).rowcount
    sql = f"""
DELETE FROM {table} WHERE ({key}) IN (
    SELECT {key} FROM {table} WHERE {condition} LIMIT :batch FOR UPDATE SKIP LOCKED)"""
    return conn.execute(sql, params).rowcount
