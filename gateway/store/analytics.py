"""SQL for analytics: call aggregates, one contact's timeline, money-losing items, and the
operator's per-tenant totals. The message aggregates of a tenant are in
gateway/store/rollups.py.

Call aggregates over a period read [prev_start, end) in one pass and label each row `current`
or `previous` by its created_at. The aggregates over channel_messages_log name only columns of
`ix_messages_analytics` (0004), so SQLite answers them from that index without touching the
rows, whose bodies can be large; rows are counted with COUNT(*) or COUNT(created_at), never
COUNT(id), for that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store.dialect import total
from gateway.store.engine import Engine, Row
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
# The losing messages are read through their own index (ix_messages_losing, 0013), in margin
# order, until `limit` of them fall in the period: `created_at || ''` keeps either planner
# from choosing the period's range of the covering index instead, which visits every
# message of the period and sorts the losing ones (92 to 254 ms for the largest tenant at
# a million messages, bench/RESULTS.md).
_LOSING_MESSAGES = (
    "direction = 'outbound' AND tenant_id = :tenant_id AND margin < 0 "
    "AND created_at || '' >= :start AND created_at || '' < :end"
)
UNPROFITABLE_SQL = (
    "SELECT * FROM (SELECT 'message' AS type, id, created_at AS time, channel, "
    "to_address AS contact, billed_cost AS revenue, provider_cost AS cost, margin, "
    "num_segments, CAST(NULL AS DOUBLE PRECISION) AS duration_seconds FROM channel_messages_log "
    f"WHERE {_LOSING_MESSAGES} "
    "ORDER BY margin, created_at DESC, id LIMIT :limit) AS losing_messages "
    "UNION ALL SELECT * FROM (SELECT 'call', id, created_at, 'phone', "
    "CASE WHEN direction = 'outbound' THEN to_number ELSE from_number END, "
    "billed_cost, provider_cost, margin, CAST(NULL AS BIGINT), duration_seconds FROM call_logs "
    f"WHERE {_PERIOD_ONLY} AND margin < 0 ORDER BY margin, created_at DESC, id LIMIT :limit) "
    "AS losing_calls ORDER BY margin, time DESC, id LIMIT :limit"
)

CALL_LOSS_SHARE_SQL = (
    "SELECT 'phone' AS channel, COUNT(margin) AS priced, "
    "SUM(CASE WHEN margin < 0 THEN 1 ELSE 0 END) AS losing, "
    f"{total('CASE WHEN margin < 0 THEN margin END')} AS loss FROM call_logs "
    f"WHERE {_PERIOD_ONLY}"
)


async def unprofitable(tdb: TenantDB, start: str, end: str, limit: int) -> list[Row]:
    return await tdb.fetchall(UNPROFITABLE_SQL, {"start": start, "end": end, "limit": limit})


async def call_loss_share(tdb: TenantDB, start: str, end: str) -> list[Row]:
    """The calls' part of the loss share (the messages' is read from the rollups)."""
    return await tdb.fetchall(CALL_LOSS_SHARE_SQL, {"start": start, "end": end})


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
