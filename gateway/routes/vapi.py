"""Vapi's server URL: `POST /api/vapi/functions`, authenticated with the server secret
(checked by the service before the body is read)."""

from __future__ import annotations

from starlette.responses import Response

from gateway.routing import Ctx, Endpoint, json_response, read_json
from gateway.services.vapi_server import Envelope


async def vapi_functions(ctx: Ctx) -> Response:
    server = ctx.gw.vapi
    server.authenticate(ctx.request.headers)
    return json_response(await server.receive(await read_json(ctx.request)))


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/vapi/functions",
        vapi_functions,
        "signature",
        "Vapi server URL: tool-calls, end-of-call-report, status-update, assistant-request",
        tags=["voice"],
        body_schema=Envelope,
        description="Authenticated with `X-Vapi-Secret` (or `Authorization: Bearer`) equal to "
        "VAPI_WEBHOOK_SECRET. A field the gateway reads with the wrong type is a 422; a "
        "malformed tool call, an unknown function or bad arguments come back as that call's "
        "`error` result, never a 500.",
        responses={
            403: "Missing or invalid secret, or no tenant for this call (an assistant-request "
            "whose X-Tenant-Id SIP header names a tenant that does not own the SIP address)"
        },
    )
]
