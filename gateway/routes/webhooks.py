"""Provider webhooks, one route for all: `POST /webhooks/{provider}/{kind}` hands the
request to the webhook service, which asks the provider to verify and parse it. Today's
public URLs are instances of it (`/webhooks/twilio/status`, `…/sms`, `…/voice`,
`…/call-status`, `/webhooks/telnyx/events`); WhatsApp's are scoped to a tenant by slug."""

from __future__ import annotations

from starlette.responses import Response

from gateway.providers.base import WebhookReply, WebhookRequest
from gateway.routing import Ctx, Endpoint


async def _request(ctx: Ctx) -> WebhookRequest:
    request = ctx.request
    url = ctx.gw.settings.public_base_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return WebhookRequest(
        method=request.method,
        url=url,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.body(),
        query=dict(request.query_params),
    )


def _response(reply: WebhookReply) -> Response:
    if reply.status == 204:
        return Response(status_code=204)
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)


async def provider_webhook(ctx: Ctx) -> Response:
    reply = await ctx.gw.webhooks.handle(
        ctx.param("provider"), ctx.param("kind"), await _request(ctx)
    )
    return _response(reply)


async def whatsapp_verify(ctx: Ctx) -> Response:
    reply = await ctx.gw.webhooks.handle(
        "whatsapp", "verify", await _request(ctx), tenant_slug=ctx.param("tenant_slug")
    )
    return _response(reply)


async def whatsapp_event(ctx: Ctx) -> Response:
    reply = await ctx.gw.webhooks.handle(
        "whatsapp", "events", await _request(ctx), tenant_slug=ctx.param("tenant_slug")
    )
    return _response(reply)


ENDPOINTS = [
    # the tenant-scoped WhatsApp routes first: they would also match the generic one
    Endpoint(
        "GET",
        "/webhooks/whatsapp/{tenant_slug}",
        whatsapp_verify,
        "signature",
        "Meta's webhook verification handshake",
        tags=["webhooks"],
    ),
    Endpoint(
        "POST",
        "/webhooks/whatsapp/{tenant_slug}",
        whatsapp_event,
        "signature",
        "WhatsApp statuses and inbound messages (Meta or 360dialog)",
        tags=["webhooks"],
    ),
    Endpoint(
        "POST",
        "/webhooks/{provider}/{kind}",
        provider_webhook,
        "signature",
        "A provider's webhook: the provider verifies its signature and parses it",
        tags=["webhooks"],
        form=True,
        description=(
            "Twilio: `status` (message status callbacks, sent automatically as each "
            "message's StatusCallback), `sms` (inbound SMS, STOP/START handled), `voice` "
            "(a call on the shared line: TwiML bridging it to the tenant's Vapi assistant, "
            "a `<Dial>` to its fallback number, or a polite `<Say>` + `<Hangup>`), "
            "`call-status` (how a call ended; also the fallback `<Dial>`'s action). "
            "Telnyx: `events` (message events, Ed25519-signed). Twilio's requests are form "
            "posts, Telnyx's JSON."
        ),
        responses={404: "No such provider webhook"},
    ),
]
