"""The console's routes: a Starlette app of its own, mounted at /console, so its errors are
pages (not the API's JSON) and its CSRF check and security headers cover it alone.

`gateway.console.dashboard.ROUTES` (the dashboard and its partials) are served by the same
app; their paths are relative to the mount (`/dashboard`; a full `/console/dashboard` is
accepted too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.console.channel_page import (
    channel_page,
    save_operator_settings,
    save_settings,
    test_channel,
    toggle_channel,
)
from gateway.console.dashboard import ROUTES as DASHBOARD_ROUTES
from gateway.console.errors import EXCEPTION_HANDLERS
from gateway.console.hub import hub
from gateway.console.keys import create_key, keys_page, revoke_key
from gateway.console.render import STATIC
from gateway.console.security import CsrfMiddleware, SecurityHeadersMiddleware
from gateway.console.session import PREFIX
from gateway.console.signin import sign_in, sign_in_page, sign_out, switch_language
from gateway.console.sms_preview import sms_preview
from gateway.console.tenants import open_tenant_console, tenants_page

if TYPE_CHECKING:
    from gateway.wiring import Gateway

_POST = ["POST"]

ROUTES: list[BaseRoute] = [
    Route("/", hub, name="console_hub"),
    Route("/sign-in", sign_in_page, name="console_sign_in"),
    Route("/sign-in", sign_in, methods=_POST),
    Route("/sign-out", sign_out, methods=_POST, name="console_sign_out"),
    Route("/lang/{lang}", switch_language, name="console_language"),
    Route("/tenants", tenants_page, name="console_tenants"),
    Route("/tenants/{tenant_id}", open_tenant_console, name="console_open_tenant"),
    Route("/channels/sms/preview", sms_preview, methods=_POST, name="console_sms_preview"),
    Route("/channels/{channel}", channel_page, name="console_channel"),
    Route("/channels/{channel}", save_settings, methods=_POST),
    Route("/channels/{channel}/toggle", toggle_channel, methods=_POST),
    Route("/channels/{channel}/test", test_channel, methods=_POST),
    Route("/channels/{channel}/operator", save_operator_settings, methods=_POST),
    Route("/keys", keys_page, name="console_keys"),
    Route("/keys", create_key, methods=_POST),
    Route("/keys/{key_id}/revoke", revoke_key, methods=_POST),
]


def dashboard_routes() -> list[BaseRoute]:
    """The dashboard's routes (its own module), with paths made relative to the mount."""
    routes: list[BaseRoute] = []
    for route in DASHBOARD_ROUTES:
        if isinstance(route, Route) and route.path.startswith(PREFIX + "/"):
            methods = sorted(route.methods - {"HEAD"}) if route.methods else None
            route = Route(
                route.path[len(PREFIX) :], route.endpoint, methods=methods, name=route.name
            )
        routes.append(route)
    return routes


def console_app(gateway: Gateway) -> Starlette:
    app = Starlette(
        routes=[
            *ROUTES,
            *dashboard_routes(),
            Mount("/static", StaticFiles(directory=STATIC), name="console_static"),
        ],
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(CsrfMiddleware, gateway=gateway),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.gateway = gateway
    return app


async def _to_console(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


def console_routes(gateway: Gateway) -> list[BaseRoute]:
    """What the gateway's app adds to its routes: `GET /` → the console, and the console."""
    # not part of the API: left out of /openapi.json like the console itself
    root = Route("/", _to_console, include_in_schema=False)
    return [root, Mount(PREFIX, app=console_app(gateway))]
