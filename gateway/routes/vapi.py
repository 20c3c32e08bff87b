"""Vapi's server URL: `POST /api/vapi/functions`, authenticated with the server secret."""

from __future__ import annotations

import hmac
import logging

from starlette.responses import Response

from gateway.errors import Forbidden
from gateway.routing import Ctx, Endpoint, json_response, read_json, require_object

log = logging.getLogger("gateway.vapi")


def _check_secret(ctx: Ctx) -> None:
    expected = ctx.gw.settings.get("VAPI_WEBHOOK_SECRET")
    given = ctx.request.headers.get("x-vapi-secret")
    if given is None:
        scheme, _, token = ctx.request.headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        log.warning("rejected Vapi server message", extra={"reason": "secret mismatch"})
        raise Forbidden("Missing or invalid Vapi server secret", code="invalid_signature")


async def vapi_functions(ctx: Ctx) -> Response:
    _check_secret(ctx)
    body = require_object(await read_json(ctx.request))
    return json_response(await ctx.gw.vapi.handle(body))


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/vapi/functions",
        vapi_functions,
        "signature",
        "Vapi server URL: tool-calls, end-of-call-report, status-update, assistant-request",
        tags=["voice"],
        description="Authenticated with `X-Vapi-Secret` (or `Authorization: Bearer`) equal to "
        "VAPI_WEBHOOK_SECRET. Tool-call failures come back as `error` results, never a 500.",
    )
]
