"""The operator's pages: the tenants (`GET /admin/tenants`' service, 50 a page), and opening
one tenant's console as the operator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.console.render import render
from gateway.console.session import PREFIX, open_tenant, require_operator
from gateway.services import tenants as tenant_service

if TYPE_CHECKING:
    from gateway.wiring import Gateway

PAGE_SIZE = 50


async def tenants_page(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    await require_operator(request, gw)
    after = request.query_params.get("after") or None
    tenants, next_cursor = await tenant_service.list_tenants(gw.db, PAGE_SIZE, after)
    return render(
        request,
        "operator/tenants.html",
        {"tenants": tenants, "next_cursor": next_cursor, "after": after},
    )


async def open_tenant_console(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    await require_operator(request, gw)
    tenant = await tenant_service.require_tenant(gw.db, request.path_params["tenant_id"])
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    open_tenant(request, response, gw, tenant.id)
    return response
