"""Who a service acts for: one tenant, reached through one of its API keys, with its data
scoped to it (`TenantDB`). The web layer (`gateway.auth`) proves it; services only read it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.tenant_scope import TenantDB
from gateway.store.tenants import Tenant


@dataclass(frozen=True)
class TenantPrincipal:
    tenant: Tenant
    key_id: str
    db: TenantDB
