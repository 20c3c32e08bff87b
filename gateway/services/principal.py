"""Who a service acts for: one tenant, reached through one of its API keys, with its data
scoped to it (`TenantDB`) and what that key may do (its scopes). The web layer
(`gateway.auth`) proves it; services only read it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.domain.key_scopes import ALL_SCOPES, KeyScope
from gateway.store.tenant_scope import TenantDB
from gateway.store.tenants import Tenant


@dataclass(frozen=True)
class TenantPrincipal:
    tenant: Tenant
    key_id: str
    db: TenantDB
    scopes: tuple[KeyScope, ...] = ALL_SCOPES
