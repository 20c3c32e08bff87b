"""Tenant scoping, enforced in one place for every engine.

A tenant-scoped statement names `:tenant_id`, and the value bound to it always comes from
here, from the authenticated tenant: a handler can neither forget the scope nor forge
another tenant's id. `TenantDB` wraps any `Engine`, `ScopedConnection` any `Connection`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from gateway.store.engine import Connection, Cursor, Dialect, Engine, Row

T = TypeVar("T")


class TenantScopeError(RuntimeError):
    """A tenant-scoped statement did not mention :tenant_id; it would leak across tenants."""


def _scoped(sql: str, params: Mapping[str, Any], tenant_id: str) -> dict[str, Any]:
    if ":tenant_id" not in sql:
        raise TenantScopeError(f"tenant-scoped SQL must use :tenant_id: {sql[:80]!r}")
    return {**params, "tenant_id": tenant_id}


class ScopedConnection:
    """A write connection that only runs statements scoped to one tenant."""

    __slots__ = ("raw", "tenant_id")

    def __init__(self, conn: Connection, tenant_id: str) -> None:
        self.raw = conn
        self.tenant_id = tenant_id

    @property
    def dialect(self) -> Dialect:
        return self.raw.dialect

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Cursor:
        return self.raw.execute(sql, _scoped(sql, params or {}, self.tenant_id))

    def executemany(self, sql: str, rows: Iterable[Mapping[str, Any]]) -> Cursor:
        return self.raw.executemany(sql, (_scoped(sql, r, self.tenant_id) for r in rows))


class TenantDB:
    """The database as one tenant sees it: every statement must bind `:tenant_id`, which is
    filled in here from the authenticated tenant, so a handler cannot forget or forge it."""

    def __init__(self, db: Engine, tenant_id: str) -> None:
        self.db = db
        self.tenant_id = tenant_id

    @property
    def dialect(self) -> Dialect:
        return self.db.dialect

    async def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        rows: list[Row] = await self.db.fetchall(sql, _scoped(sql, params or {}, self.tenant_id))
        return rows

    async def fetchone(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        row: Row | None = await self.db.fetchone(sql, _scoped(sql, params or {}, self.tenant_id))
        return row

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        return await self.db.execute_write(sql, _scoped(sql, params or {}, self.tenant_id))

    async def read_fn(self, fn: Callable[[ScopedConnection], T]) -> T:
        return await self.db.read_fn(lambda conn: fn(ScopedConnection(conn, self.tenant_id)))

    async def write_fn(self, fn: Callable[[ScopedConnection], T]) -> T:
        return await self.db.write_fn(lambda conn: fn(ScopedConnection(conn, self.tenant_id)))
