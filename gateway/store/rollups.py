"""SQL of the message rollups (database/migrations/0013): the figures of outbound messages per
tenant, UTC hour or day, channel and message type, how they are computed from the messages,
and the same figures read straight from the messages for what the rollups do not cover.

Statements about one tenant bind `:tenant_id` and run on a `ScopedConnection`
(gateway/store/tenant_scope.py), which fills it in.

Every figure has three spellings: its aggregate over messages (`live`), its column in a
rollup row, and how rows of it combine (`fold`: sum, min or max). A figure over a period is
then the fold of rollup rows and of live aggregates over the rest of the period, and it is
the same number the one aggregate over the whole period gives: counts and integer sums are
exact, money sums are sums of the same floats in another order (the analytics round them
to 4 decimals from exact decimals), delivery times are summed in whole milliseconds.

Distinct recipients do not add up, so each row also keeps its recipients as a set of 64-bit
hashes (`recipient_hash`), packed sorted into a BLOB; distinct recipients over a period are
the size of the union of its rows' sets and of the live part's addresses, hashed the same
way. That count is exact unless two distinct addresses share a hash: with n recipients the
chance of any such pair is below n² / 2⁶⁵ (under one in 30 million for a million).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Literal

from gateway.store.dialect import count_where, milliseconds_between, total
from gateway.store.engine import Connection, Dialect, Row
from gateway.store.tenant_scope import ScopedConnection

Fold = Literal["sum", "min", "max"]
Table = Literal["message_hour_rollups", "message_day_rollups"]
KEY = {"message_hour_rollups": "hour", "message_day_rollups": "day"}
KEY_LENGTH = {"hour": 13, "day": 10}

DELIVERED = "('delivered', 'read')"
FAILED = "('failed', 'undelivered')"
IN_FLIGHT = "('queued', 'sending', 'sent')"
CANCELED = "status = 'canceled'"

# each scalar a bound pair: D1 allows 100 bound parameters per statement
RANGES_PER_STATEMENT = 45


@dataclass(frozen=True)
class Figure:
    name: str
    fold: Fold
    money: bool = False

    def live(self, dialect: Dialect) -> str:
        return _live(self.name, dialect)


def _live(name: str, dialect: Dialect) -> str:
    delivered = f"status IN {DELIVERED}"
    milliseconds = milliseconds_between(dialect, "sent_at", "delivered_at")
    delivery = f"CASE WHEN {delivered} THEN {milliseconds} END"
    return {
        "total": "COUNT(*)",
        "delivered": f"COALESCE({count_where(delivered)}, 0)",
        "failed": f"COALESCE({count_where(f'status IN {FAILED}')}, 0)",
        "in_flight": f"COALESCE({count_where(f'status IN {IN_FLIGHT}')}, 0)",
        "canceled": f"COALESCE({count_where(CANCELED)}, 0)",
        "revenue": total("billed_cost"),
        "with_revenue": "COUNT(billed_cost)",
        "cost": total("provider_cost"),
        "with_cost": "COUNT(provider_cost)",
        "margin": total("margin"),
        "with_margin": "COUNT(margin)",
        # the revenue a margin is known for: margin % compares like with like
        "priced_revenue": total("CASE WHEN margin IS NOT NULL THEN billed_cost END"),
        "segments": "COALESCE(SUM(num_segments), 0)",
        "characters": "COALESCE(SUM(character_count), 0)",
        "with_characters": "COUNT(character_count)",
        "min_characters": "MIN(character_count)",
        "max_characters": "MAX(character_count)",
        "linked_to_calls": "COUNT(call_id)",
        "delivery_ms": f"COALESCE(SUM({delivery}), 0)",
        "with_delivery_time": f"COUNT({delivery})",
        "losing": f"COALESCE({count_where('margin < 0')}, 0)",
        "loss": total("CASE WHEN margin < 0 THEN margin END"),
    }[name]


_MONEY = {"revenue", "cost", "margin", "priced_revenue", "loss"}
_FOLDS: dict[str, Fold] = {"min_characters": "min", "max_characters": "max"}
FIGURES: tuple[Figure, ...] = tuple(
    Figure(name, _FOLDS.get(name, "sum"), name in _MONEY)
    for name in (
        "total", "delivered", "failed", "in_flight", "canceled", "revenue", "with_revenue",
        "cost", "with_cost", "margin", "with_margin", "priced_revenue", "segments",
        "characters", "with_characters", "min_characters", "max_characters",
        "linked_to_calls", "delivery_ms", "with_delivery_time", "losing", "loss",
    )
)  # fmt: skip
BY_NAME = {figure.name: figure for figure in FIGURES}
_COLUMNS = ", ".join(figure.name for figure in FIGURES)


# -- recipients -----------------------------------------------------------------------------


def recipient_hash(address: str) -> int:
    """A stable 64-bit hash of an address as stored (a signed integer)."""
    digest = blake2b(address.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def pack(hashes: Iterable[int]) -> bytes:
    packed = array("q", sorted(hashes))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack(blob: bytes | memoryview) -> array[int]:
    unpacked = array("q")
    unpacked.frombytes(bytes(blob))
    if sys.byteorder != "little":
        unpacked.byteswap()
    return unpacked


# -- filters and ranges ---------------------------------------------------------------------

# the dimensions rollup rows are split by; a filter on anything else is read live
DIMENSIONS = ("channel", "message_type")


def _filters(filters: Mapping[str, str | None]) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    for column in ("channel", "message_type", "agent"):
        if filters.get(column) is not None:
            clauses.append(f" AND {column} = :f_{column}")
            params[f"f_{column}"] = filters[column]
    return "".join(clauses), params


def _chunks(ranges: Sequence[tuple[str, str]]) -> Iterable[Sequence[tuple[str, str]]]:
    for first in range(0, len(ranges), RANGES_PER_STATEMENT):
        yield ranges[first : first + RANGES_PER_STATEMENT]


def _range_params(ranges: Sequence[tuple[str, str]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, (low, high) in enumerate(ranges):
        params[f"lo{i}"], params[f"hi{i}"] = low, high
    return params


def _group(group_by: Sequence[str]) -> tuple[str, str]:
    """The selected columns and the GROUP BY of `group_by` (columns, or `expression AS name`)."""
    if not group_by:
        return "", ""
    grouped = ", ".join(column.split(" AS ")[0] for column in group_by)
    return ", ".join(group_by) + ", ", " GROUP BY " + grouped


# -- live: from the messages ----------------------------------------------------------------


def live_sql(
    n: int,
    figures: Sequence[str],
    filters: Mapping[str, str | None],
    dialect: Dialect,
    group_by: Sequence[str] = (),
) -> tuple[str, dict[str, Any]]:
    """The figures of outbound messages created in each of `n` ranges [:lo{i}, :hi{i}), one
    arm each (labelled `arm`), each a range of the covering index."""
    where, params = _filters(filters)
    columns = ", ".join(f"{_live(name, dialect)} AS {name}" for name in figures)
    selected, grouped = _group(group_by)
    arms = [
        f"SELECT {i} AS arm, {selected}{columns} FROM channel_messages_log "
        "WHERE direction = 'outbound' AND tenant_id = :tenant_id "
        f"AND created_at >= :lo{i} AND created_at < :hi{i}{where}{grouped}"
        for i in range(n)
    ]
    return " UNION ALL ".join(arms), params


def live_figures(
    conn: ScopedConnection,
    ranges: Sequence[tuple[str, str]],
    figures: Sequence[str],
    filters: Mapping[str, str | None],
    group_by: Sequence[str] = (),
) -> list[tuple[int, Row]]:
    """(index of the range, row) for each range (and group) that has messages."""
    found: list[tuple[int, Row]] = []
    offset = 0
    for chunk in _chunks(ranges):
        sql, params = live_sql(len(chunk), figures, filters, conn.dialect, group_by)
        params |= _range_params(chunk)
        for row in conn.execute(sql, params).fetchall():
            if row["total"]:
                found.append((offset + row["arm"], row))
        offset += len(chunk)
    return found


def live_addresses(
    conn: ScopedConnection,
    ranges: Sequence[tuple[str, str]],
    filters: Mapping[str, str | None],
    keys: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """(index of the range, *keys, address): the distinct recipients of each range (and of
    each value of the `keys` expressions)."""
    where, filter_params = _filters(filters)
    selected = "".join(f"{key}, " for key in keys)
    found: list[tuple[Any, ...]] = []
    offset = 0
    for chunk in _chunks(ranges):
        arms = " UNION ALL ".join(
            f"SELECT DISTINCT {i} AS arm, {selected}to_address FROM channel_messages_log "
            "WHERE direction = 'outbound' AND tenant_id = :tenant_id "
            f"AND created_at >= :lo{i} AND created_at < :hi{i}{where}"
            for i in range(len(chunk))
        )
        rows = conn.execute(arms, filter_params | _range_params(chunk)).fetchall()
        found += [(offset + row[0], *row[1:]) for row in rows]
        offset += len(chunk)
    return found


# -- rolled up: from the rollup rows --------------------------------------------------------


def rolled_sql(
    table: Table,
    n: int,
    figures: Sequence[str],
    filters: Mapping[str, str | None],
    group_by: Sequence[str] = (),
) -> tuple[str, dict[str, Any]]:
    """The rows of `table` whose key (hour or day) is in each of `n` ranges [:lo{i}, :hi{i})
    (keys), folded per range (and group), one arm each (labelled `arm`)."""
    key = KEY[table]
    where, params = _filters(filters)
    selected, grouped = _group(group_by)
    columns = ", ".join(f"{BY_NAME[name].fold.upper()}({name}) AS {name}" for name in figures)
    arms = [
        f"SELECT {i} AS arm, {selected}{columns} FROM {table} WHERE tenant_id = :tenant_id "
        f"AND {key} >= :lo{i} AND {key} < :hi{i}{where}{grouped}"
        for i in range(n)
    ]
    return " UNION ALL ".join(arms), params


def rolled_figures(
    conn: ScopedConnection,
    table: Table,
    ranges: Sequence[tuple[str, str]],
    figures: Sequence[str],
    filters: Mapping[str, str | None],
    group_by: Sequence[str] = (),
) -> list[tuple[int, Row]]:
    """(index of the range, row) for each range (and group) of `rolled_sql` with rows."""
    found: list[tuple[int, Row]] = []
    offset = 0
    for chunk in _chunks(ranges):
        sql, params = rolled_sql(table, len(chunk), figures, filters, group_by)
        for row in conn.execute(sql, params | _range_params(chunk)).fetchall():
            if row["total"]:
                found.append((offset + row["arm"], row))
        offset += len(chunk)
    return found


def rolled_recipients(
    conn: ScopedConnection,
    table: Table,
    ranges: Sequence[tuple[str, str]],
    filters: Mapping[str, str | None],
) -> list[tuple[int, bytes]]:
    """(index of the range, packed recipients) of each row of `table` in the ranges."""
    key = KEY[table]
    where, params = _filters(filters)
    found: list[tuple[int, bytes]] = []
    offset = 0
    for chunk in _chunks(ranges):
        sql = " UNION ALL ".join(
            f"SELECT {i} AS arm, recipients FROM {table} WHERE tenant_id = :tenant_id "
            f"AND {key} >= :lo{i} AND {key} < :hi{i}{where}"
            for i in range(len(chunk))
        )
        rows = conn.execute(sql, params | _range_params(chunk)).fetchall()
        found += [(offset + row[0], bytes(row[1])) for row in rows]
        offset += len(chunk)
    return found


def hour_counts(
    conn: ScopedConnection, low: str, high: str, filters: Mapping[str, str | None]
) -> list[Row]:
    """total, delivered and failed of each rolled-up hour in [low, high) (hour keys)."""
    where, params = _filters(filters)
    return conn.execute(
        "SELECT hour, SUM(total) AS total, SUM(delivered) AS delivered, SUM(failed) AS failed "
        "FROM message_hour_rollups WHERE tenant_id = :tenant_id AND hour >= :low "
        f"AND hour < :high{where} GROUP BY hour",
        params | {"low": low, "high": high},
    ).fetchall()


# -- state ----------------------------------------------------------------------------------


def coverage(conn: ScopedConnection, low: str, high: str) -> tuple[str | None, list[str]]:
    """The tenant's complete_before (None: nothing rolled up yet) and its dirty hours in
    [low, high) (hour keys)."""
    row = conn.execute(
        "SELECT complete_before FROM message_rollup_state WHERE tenant_id = :tenant_id",
        {},
    ).fetchone()
    if row is None:
        return None, []
    dirty = conn.execute(
        "SELECT hour FROM message_rollup_dirty WHERE tenant_id = :tenant_id "
        "AND hour >= :low AND hour < :high ORDER BY hour",
        {"low": low, "high": high},
    ).fetchall()
    return row[0], [r[0] for r in dirty]


def states(conn: Connection) -> dict[str, str | None]:
    """Every tenant and its complete_before (None: not started)."""
    rows = conn.execute(
        "SELECT t.id, s.complete_before FROM tenants t "
        "LEFT JOIN message_rollup_state s ON s.tenant_id = t.id ORDER BY t.id"
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def dirty_hours(conn: Connection, limit: int) -> list[tuple[str, str]]:
    """(tenant_id, hour) marked dirty below the tenant's complete_before (a mark above it
    is the business of the step that gets there), by tenant and hour."""
    rows = conn.execute(
        "SELECT d.tenant_id, d.hour FROM message_rollup_dirty d "
        "JOIN message_rollup_state s ON s.tenant_id = d.tenant_id "
        "WHERE d.hour < substr(s.complete_before, 1, 13) "
        "ORDER BY d.tenant_id, d.hour LIMIT :limit",
        {"limit": limit},
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def first_message_at(conn: ScopedConnection, since: str | None) -> str | None:
    """created_at of the tenant's first outbound message at or after `since`."""
    row = conn.execute(
        "SELECT MIN(created_at) FROM channel_messages_log WHERE tenant_id = :tenant_id "
        "AND created_at >= :since AND direction = 'outbound'",
        {"since": since or ""},
    ).fetchone()
    return None if row is None else row[0]


def set_complete_before(conn: ScopedConnection, before: str, now: str) -> None:
    conn.execute(
        "INSERT INTO message_rollup_state (tenant_id, complete_before, updated_at) "
        "VALUES (:tenant_id, :before, :now) ON CONFLICT (tenant_id) DO UPDATE SET "
        "complete_before = excluded.complete_before, updated_at = excluded.updated_at",
        {"before": before, "now": now},
    )


def forget_marks_of_gone_tenants(conn: Connection) -> int:
    return conn.execute(
        "DELETE FROM message_rollup_dirty WHERE tenant_id NOT IN (SELECT id FROM tenants)"
    ).rowcount


# -- computing ------------------------------------------------------------------------------


def compute_hours(conn: ScopedConnection, ranges: Sequence[tuple[str, str]]) -> None:
    """Recompute the tenant's hour rows of `ranges` (ISO instants on the hour) from its
    messages, in the caller's write transaction: their dirty marks go first, so a change
    that lands after this statement's snapshot leaves its mark and is computed next time."""
    for low, high in ranges:
        for table in ("message_rollup_dirty", "message_hour_rollups"):
            conn.execute(
                f"DELETE FROM {table} WHERE tenant_id = :tenant_id "
                "AND hour >= :low AND hour < :high",
                {"low": low[:13], "high": high[:13]},
            )
    hour = "substr(created_at, 1, 13)"
    names = [figure.name for figure in FIGURES]
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    by_hour = (f"{hour} AS hour", *DIMENSIONS)
    for _, row in live_figures(conn, ranges, names, {}, by_hour):
        rows[(row["hour"], row["channel"], row["message_type"])] = dict(row)
    sets: dict[tuple[str, str, str], set[int]] = {key: set() for key in rows}
    for _, h, channel, message_type, address in live_addresses(
        conn, ranges, {}, (hour, *DIMENSIONS)
    ):
        sets[(h, channel, message_type)].add(recipient_hash(address))
    insert_rows(
        conn,
        "message_hour_rollups",
        [(key, row, sets[key]) for key, row in rows.items()],
    )


def insert_rows(
    conn: ScopedConnection,
    table: Table,
    rows: Iterable[tuple[tuple[str, str, str], Mapping[str, Any], set[int]]],
) -> None:
    key = KEY[table]
    marks = ", ".join(f":{figure.name}" for figure in FIGURES)
    conn.executemany(
        f"INSERT INTO {table} (tenant_id, {key}, channel, message_type, {_COLUMNS}, recipients) "
        f"VALUES (:tenant_id, :key, :channel, :message_type, {marks}, :recipients)",
        [
            {
                "key": bucket,
                "channel": channel,
                "message_type": message_type,
                "recipients": pack(hashes),
            }
            | {figure.name: row[figure.name] for figure in FIGURES}
            for (bucket, channel, message_type), row, hashes in rows
        ],
    )


def compute_days(conn: ScopedConnection, days: Sequence[str]) -> None:
    """Recompute the tenant's day rows of `days` ('YYYY-MM-DD') from its hour rows."""
    for day in days:
        conn.execute(
            "DELETE FROM message_day_rollups WHERE tenant_id = :tenant_id AND day = :day",
            {"day": day},
        )
        hours = conn.execute(
            f"SELECT channel, message_type, recipients, {_COLUMNS} FROM message_hour_rollups "
            "WHERE tenant_id = :tenant_id AND hour >= :low AND hour < :high",
            {"low": day, "high": day + "U"},  # 'T' < 'U'
        ).fetchall()
        folded: dict[tuple[str, str, str], dict[str, Any]] = {}
        sets: dict[tuple[str, str, str], set[int]] = {}
        for row in hours:
            key = (day, row["channel"], row["message_type"])
            sets.setdefault(key, set()).update(unpack(row["recipients"]))
            into = folded.setdefault(key, {})
            for figure in FIGURES:
                into[figure.name] = fold(figure, into.get(figure.name), row[figure.name])
        insert_rows(
            conn,
            "message_day_rollups",
            [(key, row, sets[key]) for key, row in folded.items()],
        )


def fold(figure: Figure, before: Any, value: Any) -> Any:
    """Two values of a figure combined (None: no value yet / no value)."""
    if before is None:
        return value
    if value is None:
        return before
    if figure.fold == "min":
        return min(before, value)
    if figure.fold == "max":
        return max(before, value)
    return before + value
