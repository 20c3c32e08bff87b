"""SQL for alerts (operator scope): the figures the rules read, the alerts table, the webhook
outbox and the runs of webhook failures.

The figures are read per tenant with the tenants driving the join, so each tenant's messages
are read through its (tenant_id, created_at) range of `ix_messages_analytics` (0004), whose
columns hold everything these aggregates name: SQLite never visits the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.ids import new_id
from gateway.store.analytics import FAILED
from gateway.store.dialect import count_where, total
from gateway.store.engine import Connection, Engine, Row
from gateway.store.paging import decode_cursor

OVERALL = "overall"
FINAL = "('delivered', 'read', 'failed', 'undelivered')"

_PER_TENANT = (
    "SELECT t.id AS tenant_id, t.monthly_sms_budget_eur AS budget, "
    f"{count_where(f'm.status IN {FINAL}')} AS final, "
    f"{count_where(f'm.status IN {FAILED}')} AS failed "
    "FROM tenants t LEFT JOIN channel_messages_log m ON m.tenant_id = t.id "
    "AND m.direction = 'outbound' AND m.created_at >= :day_start AND m.created_at < :now "
    "GROUP BY t.id, t.monthly_sms_budget_eur"
)
_LOSS = (
    "SELECT t.id AS tenant_id, COUNT(m.margin) AS priced, "
    f"{count_where('m.margin < 0')} AS losing "
    "FROM tenants t JOIN channel_messages_log m ON m.tenant_id = t.id "
    "AND m.direction = 'outbound' AND m.created_at >= :week_start AND m.created_at < :now "
    "GROUP BY t.id"
)
_MONTH_SMS = (
    f"SELECT t.id AS tenant_id, {total('m.billed_cost')} AS billed "
    "FROM tenants t JOIN channel_messages_log m ON m.tenant_id = t.id "
    "AND m.direction = 'outbound' AND m.channel = 'sms' "
    "AND m.created_at >= :month_start AND m.created_at < :now "
    "WHERE t.monthly_sms_budget_eur IS NOT NULL GROUP BY t.id"
)
# the first five characters of an E.164 number ('+' and four digits) hold its calling code
# and, in the +1 zone, its area code: the services group them into destinations
_DESTINATIONS = (
    "SELECT t.id AS tenant_id, substr(m.to_address, 1, 5) AS prefix, COUNT(*) AS messages, "
    f"{total('m.provider_cost')} AS cost, {total('COALESCE(m.num_segments, 1)')} AS segments "
    "FROM tenants t JOIN channel_messages_log m ON m.tenant_id = t.id "
    "AND m.direction = 'outbound' AND m.channel = 'sms' AND m.provider_cost IS NOT NULL "
    "AND m.created_at >= :day_start AND m.created_at < :now "
    "GROUP BY t.id, substr(m.to_address, 1, 5)"
)


@dataclass(frozen=True)
class Figures:
    """What the rules read, one list of rows per aggregate."""

    per_tenant: list[Row]
    loss: list[Row]
    month_sms: list[Row]
    destinations: list[Row]
    webhooks: list[Row]


def read_figures(conn: Connection, bounds: dict[str, str]) -> Figures:
    """`bounds`: now, day_start, week_start, month_start (ISO-8601 UTC)."""

    def rows(sql: str, names: Iterable[str]) -> list[Row]:
        return conn.execute(sql, {name: bounds[name] for name in names}).fetchall()

    return Figures(
        per_tenant=rows(_PER_TENANT, ("day_start", "now")),
        loss=rows(_LOSS, ("week_start", "now")),
        month_sms=rows(_MONTH_SMS, ("month_start", "now")),
        destinations=rows(_DESTINATIONS, ("day_start", "now")),
        webhooks=conn.execute(
            "SELECT source, consecutive_failures, last_reason FROM webhook_health "
            "WHERE consecutive_failures > 0"
        ).fetchall(),
    )


# -- alerts ---------------------------------------------------------------------------------

ALERT_COLUMNS = (
    "id, tenant_id, rule, subject, value, threshold, since, last_seen, resolved_at, notification"
)


def active_alerts(conn: Connection) -> list[Row]:
    return conn.execute(
        f"SELECT scope, {ALERT_COLUMNS} FROM alerts WHERE resolved_at IS NULL"
    ).fetchall()


def open_alert(
    conn: Connection,
    scope: str,
    rule: str,
    subject: str,
    value: float,
    threshold: float,
    now: str,
    notification: str | None,
) -> Row | None:
    """A new active alert; None when one for the same condition is active already (another
    evaluation opened it meanwhile)."""
    tenant_id = None if scope == OVERALL else scope
    row: Row | None = conn.execute(
        "INSERT INTO alerts (id, scope, tenant_id, rule, subject, value, threshold, since, "
        "last_seen, notification) VALUES (:id, :scope, :tenant_id, :rule, :subject, :value, "
        ":threshold, :now, :now, :notification) "
        "ON CONFLICT (scope, rule, subject) WHERE resolved_at IS NULL DO NOTHING "
        f"RETURNING {ALERT_COLUMNS}",
        {
            "id": new_id("alr"),
            "scope": scope,
            "tenant_id": tenant_id,
            "rule": rule,
            "subject": subject,
            "value": value,
            "threshold": threshold,
            "now": now,
            "notification": notification,
        },
    ).fetchone()
    return row


def touch_alert(conn: Connection, alert_id: str, value: float, now: str) -> None:
    conn.execute(
        "UPDATE alerts SET value = ?, last_seen = ? WHERE id = ? AND resolved_at IS NULL",
        (value, now, alert_id),
    )


def resolve_alert(conn: Connection, alert_id: str, now: str) -> Row | None:
    row: Row | None = conn.execute(
        "UPDATE alerts SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL "
        f"RETURNING {ALERT_COLUMNS}",
        (now, alert_id),
    ).fetchone()
    return row


async def list_alerts(db: Engine, state: str | None, limit: int, cursor: str | None) -> list[Row]:
    """Newest first (ids are time-ordered); `state`: active, resolved or None (both)."""
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if state == "active":
        clauses.append("resolved_at IS NULL")
    elif state == "resolved":
        clauses.append("resolved_at IS NOT NULL")
    if cursor:
        clauses.append("id < :cursor")
        (params["cursor"],) = decode_cursor(cursor, 1)
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    rows: list[Row] = await db.fetchall(
        f"SELECT {ALERT_COLUMNS} FROM alerts {where}ORDER BY id DESC LIMIT :limit", params
    )
    return rows


async def active_counts(db: Engine) -> list[Row]:
    rows: list[Row] = await db.fetchall(
        "SELECT rule, COUNT(*) AS n FROM alerts WHERE resolved_at IS NULL GROUP BY rule"
    )
    return rows


# -- figures for the gauges -----------------------------------------------------------------


def replace_figures(conn: Connection, figures: list[tuple[str, str, float]], now: str) -> None:
    conn.execute("DELETE FROM alert_figures")
    if figures:
        conn.executemany(
            "INSERT INTO alert_figures (scope, figure, value, evaluated_at) VALUES (?, ?, ?, ?)",
            [(scope, figure, value, now) for scope, figure, value in figures],
        )


async def stored_figures(db: Engine) -> list[Row]:
    rows: list[Row] = await db.fetchall("SELECT scope, figure, value FROM alert_figures")
    return rows


# -- webhook health -------------------------------------------------------------------------


def webhook_failed(conn: Connection, source: str, reason: str, now: str) -> int:
    """One more failure in `source`'s run; the run's length now."""
    row = conn.execute(
        "INSERT INTO webhook_health (source, consecutive_failures, last_failure_at, "
        "last_reason, updated_at) VALUES (:source, 1, :now, :reason, :now) "
        "ON CONFLICT (source) DO UPDATE SET "
        "consecutive_failures = webhook_health.consecutive_failures + 1, "
        "last_failure_at = :now, last_reason = :reason, updated_at = :now "
        "RETURNING consecutive_failures",
        {"source": source, "reason": reason[:200], "now": now},
    ).fetchone()
    return int(row["consecutive_failures"]) if row is not None else 1


def webhook_succeeded(conn: Connection, source: str, now: str) -> None:
    conn.execute(
        "UPDATE webhook_health SET consecutive_failures = 0, updated_at = ? "
        "WHERE source = ? AND consecutive_failures > 0",
        (now, source),
    )


async def failing_webhook(db: Engine, source: str) -> bool:
    """Whether `source` has failures in a row (a success then has a run to end)."""
    row = await db.fetchone(
        "SELECT 1 FROM webhook_health WHERE source = ? AND consecutive_failures > 0", (source,)
    )
    return row is not None


# -- the webhook outbox ---------------------------------------------------------------------


def add_delivery(conn: Connection, alert_id: str, event: str, body: str, now: str) -> None:
    conn.execute(
        "INSERT INTO alert_deliveries (id, alert_id, event, body, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (new_id("ald"), alert_id, event, body, now, now),
    )


def claim_deliveries(
    conn: Connection, now: str, lease_until: str, claim_id: str, limit: int
) -> list[Row]:
    """Claim the deliveries due at `now` (pending, or sending with a lease run out): each
    comes back `sending` under `claim_id` until `lease_until`. On PostgreSQL the rows are
    picked FOR UPDATE SKIP LOCKED and the conditions checked again on the row as updated, so
    two instances claiming at once never get the same delivery."""
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgres" else ""
    due = "status IN ('pending', 'sending') AND next_attempt_at <= :now"
    rows: list[Row] = conn.execute(
        "UPDATE alert_deliveries SET status = 'sending', next_attempt_at = :lease_until, "
        "claim_id = :claim_id WHERE id IN (SELECT id FROM alert_deliveries "
        f"WHERE {due} ORDER BY next_attempt_at, id LIMIT :limit{lock}) AND {due} "
        "RETURNING id, alert_id, event, body, attempts",
        {"now": now, "lease_until": lease_until, "claim_id": claim_id, "limit": limit},
    ).fetchall()
    return rows


def finish_delivery(
    conn: Connection,
    delivery_id: str,
    claim_id: str,
    status: str,
    attempts: int,
    next_attempt_at: str,
    error: str | None,
    now: str,
) -> bool:
    """Record an attempt of the claim `claim_id` (False when the claim was taken over):
    status delivered, failed (given up) or pending (retried at next_attempt_at)."""
    changed = conn.execute(
        "UPDATE alert_deliveries SET status = :status, attempts = :attempts, "
        "next_attempt_at = :next, last_error = :error, claim_id = NULL, "
        "delivered_at = COALESCE(:delivered_at, delivered_at) "
        "WHERE id = :id AND claim_id = :claim_id AND status = 'sending'",
        {
            "status": status,
            "attempts": attempts,
            "next": next_attempt_at,
            "error": error,
            "delivered_at": now if status == "delivered" else None,
            "id": delivery_id,
            "claim_id": claim_id,
        },
    ).rowcount
    return changed > 0


def mark_notification(conn: Connection, alert_id: str, notification: str) -> None:
    conn.execute("UPDATE alerts SET notification = ? WHERE id = ?", (notification, alert_id))


async def deliveries_of(db: Engine, alert_id: str) -> list[Row]:
    rows: list[Row] = await db.fetchall(
        "SELECT event, status, attempts, last_error, delivered_at FROM alert_deliveries "
        "WHERE alert_id = ? ORDER BY created_at, id",
        (alert_id,),
    )
    return rows
