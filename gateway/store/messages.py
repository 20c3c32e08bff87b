"""SQL for the message log, its events and suppressions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway.db import Database, ScopedConnection, TenantDB
from gateway.ids import new_id, now_iso
from gateway.store.paging import newest_first

# A status may only move up this ladder; finals share a rank so the first final one wins,
# except that WhatsApp's "read" may follow "delivered".
STATUS_RANK = {
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "received": 2,
    "delivered": 3,
    "undelivered": 3,
    "failed": 3,
    "canceled": 3,
    "read": 4,
}
FINAL = frozenset({"delivered", "undelivered", "failed", "canceled", "read", "received"})

_INSERT_COLUMNS = (
    "id",
    "tenant_id",
    "channel",
    "direction",
    "to_address",
    "from_address",
    "subject",
    "body",
    "html_body",
    "template",
    "message_type",
    "agent",
    "status",
    "provider",
    "provider_message_id",
    "provider_status",
    "encoding",
    "character_count",
    "num_segments",
    "price_per_unit",
    "billed_cost",
    "provider_cost",
    "margin",
    "currency",
    "idempotency_key",
    "request_hash",
    "next_attempt_at",
    "send_at",
    "call_id",
    "appointment_id",
    "metadata",
    "created_at",
    "updated_at",
    "sent_at",
    "delivered_at",
)


def insert_message(conn: ScopedConnection, row: dict[str, Any]) -> None:
    values = {name: row.get(name) for name in _INSERT_COLUMNS if name != "tenant_id"}
    values["metadata"] = json.dumps(row.get("metadata") or {})
    if row.get("template") is not None:
        values["template"] = json.dumps(row["template"])
    columns = ", ".join(_INSERT_COLUMNS)
    placeholders = ", ".join(f":{name}" for name in _INSERT_COLUMNS)
    conn.execute(f"INSERT INTO channel_messages_log ({columns}) VALUES ({placeholders})", values)


def inserted_message(conn: ScopedConnection, message_id: str) -> sqlite3.Row:
    row: sqlite3.Row = conn.execute(
        "SELECT * FROM channel_messages_log WHERE tenant_id = :tenant_id AND id = :id",
        {"id": message_id},
    ).fetchone()
    return row


def insert_event(
    conn: sqlite3.Connection | ScopedConnection,
    message_id: str,
    tenant_id: str,
    source: str,
    status: str | None,
    applied: bool,
    payload: dict[str, Any],
) -> None:
    raw = conn.raw if isinstance(conn, ScopedConnection) else conn
    raw.execute(
        "INSERT INTO message_events "
        "(id, message_id, tenant_id, source, status, applied, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id("evt"),
            message_id,
            tenant_id,
            source,
            status,
            int(applied),
            json.dumps(payload),
            now_iso(),
        ),
    )


def public_message(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    # dict(row) looks every column up by name (a scan of ~50 names each): zip is linear
    data = dict(zip(row.keys(), row, strict=True)) if isinstance(row, sqlite3.Row) else dict(row)
    reconcile = bool(data.get("needs_reconciliation"))
    data["metadata"] = json.loads(data.get("metadata") or "{}")
    if data.get("template"):
        data["template"] = json.loads(data["template"])
    data["to"] = data.pop("to_address")
    data["from"] = data.pop("from_address")
    for private in (
        "request_hash",
        "price_checks",
        "price_due_at",
        "needs_reconciliation",
        "next_attempt_at",
        "tenant_id",
    ):
        data.pop(private, None)
    data["needs_reconciliation"] = reconcile
    return data


async def get_message(tdb: TenantDB, message_id: str) -> sqlite3.Row | None:
    return await tdb.fetchone(
        "SELECT * FROM channel_messages_log WHERE tenant_id = :tenant_id AND id = :id",
        {"id": message_id},
    )


async def get_by_idempotency_key(tdb: TenantDB, key: str) -> sqlite3.Row | None:
    return await tdb.fetchone(
        "SELECT * FROM channel_messages_log WHERE tenant_id = :tenant_id "
        "AND idempotency_key = :key",
        {"key": key},
    )


async def list_events(tdb: TenantDB, message_id: str) -> list[dict[str, Any]]:
    rows = await tdb.fetchall(
        "SELECT id, source, status, applied, payload, created_at FROM message_events "
        "WHERE tenant_id = :tenant_id AND message_id = :id ORDER BY created_at, id",
        {"id": message_id},
    )
    return [
        {**dict(r), "applied": bool(r["applied"]), "payload": json.loads(r["payload"])}
        for r in rows
    ]


async def list_messages(
    tdb: TenantDB, filters: dict[str, Any], limit: int, before: str | None
) -> list[sqlite3.Row]:
    equal = {
        "channel": filters.get("channel"),
        "status": filters.get("status"),
        "to_address": filters.get("to"),
        "message_type": filters.get("message_type"),
        "direction": filters.get("direction"),
    }
    return await newest_first(
        tdb,
        "channel_messages_log",
        equal,
        limit,
        before,
        since=filters.get("since"),
        until=filters.get("until"),
    )


async def suppression_for(tdb: TenantDB, channel: str, address: str) -> sqlite3.Row | None:
    return await tdb.fetchone(
        "SELECT reason, detail, created_at FROM suppressions WHERE tenant_id = :tenant_id "
        "AND channel = :channel AND address = :address",
        {"channel": channel, "address": address},
    )


def add_suppression(
    conn: sqlite3.Connection,
    tenant_id: str,
    channel: str,
    address: str,
    reason: str,
    detail: str | None,
) -> None:
    conn.execute(
        "INSERT INTO suppressions (id, tenant_id, channel, address, reason, detail, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, channel, address) DO NOTHING",
        (new_id("sup"), tenant_id, channel, address, reason, detail, now_iso()),
    )


def remove_suppression(
    conn: sqlite3.Connection, tenant_id: str, channel: str, address: str
) -> None:
    conn.execute(
        "DELETE FROM suppressions WHERE tenant_id = ? AND channel = ? AND address = ? "
        "AND reason = 'stop_keyword'",
        (tenant_id, channel, address),
    )


# -- dispatcher (operator scope: the dispatcher serves every tenant) --------------------------


def claim_due(conn: sqlite3.Connection, now: str, limit: int) -> list[sqlite3.Row]:
    """Take up to `limit` due messages: queued ones become `sending` (attempt counted);
    ones waiting for reconciliation are returned as they are."""
    rows = conn.execute(
        "SELECT * FROM channel_messages_log WHERE status IN ('queued', 'sending') "
        "AND next_attempt_at IS NOT NULL AND next_attempt_at <= ? "
        "ORDER BY next_attempt_at LIMIT ?",
        (now, limit),
    ).fetchall()
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    marks = ", ".join("?" for _ in ids)
    conn.execute(
        "UPDATE channel_messages_log SET "
        "attempts = attempts + CASE WHEN status = 'queued' THEN 1 ELSE 0 END, "
        "status = 'sending', next_attempt_at = NULL, updated_at = ? "
        f"WHERE id IN ({marks})",
        (now, *ids),
    )
    return rows


def recover_in_flight(conn: sqlite3.Connection, now: str) -> int:
    """At start-up: sends that were in flight when the process died have an unknown outcome."""
    return conn.execute(
        "UPDATE channel_messages_log SET needs_reconciliation = 1, next_attempt_at = ?, "
        "updated_at = ? WHERE status = 'sending' AND next_attempt_at IS NULL",
        (now, now),
    ).rowcount


def update_message(conn: sqlite3.Connection, message_id: str, fields: dict[str, Any]) -> None:
    if not fields:
        return
    assignments = ", ".join(f"{name} = :{name}" for name in fields)
    conn.execute(
        f"UPDATE channel_messages_log SET {assignments} WHERE id = :_id",
        {**fields, "_id": message_id},
    )


def queue_depth(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM channel_messages_log WHERE status IN ('queued', 'sending')"
    ).fetchone()
    return int(row[0])


def find_by_provider_id(
    conn: sqlite3.Connection, provider: str, provider_message_id: str
) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM channel_messages_log WHERE provider = ? AND provider_message_id = ?",
        (provider, provider_message_id),
    ).fetchone()
    return row


def find_by_id(conn: sqlite3.Connection, message_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM channel_messages_log WHERE id = ?", (message_id,)
    ).fetchone()
    return row


def price_due(conn: sqlite3.Connection, now: str, limit: int) -> list[sqlite3.Row]:
    rows = conn.execute(
        "SELECT * FROM channel_messages_log WHERE price_due_at IS NOT NULL "
        "AND price_due_at <= ? ORDER BY price_due_at LIMIT ?",
        (now, limit),
    ).fetchall()
    ids: Sequence[str] = [r["id"] for r in rows]
    if ids:
        marks = ", ".join("?" for _ in ids)
        conn.execute(
            f"UPDATE channel_messages_log SET price_due_at = NULL WHERE id IN ({marks})", ids
        )
    return rows


def adopted_provider_ids(
    conn: sqlite3.Connection, provider: str, ids: list[str], except_id: str
) -> set[str]:
    """Which of these provider ids already belong to another message."""
    if not ids:
        return set()
    marks = ", ".join("?" for _ in ids)
    rows = conn.execute(
        "SELECT provider_message_id FROM channel_messages_log WHERE provider = ? "
        f"AND provider_message_id IN ({marks}) AND id != ?",
        (provider, *ids, except_id),
    ).fetchall()
    return {r[0] for r in rows}


async def recent_tenants_for_recipient(db: Database, channel: str, address: str) -> list[str]:
    rows = await db.fetchall(
        "SELECT tenant_id, MAX(created_at) AS last FROM channel_messages_log "
        "WHERE channel = ? AND to_address = ? AND direction = 'outbound' "
        "GROUP BY tenant_id ORDER BY last DESC",
        (channel, address),
    )
    return [r["tenant_id"] for r in rows]
