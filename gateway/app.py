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

from gateway import migrations
from gateway.channels.registry import Adapters
from gateway.config import Settings
from gateway.db import Database
from gateway.errors import ApiError
from gateway.http_server import read_deadlines, uvicorn_options
from gateway.metrics import Metrics
from gateway.middleware import BodyDeadlineMiddleware, BodyLimitMiddleware, RequestLogMiddleware
from gateway.openapi import build_openapi
from gateway.routes import (
    admin,
    analytics,
    booking,
    channels,
    crm,
    messages,
    ops,
    vapi,
    voice,
    webhooks,
)
from gateway.routing import Endpoint, allowed_methods
from gateway.services.booking import BookingService
from gateway.services.channel_config import ChannelConfigService
from gateway.services.channel_tests import ChannelTests
from gateway.services.cron import Scheduler
from gateway.services.dispatcher import Dispatcher, DispatchSettings
from gateway.services.inbound import InboundService
from gateway.services.messaging import MessagingService
from gateway.services.numbers import operator_numbers
from gateway.services.ratelimit import CHANNEL_TEST_LIMIT, TokenBuckets
from gateway.services.reminders import Reminders
from gateway.services.tenants import check_keyring
from gateway.services.vapi_server import VapiServer
from gateway.services.vapi_tools import TOOLS
from gateway.services.voice import VoiceService

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
        *voice.ENDPOINTS,
        *booking.ENDPOINTS,
        *crm.ENDPOINTS,
        *vapi.ENDPOINTS,
        *analytics.ENDPOINTS,
    ]


class Gateway:
    """Everything a handler needs, built once per app."""

    def __init__(self, settings: Settings, endpoints: list[Endpoint]) -> None:
        self.settings = settings
        self.db = Database(settings.database_path, settings.integer("READ_CONNECTIONS"))
        self.channels = ChannelConfigService(settings)
        self.metrics = Metrics()
        self.adapters = Adapters(settings)
        self.dispatch_options = DispatchSettings.from_settings(settings)
        self.dispatcher = Dispatcher(
            self.db, settings, self.channels, self.adapters, self.metrics, self.dispatch_options
        )
        self.messaging = MessagingService(settings, self.channels, self.metrics, self._wake)
        self.inbound = InboundService(
            self.db,
            self.metrics,
            self.dispatch_options.price_delay,
            self.dispatch_options.status_poll or None,
            operator_numbers(settings),
        )
        self.reminders = Reminders(self.db, self.channels, self.messaging)
        self.booking = BookingService(self.db, self.channels)
        self.booking.on_booked = self.reminders.confirm
        self.scheduler = Scheduler(settings.crons, self.cron_tick)
        self.vapi = VapiServer(self, TOOLS)
        self.voice = VoiceService(self.db, settings, self.channels)
        rule = settings.ratelimit("SEND_RATE_LIMITER")
        self.send_limiter = TokenBuckets(rule) if rule else None
        test_rule = settings.ratelimit("CHANNEL_TEST_RATE_LIMITER") or CHANNEL_TEST_LIMIT
        self.channel_tests = ChannelTests(
            self.channels,
            self.adapters,
            send_limiter=self.send_limiter,
            test_limiter=TokenBuckets(test_rule, what="channel tests"),
        )
        self.openapi = build_openapi(endpoints, "Channel Gateway", VERSION)
        self.run_dispatcher = settings.get("DISPATCHER", "on") != "off"

    async def cron_tick(self) -> dict[str, int]:
        """What `[triggers] crons` runs: the reminders that are due."""
        return {"reminders": await self.reminders.tick()}

    def _wake(self) -> None:
        self.dispatcher.wake()

    def check_send_rate(self, tenant_id: str) -> None:
        if self.send_limiter is not None:
            self.send_limiter.check(tenant_id)

    async def start(self) -> None:
        migrations.apply_migrations(
            self.settings.database_path,
            self.settings.migrations_dir,
            self.settings.migrations_table,
        )
        self.db.start()
        await check_keyring(self.db, self.settings.keyring)
        if self.run_dispatcher:
            await self.dispatcher.start()
            self.scheduler.start()

    async def stop(self) -> None:
        if self.run_dispatcher:
            await self.scheduler.stop()
            await self.dispatcher.stop()
        await self.adapters.aclose()
        await self.voice.aclose()
        await self.db.close()


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


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
    gateway = Gateway(settings, endpoints)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=[ep.route() for ep in endpoints],
        middleware=[
            Middleware(RequestLogMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
            Middleware(BodyDeadlineMiddleware, seconds=deadlines.body),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.endpoints = endpoints
    # what `gateway serve` hands to uvicorn.run: keep-alive, header deadline and size
    app.state.uvicorn_options = uvicorn_options(settings)
    return app
