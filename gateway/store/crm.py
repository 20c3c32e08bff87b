"""SQL for what the voice assistants collect: qualified prospects and support tickets."""

from __future__ import annotations

from typing import Any

from gateway.ids import new_id, now_iso
from gateway.store.engine import Row
from gateway.store.paging import newest_first
from gateway.store.tenant_scope import ScopedConnection, TenantDB

_PROSPECT_COLUMNS = (
    "id",
    "tenant_id",
    "contact_name",
    "contact_phone",
    "contact_email",
    "project",
    "property_type",
    "location",
    "budget",
    "timeline",
    "score",
    "call_id",
    "notes",
    "created_at",
)
_TICKET_COLUMNS = (
    "id",
    "tenant_id",
    "contact_name",
    "contact_phone",
    "contact_email",
    "subject",
    "description",
    "priority",
    "status",
    "call_id",
    "created_at",
    "updated_at",
)


def _insert(
    conn: ScopedConnection, table: str, columns: tuple[str, ...], row: dict[str, Any]
) -> None:
    names = ", ".join(columns)
    marks = ", ".join(f":{c}" for c in columns)
    conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({marks})",
        {c: row.get(c) for c in columns if c != "tenant_id"},
    )


def insert_prospect(conn: ScopedConnection, fields: dict[str, Any]) -> dict[str, Any]:
    row = {**fields, "id": new_id("pro"), "created_at": now_iso()}
    _insert(conn, "qualified_prospects", _PROSPECT_COLUMNS, row)
    return {k: row.get(k) for k in _PROSPECT_COLUMNS if k != "tenant_id"}


def insert_ticket(conn: ScopedConnection, fields: dict[str, Any]) -> dict[str, Any]:
    now = now_iso()
    row = {
        "status": "open",
        "priority": "normal",
        **fields,
        "id": new_id("tkt"),
        "created_at": now,
        "updated_at": now,
    }
    _insert(conn, "tickets", _TICKET_COLUMNS, row)
    return {k: row.get(k) for k in _TICKET_COLUMNS if k != "tenant_id"}


async def _page(
    tdb: TenantDB,
    table: str,
    columns: tuple[str, ...],
    filters: dict[str, Any],
    limit: int,
    cursor: str | None,
) -> list[Row]:
    select = ", ".join(c for c in columns if c != "tenant_id")
    return await newest_first(tdb, table, filters, limit, cursor, columns=select)


async def list_prospects(
    tdb: TenantDB, filters: dict[str, Any], limit: int, cursor: str | None
) -> list[Row]:
    return await _page(tdb, "qualified_prospects", _PROSPECT_COLUMNS, filters, limit, cursor)


async def list_tickets(
    tdb: TenantDB, filters: dict[str, Any], limit: int, cursor: str | None
) -> list[Row]:
    return await _page(tdb, "tickets", _TICKET_COLUMNS, filters, limit, cursor)
