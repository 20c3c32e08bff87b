"""Vapi's server URL: `POST /api/vapi/functions`, authenticated with the server secret."""

from __future__ import annotations

import hmac
import logging

from starlette.responses import Response

from gateway.channels.vapi_messages import Envelope
from gateway.errors import Forbidden
from gateway.routing import Ctx, Endpoint, json_response, read_json
from gateway.validation import validate_model

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
    envelope = validate_model(Envelope, await read_json(ctx.request))
    return json_response(await ctx.gw.vapi.handle(envelope))


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
        responses={403: "Missing or invalid secret, or no tenant for this call"},
    )
]
