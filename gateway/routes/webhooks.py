"""Provider webhooks: Twilio message status and inbound SMS, WhatsApp (Meta and 360dialog).
Every one is authenticated by its provider's signature before anything is parsed or written:
unsigned or forged answers 403 and writes nothing."""

from __future__ import annotations

import hmac
import logging
from datetime import UTC
from urllib.parse import parse_qsl

from starlette.responses import PlainTextResponse, Response
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from gateway.channel_models import WhatsAppConfig
from gateway.db import TenantDB
from gateway.errors import ApiError, BadRequest, Forbidden
from gateway.ids import iso
from gateway.routing import Ctx, Endpoint
from gateway.services.inbound import START_WORDS, STOP_WORDS, InboundText
from gateway.services.message_status import StatusReport
from gateway.store import tenants as tenant_store
from gateway.validation import loads_json, normalize_e164

log = logging.getLogger("gateway.webhooks")
D360_SECRET_HEADER = "x-webhook-secret"
WHATSAPP_STATUS = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}


def _forged(source: str, why: str) -> Forbidden:
    log.warning("rejected webhook", extra={"source": source, "reason": why})
    return Forbidden("Missing or invalid webhook signature", code="invalid_signature")


async def twilio_form(ctx: Ctx, source: str) -> dict[str, str]:
    """The form Twilio posted, after checking X-Twilio-Signature against the public URL."""
    token = ctx.gw.settings.get("TWILIO_AUTH_TOKEN")
    signature = ctx.request.headers.get("x-twilio-signature")
    if not token or not signature:
        raise _forged(source, "no signature" if token else "TWILIO_AUTH_TOKEN not set")
    raw = await ctx.request.body()
    try:
        params = dict(parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise _forged(source, "undecodable body") from None
    url = ctx.gw.settings.public_base_url + ctx.request.url.path
    if ctx.request.url.query:
        url += "?" + ctx.request.url.query
    if not RequestValidator(token).validate(url, params, signature):
        raise _forged(source, "signature mismatch")
    return params


def _twiml(body: str) -> Response:
    return Response(body, media_type="text/xml")


async def twilio_status(ctx: Ctx) -> Response:
    params = await twilio_form(ctx, "twilio_status")
    report = ctx.gw.inbound.twilio_report(params)
    if report is not None:
        await ctx.gw.inbound.apply_status(
            report, message_id=ctx.request.query_params.get("mid"), provider="twilio"
        )
    return Response(status_code=204)


async def twilio_sms(ctx: Ctx) -> Response:
    params = await twilio_form(ctx, "twilio_sms")
    empty = _twiml(str(MessagingResponse()))
    try:
        sender = normalize_e164(params.get("From", ""))
        to = normalize_e164(params.get("To", ""))
    except ValueError:
        return empty
    body = params.get("Body", "")
    tenants = await ctx.gw.inbound.tenants_for_inbound("sms", to, sender)
    if not tenants:
        log.info("inbound SMS for no known tenant")
        return empty
    text = InboundText("sms", "twilio", params.get("MessageSid", ""), sender, to, body, params)
    if text.provider_message_id:
        await ctx.gw.inbound.record_inbound(tenants[0], text)
    word = body.strip().upper()
    if word in STOP_WORDS | START_WORDS:
        await ctx.gw.inbound.opt_out(tenants, "sms", sender, word)
    return empty


# stands in for an unknown slug, so the answer never tells existing slugs from unknown ones
_NO_TENANT = WhatsAppConfig()


async def _whatsapp_config(ctx: Ctx) -> tuple[str, WhatsAppConfig]:
    """The tenant and its WhatsApp settings; an unknown slug, or settings that cannot be
    read, get a configuration without secrets, which every signature check then refuses
    exactly like a wrong signature."""
    tenant = await tenant_store.get_tenant(ctx.gw.db, ctx.param("tenant_slug"))
    if tenant is None or tenant.slug != ctx.param("tenant_slug"):
        return "", _NO_TENANT
    try:
        state = await ctx.gw.channels.load(TenantDB(ctx.gw.db, tenant.id), "whatsapp")
        config = state.config()
    except (ApiError, ValueError):
        return "", _NO_TENANT
    assert isinstance(config, WhatsAppConfig)
    return tenant.id, config


def _matches(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and hmac.compare_digest(
        str(expected).encode(), str(given).encode()
    )


async def whatsapp_verify(ctx: Ctx) -> Response:
    _, config = await _whatsapp_config(ctx)
    query = ctx.request.query_params
    token = config.verify_token.get_secret_value() if config.verify_token else None
    if query.get("hub.mode") != "subscribe" or not _matches(token, query.get("hub.verify_token")):
        raise _forged("whatsapp_verify", "verify token mismatch")
    return PlainTextResponse(query.get("hub.challenge", ""))


async def whatsapp_event(ctx: Ctx) -> Response:
    from gateway.channels.whatsapp import parse_webhook, verify_meta_signature

    tenant_id, config = await _whatsapp_config(ctx)
    raw = await ctx.request.body()
    if config.provider == "meta_cloud":
        secret = config.app_secret.get_secret_value() if config.app_secret else ""
        header = ctx.request.headers.get("x-hub-signature-256")
        if not secret or not verify_meta_signature(raw, header, secret):
            raise _forged("whatsapp", "X-Hub-Signature-256 mismatch")
    else:
        token = config.verify_token.get_secret_value() if config.verify_token else None
        if not _matches(token, ctx.request.headers.get(D360_SECRET_HEADER)):
            raise _forged("whatsapp", "360dialog secret header mismatch")
    try:
        payload = loads_json(raw)
    except ValueError as exc:
        raise BadRequest(f"The webhook body is not JSON: {exc}", code="malformed_json") from None
    if not isinstance(payload, dict):
        raise BadRequest("The webhook body is not a JSON object", code="malformed_json")
    statuses, inbound = parse_webhook(payload)
    for update in statuses:
        status = WHATSAPP_STATUS.get(update.status)
        if status is None:
            continue
        report = StatusReport(
            status=status,
            provider_status=update.status,
            source=config.provider,
            payload=update.raw,
            error_code=update.error_code,
            error_reason=update.error_reason,
            provider_message_id=update.wamid,
            at=iso(update.timestamp.astimezone(UTC)),
        )
        await ctx.gw.inbound.apply_status(report, provider=config.provider, tenant_id=tenant_id)
    for message in inbound:
        text = InboundText(
            "whatsapp",
            config.provider,
            message.wamid,
            message.from_wa_id,
            config.phone_number_id or message.phone_number_id,
            message.text or "",
            message.raw,
        )
        await ctx.gw.inbound.record_inbound(tenant_id, text)
    return Response(status_code=200)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/webhooks/twilio/status",
        twilio_status,
        "signature",
        "Twilio message status callback",
        tags=["webhooks"],
        form=True,
        status=204,
    ),
    Endpoint(
        "POST",
        "/webhooks/twilio/sms",
        twilio_sms,
        "signature",
        "Twilio inbound SMS (STOP/START handled)",
        tags=["webhooks"],
        form=True,
    ),
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
]
