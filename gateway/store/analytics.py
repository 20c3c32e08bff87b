"""SQL for analytics: message and call aggregates, a period's messages day by day, one
contact's timeline, money-losing items, and the operator's per-tenant totals.

Call aggregates over a period read [prev_start, end) in one pass and label each row `current`
or `previous` by its created_at. Message aggregates, on a table a hundred times larger, read
each period as its own index range instead: the label is then a constant, not a GROUP BY
that sorts every row. The aggregates over channel_messages_log name only columns of
`ix_messages_analytics` (0004), so SQLite answers them from that index without touching the
rows, whose bodies can be large; rows are counted with COUNT(*) or COUNT(created_at), never
COUNT(id), for that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store.dialect import count_where, seconds_between, total
from gateway.store.engine import Dialect, Engine, Row
from gateway.store.tenant_scope import TenantDB

DELIVERED = "('delivered', 'read')"
FAILED = "('failed', 'undelivered')"
IN_FLIGHT = "('queued', 'sending', 'sent')"
FALLBACKS = "('fallback_dial', 'fallback_apology')"
_CANCELED = "status = 'canceled'"
_PERIOD = "CASE WHEN created_at >= :start THEN 'current' ELSE 'previous' END AS period"
_WINDOW = "tenant_id = :tenant_id AND created_at >= :prev_start AND created_at < :end"


@dataclass(frozen=True)
class Window:
    """[prev_start, start) is the previous period, [start, end) the current one (ISO text)."""

    prev_start: str
    start: str
    end: str

    def params(self) -> dict[str, Any]:
        return {"prev_start": self.prev_start, "start": self.start, "end": self.end}


def _message_filters(filters: dict[str, str | None]) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    for column in ("channel", "message_type", "agent"):
        if filters.get(column) is not None:
            clauses.append(f" AND {column} = :f_{column}")
            params[f"f_{column}"] = filters[column]
    return "".join(clauses), params


def _per_period(columns: str, where: str, group_by: str = "") -> str:
    # One aggregate per period, each over its own range of the covering index, rather than
    # one pass over both grouped by a CASE on created_at: that GROUP BY sorts every row of
    # the two periods, which cost about half of the time on the largest tenant (bench/).
    return " UNION ALL ".join(
        f"SELECT '{name}' AS period, {columns} FROM channel_messages_log "
        f"WHERE direction = 'outbound' AND tenant_id = :tenant_id AND {bounds}{where}{group_by}"
        for name, bounds in (
            ("current", "created_at >= :start AND created_at < :end"),
            ("previous", "created_at >= :prev_start AND created_at < :start"),
        )
    )


def message_totals_sql(
    filters: dict[str, str | None], dialect: Dialect = "sqlite"
) -> tuple[str, dict[str, Any]]:
    where, params = _message_filters(filters)
    delivered = f"status IN {DELIVERED}"
    seconds = seconds_between(dialect, "sent_at", "delivered_at")
    delivery = f"CASE WHEN {delivered} THEN {seconds} END"
    columns = (
        "COUNT(*) AS total, "
        f"{count_where(delivered)} AS delivered, "
        f"{count_where(f'status IN {FAILED}')} AS failed, "
        f"{count_where(f'status IN {IN_FLIGHT}')} AS in_flight, "
        f"{count_where(_CANCELED)} AS canceled, "
        f"{total('billed_cost')} AS revenue, COUNT(billed_cost) AS with_revenue, "
        f"{total('provider_cost')} AS cost, COUNT(provider_cost) AS with_cost, "
        f"{total('margin')} AS margin, COUNT(margin) AS with_margin, "
        # the revenue a margin is known for: margin % compares like with like
        f"{total('CASE WHEN margin IS NOT NULL THEN billed_cost END')} AS priced_revenue, "
        f"{total('num_segments')} AS segments, "
        f"{total('character_count')} AS characters, "
        "COUNT(character_count) AS with_characters, "
        "MIN(character_count) AS min_characters, MAX(character_count) AS max_characters, "
        "COUNT(DISTINCT to_address) AS unique_recipients, "
        "COUNT(call_id) AS linked_to_calls, "
        f"{total(delivery)} AS delivery_seconds, COUNT({delivery}) AS with_delivery_time"
    )
    # an aggregate without GROUP BY answers a row for an empty period too: drop it, as a
    # period without messages has no group
    return f"SELECT * FROM ({_per_period(columns, where)}) AS periods WHERE total > 0", params


def message_breakdown_sql(filters: dict[str, str | None]) -> tuple[str, dict[str, Any]]:
    where, params = _message_filters(filters)
    columns = (
        "channel, message_type, COUNT(*) AS count, "
        f"{count_where(f'status IN {DELIVERED}')} AS delivered, "
        f"{total('billed_cost')} AS revenue, {total('provider_cost')} AS cost, "
        f"{total('margin')} AS margin"
    )
    return _per_period(columns, where, " GROUP BY channel, message_type"), params


async def message_totals(
    tdb: TenantDB, window: Window, filters: dict[str, str | None]
) -> list[Row]:
    sql, params = message_totals_sql(filters, tdb.dialect)
    return await tdb.fetchall(sql, {**params, **window.params()})


async def message_breakdown(
    tdb: TenantDB, window: Window, filters: dict[str, str | None]
) -> list[Row]:
    sql, params = message_breakdown_sql(filters)
    return await tdb.fetchall(sql, {**params, **window.params()})


CALL_TOTALS_SQL = (
    f"SELECT {_PERIOD}, COUNT(*) AS calls, "
    "SUM(CASE WHEN outcome = 'bridged' THEN 1 ELSE 0 END) AS bridged, "
    f"SUM(CASE WHEN outcome IN {FALLBACKS} THEN 1 ELSE 0 END) AS fallbacks, "
    f"{total('duration_seconds')} AS duration, COUNT(duration_seconds) AS with_duration, "
    f"{total('provider_cost')} AS cost, {total('billed_cost')} AS revenue, "
    f"{total('margin')} AS margin FROM call_logs WHERE {_WINDOW} GROUP BY period"
)

# what the assistants produced during calls, counted by creation time
CALL_OUTCOMES_SQL = (
    f"SELECT 'appointments' AS kind, {_PERIOD}, COUNT(*) AS n FROM rendez_vous "
    f"WHERE {_WINDOW} AND (source = 'voice' OR call_id IS NOT NULL) GROUP BY period "
    f"UNION ALL SELECT 'prospects', {_PERIOD}, COUNT(*) FROM qualified_prospects "
    f"WHERE {_WINDOW} GROUP BY period "
    f"UNION ALL SELECT 'tickets', {_PERIOD}, COUNT(*) FROM tickets "
    f"WHERE {_WINDOW} GROUP BY period"
)


async def call_totals(tdb: TenantDB, window: Window) -> list[Row]:
    return await tdb.fetchall(CALL_TOTALS_SQL, window.params())


async def call_outcomes(tdb: TenantDB, window: Window) -> list[Row]:
    return await tdb.fetchall(CALL_OUTCOMES_SQL, window.params())


# -- a period day by day ------------------------------------------------------------------

# each day binds its lower bound (and the last day the end): D1 allows 100 bound parameters
DAYS_PER_STATEMENT = 90


def message_days_sql(days: int, first: int = 0) -> str:
    """Outbound messages per day, day i being [:b{i}, :b{i+1}), numbered from `first`. One
    arm per day, each a range of the covering index: unlike a GROUP BY over the period, no
    row goes through a sort. Binds :tenant_id and :b0 … :b{days}."""
    delivered = total(f"CASE WHEN status IN {DELIVERED} THEN 1 ELSE 0 END")
    failed = total(f"CASE WHEN status IN {FAILED} THEN 1 ELSE 0 END")
    return " UNION ALL ".join(
        f"SELECT {first + i} AS day, COUNT(*) AS total, "
        f"{delivered} AS delivered, {failed} AS failed "
        "FROM channel_messages_log WHERE direction = 'outbound' AND tenant_id = :tenant_id "
        f"AND created_at >= :b{i} AND created_at < :b{i + 1}"
        for i in range(days)
    )


async def message_days(tdb: TenantDB, bounds: Sequence[str]) -> list[Row]:
    """One row per day between consecutive `bounds` (ISO text, ascending), in order."""
    rows: list[Row] = []
    for first in range(0, len(bounds) - 1, DAYS_PER_STATEMENT):
        chunk = bounds[first : first + DAYS_PER_STATEMENT + 1]
        params = {f"b{i}": bound for i, bound in enumerate(chunk)}
        rows += await tdb.fetchall(message_days_sql(len(chunk) - 1, first), params)
    return rows


# -- one contact's timeline ---------------------------------------------------------------


_TIMELINE_CALL = (
    "SELECT 'call' AS type, id, created_at AS time, 'phone' AS channel, direction, "
    "COALESCE(outcome, status) AS status, billed_cost AS cost, duration_seconds, "
    "NULL AS subject, NULL AS body FROM call_logs WHERE tenant_id = :tenant_id"
)
_TIMELINE_MESSAGE = (
    "SELECT 'message' AS type, id, created_at AS time, channel, direction, status, "
    "billed_cost AS cost, CAST(NULL AS DOUBLE PRECISION) AS duration_seconds, "
    "substr(subject, 1, 500) AS subject, "
    "substr(body, 1, 500) AS body FROM channel_messages_log WHERE tenant_id = :tenant_id"
)


def timeline_sql(contacts: int, *, calls: bool, cursor: bool) -> str:
    """Binds :c0… (the contact's stored forms), :limit, and with a cursor :b_time and :b_id."""
    after = ""
    if cursor:
        # the first bound gives the index a range; the second breaks ties on the same time
        after = " AND created_at <= :b_time AND (created_at < :b_time OR id < :b_id)"
    columns = [(_TIMELINE_CALL, "from_number"), (_TIMELINE_CALL, "to_number")] if calls else []
    columns += [(_TIMELINE_MESSAGE, "to_address"), (_TIMELINE_MESSAGE, "from_address")]
    # One arm per (indexed column, value) with an equality, rather than an OR or an IN list,
    # which SQLite answers by walking the tenant's whole history in time order. UNION drops
    # the rows two arms both found (a message from and to the same address).
    arms = [
        f"SELECT * FROM ({select} AND {column} = :c{i}{after} "
        "ORDER BY created_at DESC, id DESC LIMIT :limit) AS arm"
        for i in range(contacts)
        for select, column in columns
    ]
    return " UNION ".join(arms) + " ORDER BY time DESC, id DESC LIMIT :limit"


async def timeline(
    tdb: TenantDB,
    contacts: Sequence[str],
    limit: int,
    before: tuple[str, str] | None,
    *,
    calls: bool = True,
) -> list[Row]:
    """Calls and messages to or from any of `contacts`, newest first, (time, id) descending;
    `before` is the (time, id) of the last item already seen."""
    params: dict[str, Any] = {f"c{i}": contact for i, contact in enumerate(contacts)}
    params["limit"] = limit
    if before is not None:
        params.update(b_time=before[0], b_id=before[1])
    sql = timeline_sql(len(contacts), calls=calls, cursor=before is not None)
    return await tdb.fetchall(sql, params)


# -- profitability --------------------------------------------------------------------------

_PERIOD_ONLY = "tenant_id = :tenant_id AND created_at >= :start AND created_at < :end"
UNPROFITABLE_SQL = (
    "SELECT * FROM (SELECT 'message' AS type, id, created_at AS time, channel, "
    "to_address AS contact, billed_cost AS revenue, provider_cost AS cost, margin, "
    "num_segments, CAST(NULL AS DOUBLE PRECISION) AS duration_seconds FROM channel_messages_log "
    f"WHERE direction = 'outbound' AND {_PERIOD_ONLY} AND margin < 0 "
    "ORDER BY margin, created_at DESC, id LIMIT :limit) AS losing_messages "
    "UNION ALL SELECT * FROM (SELECT 'call', id, created_at, 'phone', "
    "CASE WHEN direction = 'outbound' THEN to_number ELSE from_number END, "
    "billed_cost, provider_cost, margin, CAST(NULL AS BIGINT), duration_seconds FROM call_logs "
    f"WHERE {_PERIOD_ONLY} AND margin < 0 ORDER BY margin, created_at DESC, id LIMIT :limit) "
    "AS losing_calls ORDER BY margin, time DESC, id LIMIT :limit"
)

LOSS_SHARE_SQL = (
    "SELECT channel, COUNT(margin) AS priced, "
    "SUM(CASE WHEN margin < 0 THEN 1 ELSE 0 END) AS losing, "
    f"{total('CASE WHEN margin < 0 THEN margin END')} AS loss FROM channel_messages_log "
    f"WHERE direction = 'outbound' AND {_PERIOD_ONLY} GROUP BY channel "
    "UNION ALL SELECT 'phone', COUNT(margin), "
    "SUM(CASE WHEN margin < 0 THEN 1 ELSE 0 END), "
    f"{total('CASE WHEN margin < 0 THEN margin END')} FROM call_logs WHERE {_PERIOD_ONLY}"
)


async def unprofitable(tdb: TenantDB, start: str, end: str, limit: int) -> list[Row]:
    return await tdb.fetchall(UNPROFITABLE_SQL, {"start": start, "end": end, "limit": limit})


async def loss_share(tdb: TenantDB, start: str, end: str) -> list[Row]:
    return await tdb.fetchall(LOSS_SHARE_SQL, {"start": start, "end": end})


# -- operator: every tenant -------------------------------------------------------------------

# tenants drive the join so each tenant's rows are read through its (tenant_id, created_at)
# range; a tenant without activity still gets its row of zeros
OPERATOR_MESSAGES_SQL = (
    "SELECT t.id AS tenant_id, t.slug, t.name, COUNT(m.created_at) AS messages, "
    f"{total('m.billed_cost')} AS revenue, {total('m.provider_cost')} AS cost, "
    f"{total('m.margin')} AS margin FROM tenants t LEFT JOIN channel_messages_log m "
    "ON m.tenant_id = t.id AND m.direction = 'outbound' "
    "AND m.created_at >= :start AND m.created_at < :end GROUP BY t.id"
)
OPERATOR_CALLS_SQL = (
    "SELECT t.id AS tenant_id, COUNT(c.created_at) AS calls, "
    f"{total('c.billed_cost')} AS call_revenue, {total('c.provider_cost')} AS call_cost, "
    f"{total('c.margin')} AS call_margin FROM tenants t LEFT JOIN call_logs c "
    "ON c.tenant_id = t.id AND c.created_at >= :start AND c.created_at < :end GROUP BY t.id"
)


async def operator_totals(db: Engine, start: str, end: str) -> tuple[list[Row], list[Row]]:
    params = {"start": start, "end": end}
    messages = await db.fetchall(OPERATOR_MESSAGES_SQL, params)
    calls = await db.fetchall(OPERATOR_CALLS_SQL, params)
    return messages, calls
