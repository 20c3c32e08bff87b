"""SQL for the stored daily exchange rates (operator scope): one row per (day, currency).

The row's insert claims the day's fetch (a primary key a second instance's insert of the same
day conflicts with); a failed fetch leaves the rate NULL and may be claimed again once its
`fetched_at` is older than the retry interval, by a conditional update only one writer wins.
Both hold with any number of writers on either engine."""

from __future__ import annotations

from gateway.store.engine import Connection, Row


def for_day(conn: Connection, day: str, currency: str) -> Row | None:
    row: Row | None = conn.execute(
        "SELECT * FROM exchange_rates WHERE day = ? AND currency = ?", (day, currency)
    ).fetchone()
    return row


def latest_since(conn: Connection, currency: str, since_day: str, before_day: str) -> Row | None:
    """The most recent stored rate of a day in [since_day, before_day)."""
    row: Row | None = conn.execute(
        "SELECT * FROM exchange_rates WHERE currency = ? AND eur_per_unit IS NOT NULL "
        "AND day >= ? AND day < ? ORDER BY day DESC LIMIT 1",
        (currency, since_day, before_day),
    ).fetchone()
    return row


def claim(conn: Connection, day: str, currency: str, now: str, retry_before: str) -> bool:
    """True when this caller now owns the fetch of `day`: the first to insert the day, or the
    one whose update took over a claim without a rate last tried before `retry_before`."""
    inserted = conn.execute(
        "INSERT INTO exchange_rates (day, currency, eur_per_unit, source, fetched_at) "
        "VALUES (?, ?, NULL, 'fetching', ?) ON CONFLICT (day, currency) DO NOTHING",
        (day, currency, now),
    )
    if inserted.rowcount == 1:
        return True
    retaken = conn.execute(
        "UPDATE exchange_rates SET source = 'fetching', fetched_at = ? "
        "WHERE day = ? AND currency = ? AND eur_per_unit IS NULL AND fetched_at < ?",
        (now, day, currency, retry_before),
    )
    return retaken.rowcount == 1


def record(
    conn: Connection, day: str, currency: str, eur_per_unit: float | None, source: str, now: str
) -> None:
    conn.execute(
        "UPDATE exchange_rates SET eur_per_unit = ?, source = ?, fetched_at = ? "
        "WHERE day = ? AND currency = ?",
        (eur_per_unit, source[:300], now, day, currency),
    )
