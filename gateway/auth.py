"""Who is calling: the operator (ADMIN_API_KEY) or a tenant (one of its API keys), and
whether that key holds the scope an endpoint needs."""

from __future__ import annotations

import hmac
from datetime import timedelta

from starlette.requests import Request

from gateway.domain.key_scopes import KeyScope, decode_scopes
from gateway.errors import Forbidden, Unauthorized
from gateway.ids import now_iso, parse_iso
from gateway.services.config_cache import cache_for
from gateway.services.principal import TenantPrincipal
from gateway.services.tenants import hash_key, require_active
from gateway.store import tenants as store
from gateway.store.engine import Engine
from gateway.store.tenant_scope import TenantDB
from gateway.store.tenants import Tenant

__all__ = ["TenantPrincipal", "require_admin", "require_scope", "require_tenant"]

# last_used_at is bookkeeping, not an audit log: refreshing it at most once a minute keeps a
# write off the hot path of every authenticated request.
_TOUCH_INTERVAL = timedelta(seconds=60)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    return token.strip()


def _is_admin(token: str, admin_key: str) -> bool:
    return hmac.compare_digest(token.encode(), admin_key.encode())


def require_admin(request: Request, admin_key: str) -> None:
    token = _bearer(request)
    if _is_admin(token, admin_key):
        request.state.principal = "operator"
        return
    if token.startswith("cgw_"):
        raise Forbidden(
            "This endpoint needs the operator key; a tenant key was sent", code="wrong_key_kind"
        )
    raise Unauthorized("Unknown API key", code="unknown_api_key")


async def require_tenant(request: Request, db: Engine, admin_key: str) -> TenantPrincipal:
    token = _bearer(request)
    if _is_admin(token, admin_key):
        raise Forbidden(
            "This endpoint needs a tenant API key; the operator key was sent",
            code="wrong_key_kind",
        )
    cache = cache_for(db)
    row = await cache.find_key(db, hash_key(token))
    if row is None or row["revoked_at"] is not None:
        raise Unauthorized("Unknown or revoked API key", code="unknown_api_key")
    tenant = Tenant.from_row(row)
    if request.method not in ("GET", "HEAD"):  # a suspended tenant still reads its data
        require_active(tenant)
    now = now_iso()
    key_id = row["key_id"]
    last = max(row["last_used_at"] or "", cache.touched.get(key_id, ""))
    if not last or parse_iso(now) - parse_iso(last) >= _TOUCH_INTERVAL:
        cache.touched[key_id] = now  # the cached row still holds the time before
        await store.touch_key(db, key_id, now)
    request.state.tenant_id = tenant.id
    return TenantPrincipal(
        tenant, row["key_id"], TenantDB(db, tenant.id), decode_scopes(row["scopes"])
    )


def require_scope(principal: TenantPrincipal, scope: KeyScope) -> None:
    if scope not in principal.scopes:
        raise Forbidden(
            f"This API key lacks the {scope!r} scope this endpoint needs",
            code="insufficient_scope",
            details={"scope": scope, "key_scopes": list(principal.scopes)},
        )
