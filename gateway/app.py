"""create_app(settings) -> Starlette: routes, middleware, lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.config import Settings
from gateway.console.routes import console_routes
from gateway.errors import ApiError, concurrent_change
from gateway.http_server import read_deadlines, uvicorn_options
from gateway.middleware import BodyDeadlineMiddleware, BodyLimitMiddleware, RequestLogMiddleware
from gateway.openapi import build_openapi
from gateway.routes import (
    admin,
    analytics,
    booking,
    channels,
    contacts,
    crm,
    messages,
    ops,
    vapi,
    webhooks,
)
from gateway.routing import Endpoint, allowed_methods
from gateway.store.engine import IntegrityError
from gateway.wiring import Gateway

log = logging.getLogger("gateway")
VERSION = "0.1.0"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def all_endpoints() -> list[Endpoint]:
    return [
        *ops.ENDPOINTS,
        *admin.ENDPOINTS,
        *channels.ENDPOINTS,
        *messages.ENDPOINTS,
        *webhooks.ENDPOINTS,
        *booking.ENDPOINTS,
        *crm.ENDPOINTS,
        *contacts.ENDPOINTS,
        *vapi.ENDPOINTS,
        *analytics.ENDPOINTS,
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _integrity_error(request: Request, exc: Exception) -> Response:
    """A constraint refused a write the request's checks had let through: a race, answered
    as one (409), never a 500."""
    log.warning(
        "write refused by a constraint", extra={"path": request.url.path, "reason": str(exc)}
    )
    return await _api_error(request, concurrent_change())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    details: dict[str, Any] = {}
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
        # Starlette names the methods of the one route it tried; a path may have several
        allowed = allowed_methods(request.app.routes, request.scope)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
        details["allowed_methods"] = headers.get("Allow", "").split(", ")
    else:
        message = str(exc.detail)
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def create_app(settings: Settings) -> Starlette:
    endpoints = all_endpoints()
    deadlines = read_deadlines(settings)
    gateway = Gateway(settings)
    gateway.openapi = build_openapi(endpoints, "Channel Gateway", VERSION)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=[*(ep.route() for ep in endpoints), *console_routes(gateway)],
        middleware=[
            Middleware(RequestLogMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
            Middleware(BodyDeadlineMiddleware, seconds=deadlines.body),
        ],
        exception_handlers={
            ApiError: _api_error,
            IntegrityError: _integrity_error,
            HTTPException: _http_error,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.endpoints = endpoints
    # what `gateway serve` hands to uvicorn.run: keep-alive, header deadline and size
    app.state.uvicorn_options = uvicorn_options(settings)
    return app
