"""Operations: liveness, readiness, the OpenAPI document."""

from __future__ import annotations

from starlette.responses import Response

from gateway.routing import Ctx, Endpoint, json_response
from gateway.services.health import readiness


async def healthz(ctx: Ctx) -> Response:
    return json_response({"status": "ok"})


async def readyz(ctx: Ctx) -> Response:
    state = await readiness(ctx.gw.db, ctx.gw.settings)
    if not state.reachable:
        return json_response({"status": "unavailable", "database": state.database}, status=503)
    if not state.ready:
        return json_response(
            {
                "status": "unavailable",
                "database": state.database,
                "pending_migrations": state.pending_migrations,
            },
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
