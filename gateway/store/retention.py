"""SQL for retention (RETENTION_DAYS): the texts and raw payloads of rows created before a
cutoff are removed, one tenant and one bounded batch at a time.

What goes: messages' subject, body, HTML body and template, their events' payloads; calls'
transcript, summary, recording URL and the TwiML they were answered with. What stays:
addresses, money, counts, statuses, timestamps and metadata, so invoices, KPIs and the
timeline's list of who was contacted when do not change.

A batch is one transaction over the next `limit` rows of one tenant in (created_at, id)
order, read through the (tenant_id, created_at) indexes, after that tenant's mark in
`retention_marks`; the mark then moves past them (to the cutoff itself once the tenant has no
older rows left), so a run never reads again what an earlier run finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.store.engine import Connection

SCRUBBED = {
    "channel_messages_log": ("subject", "body", "html_body", "template"),
    "call_logs": ("transcript", "summary", "recording_url", "answer_twiml"),
}
_AFTER_MARK = "(created_at > :mark_at OR (created_at = :mark_at AND id > :mark_id))"
_UP_TO_LAST = "(created_at < :last_at OR (created_at = :last_at AND id <= :last_id))"


@dataclass(frozen=True)
class Batch:
    counts: dict[str, int]
    done: bool  # the tenant has no row left before the cutoff in this table


def tenants_behind(conn: Connection, table: str, cutoff: str) -> list[str]:
    """Tenants whose mark in `table` is before `cutoff` (or who have none)."""
    rows = conn.execute(
        "SELECT t.id FROM tenants t LEFT JOIN retention_marks m "
        "ON m.tenant_id = t.id AND m.table_name = :table "
        "WHERE m.created_at IS NULL OR m.created_at < :cutoff ORDER BY t.id",
        {"table": table, "cutoff": cutoff},
    ).fetchall()
    return [str(row[0]) for row in rows]


def _mark(conn: Connection, table: str, tenant_id: str) -> tuple[str, str]:
    row = conn.execute(
        "SELECT created_at, id FROM retention_marks WHERE tenant_id = :tenant_id "
        "AND table_name = :table",
        {"tenant_id": tenant_id, "table": table},
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else ("", "")


def _move_mark(conn: Connection, table: str, tenant_id: str, at: str, row_id: str) -> None:
    # never backwards: a run that overlapped a later one leaves the later mark
    conn.execute(
        "INSERT INTO retention_marks (tenant_id, table_name, created_at, id) "
        "VALUES (:tenant_id, :table, :at, :id) ON CONFLICT (tenant_id, table_name) DO UPDATE "
        "SET created_at = excluded.created_at, id = excluded.id "
        "WHERE retention_marks.created_at < excluded.created_at OR "
        "(retention_marks.created_at = excluded.created_at AND retention_marks.id < excluded.id)",
        {"tenant_id": tenant_id, "table": table, "at": at, "id": row_id},
    )


def scrub_batch(conn: Connection, table: str, tenant_id: str, cutoff: str, limit: int) -> Batch:
    """Scrub the tenant's next `limit` rows of `table` created before `cutoff`."""
    mark_at, mark_id = _mark(conn, table, tenant_id)
    params: dict[str, Any] = {
        "tenant_id": tenant_id,
        "cutoff": cutoff,
        "mark_at": mark_at,
        "mark_id": mark_id,
        "limit": limit,
    }
    base = f"tenant_id = :tenant_id AND created_at < :cutoff AND {_AFTER_MARK}"
    rows = conn.execute(
        f"SELECT created_at, id FROM {table} WHERE {base} ORDER BY created_at, id LIMIT :limit",
        params,
    ).fetchall()
    counts = {table: 0}
    if table == "channel_messages_log":
        counts["message_events"] = 0
    if not rows:
        _move_mark(conn, table, tenant_id, cutoff, "")
        return Batch(counts, done=True)
    params |= {"last_at": rows[-1][0], "last_id": rows[-1][1]}
    span = f"{base} AND {_UP_TO_LAST}"
    if table == "channel_messages_log":
        counts["message_events"] = conn.execute(
            "UPDATE message_events SET payload = '{}' WHERE tenant_id = :tenant_id "
            f"AND payload <> '{{}}' AND message_id IN (SELECT id FROM {table} WHERE {span})",
            params,
        ).rowcount
    columns = SCRUBBED[table]
    counts[table] = conn.execute(
        f"UPDATE {table} SET {', '.join(f'{c} = NULL' for c in columns)} WHERE {span} "
        f"AND ({' OR '.join(f'{c} IS NOT NULL' for c in columns)})",
        params,
    ).rowcount
    done = len(rows) < limit
    if done:
        _move_mark(conn, table, tenant_id, cutoff, "")
    else:
        _move_mark(conn, table, tenant_id, str(rows[-1][0]), str(rows[-1][1]))
    return Batch(counts, done)
