"""Tenants and their API keys: create, list, edit, suspend and resume, delete; issue and revoke
keys, rotate encryption keys."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any

from gateway.crypto import Keyring, aad_for
from gateway.domain.key_scopes import ALL_SCOPES, KeyScope
from gateway.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateway.regions import tenant_region
from gateway.services import config_cache
from gateway.services.channel_config import ChannelConfigService
from gateway.store import channels as channel_store
from gateway.store import tenants as store
from gateway.store.engine import DUE_MESSAGES, Connection, Engine, UniqueViolation, announce
from gateway.store.tenant_scope import TenantDB
from gateway.store.tenants import Tenant
from gateway.validation import validation_context

KEY_PREFIX = "cgw"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A tenant API key `cgw_<prefix>_<secret>` and its public prefix."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def _key_response(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {**{k: v for k, v in row.items() if k != "tenant_id"}, "key": key}


async def create_tenant(
    db: Engine,
    name: str,
    slug: str,
    timezone: str,
    label: str | None = "default",
    country: str | None = None,
) -> tuple[Tenant, dict[str, Any]]:
    key, prefix = generate_key()

    def write(conn: Connection) -> tuple[Tenant, dict[str, Any]]:
        tenant = store.insert_tenant(conn, name, slug, timezone, country)
        row = store.insert_api_key(conn, tenant.id, prefix, hash_key(key), label)
        return tenant, row

    try:
        tenant, row = await db.write_fn(write)
    except UniqueViolation:
        raise Conflict(
            f"A tenant with slug {slug!r} already exists",
            code="slug_taken",
            details={"slug": slug},
        ) from None
    return tenant, _key_response(row, key)


async def require_tenant(db: Engine, tenant_ref: str) -> Tenant:
    tenant = await store.get_tenant(db, tenant_ref)
    if tenant is None:
        raise NotFound(f"No tenant {tenant_ref!r}", code="tenant_not_found")
    return tenant


def require_active(tenant: Tenant) -> None:
    """A suspended tenant sends nothing, books nothing and changes nothing."""
    if tenant.status != "active":
        raise Forbidden(
            "This tenant is suspended: it can read its data but not send or change anything",
            code="tenant_suspended",
        )


async def update_tenant(
    db: Engine, tenant_ref: str, changes: dict[str, Any], wake: Callable[[], None]
) -> Tenant:
    """Apply the operator's edit (name, timezone, status). Suspending holds the tenant's
    queued messages and reminders where they are; resuming makes them due again at once:
    the dispatchers of every instance are woken."""
    tenant = await require_tenant(db, tenant_ref)
    if not changes:
        return tenant
    resumed = changes.get("status") == "active" and tenant.status != "active"

    def write(conn: Connection) -> Tenant | None:
        updated = store.update_tenant(conn, tenant.id, changes)
        if resumed:
            announce(conn, DUE_MESSAGES)
        return updated

    updated = await db.write_fn(write)
    await config_cache.changed(db)  # a suspension holds the tenant's keys at once
    if updated is None:  # deleted meanwhile
        raise NotFound(f"No tenant {tenant_ref!r}", code="tenant_not_found")
    if resumed:
        wake()
    return updated


async def delete_tenant(db: Engine, tenant_ref: str, confirm: str) -> None:
    """Remove the tenant and all its data, once `confirm` repeats its slug."""
    tenant = await require_tenant(db, tenant_ref)
    if confirm != tenant.slug:
        error = ValidationFailed(
            [{"field": "confirm", "message": "must be the tenant's slug"}],
            f"Nothing deleted: confirm must be the tenant's slug ({tenant.slug!r})",
        )
        error.code = "confirmation_mismatch"
        raise error
    deleted = await db.write_fn(lambda conn: store.delete_tenant(conn, tenant.id))
    await config_cache.changed(db)
    if not deleted:
        raise NotFound(f"No tenant {tenant_ref!r}", code="tenant_not_found")


async def list_tenants(
    db: Engine, limit: int, after: str | None
) -> tuple[list[Tenant], str | None]:
    """Up to `limit` tenants after the id `after`, and the cursor of the next page (the last
    id shown) when more follow."""
    tenants = await store.list_tenants(db, limit + 1, after)
    shown = tenants[:limit]
    return shown, shown[-1].id if len(tenants) > limit else None


async def list_api_keys(db: Engine, tenant_id: str) -> list[dict[str, Any]]:
    return await store.list_api_keys(db, tenant_id)


async def tenant_channels(
    db: Engine, channels: ChannelConfigService, tenant_id: str
) -> list[dict[str, Any]]:
    """The tenant's channels as the operator sees them."""
    return await channels.list(TenantDB(db, tenant_id))


async def update_operator_fields(
    db: Engine, channels: ChannelConfigService, tenant: Tenant, channel: str, patch: Any
) -> dict[str, Any]:
    """Merge-patch the operator-only fields of one of the tenant's channels."""
    # the tenant is known: its dedicated numbers may be written in its national format
    with validation_context(region=tenant_region(tenant)):
        return await channels.operator_update(TenantDB(db, tenant.id), channel, patch)


async def create_api_key(
    db: Engine,
    tenant_id: str,
    label: str | None,
    scopes: tuple[KeyScope, ...] = ALL_SCOPES,
) -> dict[str, Any]:
    key, prefix = generate_key()
    row = await db.write_fn(
        lambda conn: store.insert_api_key(conn, tenant_id, prefix, hash_key(key), label, scopes)
    )
    return _key_response(row, key)


async def revoke_api_key(db: Engine, tenant_id: str, key_id: str) -> None:
    if not await store.key_exists(db, tenant_id, key_id):
        raise NotFound(f"No API key {key_id!r} for this tenant", code="api_key_not_found")
    await store.revoke_key(db, tenant_id, key_id)
    await config_cache.changed(db)


async def check_keyring(db: Engine, keyring: Keyring) -> None:
    """Fail fast when stored data references a key id the keyring does not hold."""
    from gateway.errors import ConfigError

    missing = sorted(await channel_store.key_ids_in_use(db) - set(keyring.key_ids))
    if missing:
        raise ConfigError(
            "stored credentials are encrypted with key id(s) "
            + ", ".join(missing)
            + " which ENCRYPTION_KEY(S) does not contain"
        )


async def rotate_keys(db: Engine, keyring: Keyring) -> int:
    """Re-encrypt every channel's secrets under the primary key; returns rows rewritten."""
    rows = await channel_store.encrypted_rows(db)
    updates = []
    for row in rows:
        if row["key_id"] == keyring.primary_id:
            continue
        version = row["secrets_version"]
        aad = aad_for(row["tenant_id"], row["channel_type"], version)
        plain = keyring.decrypt(row["config_encrypted"], aad)
        json.loads(plain)  # a corrupt payload stops the rotation before anything is written
        updates.append(
            (
                keyring.encrypt(plain, aad_for(row["tenant_id"], row["channel_type"], version + 1)),
                keyring.primary_id,
                version + 1,
                row["tenant_id"],
                row["channel_type"],
                row["config_encrypted"],
                version,
            )
        )

    def write(conn: Connection) -> int:
        return sum(channel_store.reencrypt(conn, *update) for update in updates)

    return await db.write_fn(write)
