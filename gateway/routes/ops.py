"""Operations: liveness, readiness, the OpenAPI document."""

from __future__ import annotations

import sqlite3

from starlette.responses import Response

from gateway import migrations
from gateway.routing import Ctx, Endpoint, json_response


async def healthz(ctx: Ctx) -> Response:
    return json_response({"status": "ok"})


async def readyz(ctx: Ctx) -> Response:
    settings = ctx.gw.settings
    try:
        pending = await ctx.gw.db.read_fn(
            lambda conn: migrations.pending(
                conn, settings.migrations_dir, settings.migrations_table
            )
        )
    except sqlite3.Error as exc:
        return json_response(
            {"status": "unavailable", "database": f"unreachable: {exc}"}, status=503
        )
    if pending:
        return json_response(
            {"status": "unavailable", "database": "ok", "pending_migrations": pending},
            status=503,
        )
    return json_response({"status": "ready", "database": "ok", "pending_migrations": []})


async def metrics(ctx: Ctx) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(ctx.gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def openapi(ctx: Ctx) -> Response:
    return json_response(ctx.gw.openapi)


ENDPOINTS = [
    Endpoint("GET", "/metrics", metrics, "none", "Prometheus metrics", tags=["operations"]),
    Endpoint("GET", "/healthz", healthz, "none", "Liveness", tags=["operations"]),
    Endpoint(
        "GET",
        "/readyz",
        readyz,
        "none",
        "Readiness: database reachable and migrations current",
        tags=["operations"],
        responses={503: "Not ready"},
    ),
    Endpoint(
        "GET", "/openapi.json", openapi, "none", "This OpenAPI 3.1 document", tags=["operations"]
    ),
]
