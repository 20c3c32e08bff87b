"""Reading what the voice assistants collected, per tenant: qualified prospects, support
tickets, and the calls themselves. Pages are newest first, as the API shows them."""

from __future__ import annotations

from typing import Any

from gateway.store import calls as call_store
from gateway.store import crm as store
from gateway.store.tenant_scope import TenantDB


async def list_prospects(
    tdb: TenantDB,
    limit: int,
    cursor: str | None,
    *,
    project: str | None = None,
    call_id: str | None = None,
) -> list[dict[str, Any]]:
    filters = {"project": project, "call_id": call_id}
    return [dict(row) for row in await store.list_prospects(tdb, filters, limit, cursor)]


async def list_tickets(
    tdb: TenantDB,
    limit: int,
    cursor: str | None,
    *,
    status: str | None = None,
    priority: str | None = None,
    call_id: str | None = None,
) -> list[dict[str, Any]]:
    filters = {"status": status, "priority": priority, "call_id": call_id}
    return [dict(row) for row in await store.list_tickets(tdb, filters, limit, cursor)]


async def list_calls(
    tdb: TenantDB,
    limit: int,
    cursor: str | None,
    *,
    outcome: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    filters = {"outcome": outcome, "status": status}
    rows = await call_store.list_calls(tdb, filters, limit, cursor)
    return [call_store.public_call(row) for row in rows]
