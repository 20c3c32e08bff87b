"""SQL for tenants, API keys and tenant numbers (operator scope: not tenant-scoped)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.channel_models import CHANNEL_TYPES
from gateway.domain.key_scopes import ALL_SCOPES, KeyScope, decode_scopes, encode_scopes
from gateway.ids import new_id, now_iso
from gateway.store.engine import Connection, Engine, Row


@dataclass(frozen=True)
class Tenant:
    id: str
    slug: str
    name: str
    timezone: str
    status: str
    created_at: str
    country: str | None = None
    monthly_sms_budget_eur: float | None = None

    @classmethod
    def from_row(cls, row: Row) -> Tenant:
        return cls(
            id=row["id"],
            slug=row["slug"],
            name=row["name"],
            timezone=row["timezone"],
            status=row["status"],
            created_at=row["created_at"],
            country=row["country"],
            monthly_sms_budget_eur=row["monthly_sms_budget_eur"],
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "timezone": self.timezone,
            "status": self.status,
            "country": self.country,
            "monthly_sms_budget_eur": self.monthly_sms_budget_eur,
            "created_at": self.created_at,
        }


_TENANT_COLUMNS = "id, slug, name, timezone, status, created_at, country, monthly_sms_budget_eur"


def insert_tenant(
    conn: Connection, name: str, slug: str, timezone: str, country: str | None = None
) -> Tenant:
    now = now_iso()
    tenant_id = new_id("ten")
    conn.execute(
        "INSERT INTO tenants (id, slug, name, timezone, status, country, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, 'active', ?, ?, ?)",
        (tenant_id, slug, name, timezone, country, now, now),
    )
    conn.executemany(
        "INSERT INTO channel_configurations "
        "(id, tenant_id, channel_type, enabled, settings, created_at, updated_at) "
        "VALUES (?, ?, ?, 0, '{}', ?, ?)",
        [(new_id("chc"), tenant_id, channel, now, now) for channel in CHANNEL_TYPES],
    )
    return Tenant(tenant_id, slug, name, timezone, "active", now, country)


def insert_api_key(
    conn: Connection,
    tenant_id: str,
    prefix: str,
    key_hash: str,
    label: str | None,
    scopes: tuple[KeyScope, ...] = ALL_SCOPES,
) -> dict[str, Any]:
    stored = encode_scopes(scopes)
    row = {
        "id": new_id("key"),
        "tenant_id": tenant_id,
        "prefix": prefix,
        "label": label,
        "scopes": list(decode_scopes(stored)),
        "created_at": now_iso(),
        "last_used_at": None,
        "revoked_at": None,
    }
    conn.execute(
        "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, label, scopes, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (row["id"], tenant_id, prefix, key_hash, label, stored, row["created_at"]),
    )
    return row


async def get_tenant(db: Engine, tenant_ref: str) -> Tenant | None:
    row = await db.fetchone(
        f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE id = ? OR slug = ?", (tenant_ref, tenant_ref)
    )
    return Tenant.from_row(row) if row else None


async def list_tenants(db: Engine, limit: int, after: str | None) -> list[Tenant]:
    after_clause, params = ("", [limit]) if after is None else ("WHERE id > ? ", [after, limit])
    rows = await db.fetchall(
        f"SELECT {_TENANT_COLUMNS} FROM tenants {after_clause}ORDER BY id LIMIT ?", params
    )
    return [Tenant.from_row(r) for r in rows]


async def list_api_keys(db: Engine, tenant_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT id, prefix, label, scopes, created_at, last_used_at, revoked_at FROM api_keys "
        "WHERE tenant_id = ? ORDER BY created_at",
        (tenant_id,),
    )
    return [{**dict(r), "scopes": list(decode_scopes(r["scopes"]))} for r in rows]


async def find_key(db: Engine, key_hash: str) -> Row | None:
    row: Row | None = await db.fetchone(
        "SELECT k.id AS key_id, k.last_used_at, k.revoked_at, k.scopes, "
        "t.id, t.slug, t.name, t.timezone, t.status, t.created_at, t.country, "
        "t.monthly_sms_budget_eur "
        "FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = ?",
        (key_hash,),
    )
    return row


async def touch_key(db: Engine, key_id: str, when: str) -> None:
    await db.execute_write("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (when, key_id))


async def revoke_key(db: Engine, tenant_id: str, key_id: str) -> bool:
    changed = await db.execute_write(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL",
        (now_iso(), key_id, tenant_id),
    )
    return changed > 0


async def key_exists(db: Engine, tenant_id: str, key_id: str) -> bool:
    row = await db.fetchone(
        "SELECT 1 FROM api_keys WHERE id = ? AND tenant_id = ?", (key_id, tenant_id)
    )
    return row is not None


async def tenant_for_number(db: Engine, e164: str) -> tuple[str, str] | None:
    row = await db.fetchone("SELECT tenant_id, kind FROM tenant_numbers WHERE e164 = ?", (e164,))
    return (row["tenant_id"], row["kind"]) if row else None


_EDITABLE = frozenset({"name", "timezone", "status", "monthly_sms_budget_eur"})


def update_tenant(conn: Connection, tenant_id: str, fields: dict[str, Any]) -> Tenant | None:
    """Change the tenant's editable fields (name, timezone, status, monthly SMS budget); None
    when it is gone."""
    unknown = set(fields) - _EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    assignments = "".join(f"{column} = :{column}, " for column in sorted(fields))
    row = conn.execute(
        f"UPDATE tenants SET {assignments}updated_at = :now WHERE id = :id "
        f"RETURNING {_TENANT_COLUMNS}",
        {**fields, "now": now_iso(), "id": tenant_id},
    ).fetchone()
    return Tenant.from_row(row) if row else None


def delete_tenant(conn: Connection, tenant_id: str) -> bool:
    """Remove the tenant and everything it owns. Every table holding a tenant's rows
    references tenants(id) ON DELETE CASCADE on both engines (keys, channel configurations,
    numbers, messages and their events, suppressions, calls, appointments, prospects,
    tickets); the shared send-rate buckets are keyed by the tenant's id as text, not by a
    foreign key, so they go explicitly."""
    prefix = f"{tenant_id}:"
    conn.execute(
        "DELETE FROM rate_buckets WHERE key = :id OR substr(key, 1, :n) = :prefix",
        {"id": tenant_id, "n": len(prefix), "prefix": prefix},
    )
    return conn.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,)).rowcount > 0
