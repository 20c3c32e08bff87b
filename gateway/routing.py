"""Declared endpoints: each route says its auth (and, for tenant keys, the scope it needs),
its request models and its docs, so the same declaration validates requests and generates
the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from gateway.auth import TenantPrincipal, require_admin, require_scope, require_tenant
from gateway.domain.key_scopes import KeyScope
from gateway.errors import UnsupportedMediaType
from gateway.regions import tenant_region
from gateway.store.paging import encode_cursor
from gateway.validation import parse_json, validate_model, validation_context

if TYPE_CHECKING:
    from gateway.wiring import Gateway

Auth = Literal["tenant", "admin", "none", "signature"]
_JSON_TYPE = re.compile(r"^application/([\w.+-]+\+)?json\s*(;.*)?$", re.IGNORECASE)


@dataclass
class Ctx:
    request: Request
    gw: Gateway
    body: Any = None
    query: Any = None
    principal: TenantPrincipal | None = None

    @property
    def tenant(self) -> TenantPrincipal:
        assert self.principal is not None, "endpoint declared without tenant auth"
        return self.principal

    def param(self, name: str) -> str:
        value: str = self.request.path_params[name]
        return value


Handler = Callable[[Ctx], Awaitable[Response]]


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    auth: Auth
    summary: str
    tags: Sequence[str] = ()
    body: type[BaseModel] | tuple[type[BaseModel], ...] | None = None
    query: type[BaseModel] | None = None
    form: bool = False
    # a JSON body the handler reads itself, after checking a signature: documented only
    body_schema: type[BaseModel] | None = None
    status: int = 200
    responses: dict[int, str] = field(default_factory=dict)
    description: str = ""
    # what a tenant key must hold to call it; undeclared: GET needs read, anything else config
    scope: KeyScope | None = None

    @property
    def required_scope(self) -> KeyScope:
        if self.scope is not None:
            return self.scope
        return "read" if self.method == "GET" else "config"

    def route(self) -> Route:
        return Route(self.path, self._run, methods=[self.method], name=self.handler.__name__)

    async def _run(self, request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        ctx = Ctx(request=request, gw=gw)
        if self.auth == "admin":
            require_admin(request, gw.settings.admin_api_key)
        elif self.auth == "tenant":
            ctx.principal = await require_tenant(request, gw.db, gw.settings.admin_api_key)
            require_scope(ctx.principal, self.required_scope)
        # a tenant's national-format numbers are read in its country, here and in every
        # model a service validates for this request (channel settings)
        region = tenant_region(ctx.principal.tenant) if ctx.principal is not None else None
        with validation_context(region=region):
            if self.body is not None:
                data = await read_json(request)
                ctx.body = data if isinstance(self.body, tuple) else validate_model(self.body, data)
            if self.query is not None:
                ctx.query = validate_query(self.query, request)
            return await self.handler(ctx)


async def read_json(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if not _JSON_TYPE.match(content_type):
        raise UnsupportedMediaType(
            f"Expected Content-Type application/json, got {content_type or 'none'!r}",
            code="unsupported_media_type",
        )
    return parse_json(await request.body())


def validate_query(model: type[BaseModel], request: Request) -> BaseModel:
    params = request.query_params
    data: dict[str, Any] = {}
    for key in params:
        values = params.getlist(key)
        data[key] = values if len(values) > 1 else values[0]
    return validate_model(model, data)


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves on this request's path (several endpoints may share a
    path: GET, POST and PUT /api/channels/{channel_type}/config), for a 405's Allow."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                methods |= route.methods
    return sorted(methods)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


def page_response(
    name: str, rows: Sequence[Any], limit: int, shape: Callable[[Any], Any] = dict
) -> JSONResponse:
    """One page of a list fetched with `limit + 1` rows: the extra row only tells that a next
    page exists, whose cursor holds the last shown row's id."""
    shown = rows[:limit]
    cursor = encode_cursor(shown[-1]["id"]) if len(rows) > limit else None
    return json_response({name: [shape(r) for r in shown], "next_cursor": cursor})
