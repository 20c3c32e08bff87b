"""Every provider webhook, whoever calls it: the provider verifies and parses its own request
(gateway/providers/*/webhooks.py); this applies what it says — status reports, inbound
messages, a call coming in, how a call went — and answers what the provider expects.

Unsigned or forged requests answer 403 and nothing is read further or written (but the count
of the provider's webhook failures in a row, for the alerts: nothing of the request). A webhook
scoped to a tenant (WhatsApp's, by slug) is verified with that tenant's secrets; an unknown
slug is refused exactly like a wrong signature, so slugs cannot be enumerated."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.channel_models import WhatsAppConfig
from gateway.errors import ApiError, BadRequest, Forbidden, NotFound
from gateway.providers.base import (
    WebhookRejected,
    WebhookReply,
    WebhookRequest,
    WebhookSource,
)
from gateway.providers.registry import Providers
from gateway.services.channel_config import ChannelConfigService
from gateway.services.inbound import InboundService
from gateway.services.voice import VoiceService
from gateway.store import tenants as tenant_store
from gateway.store.engine import Engine
from gateway.store.tenant_scope import TenantDB

log = logging.getLogger("gateway.webhooks")

# stands in for an unknown slug: no secret matches it
_NO_TENANT = WhatsAppConfig()


class WebhookService:
    def __init__(
        self,
        db: Engine,
        providers: Providers,
        channels: ChannelConfigService,
        inbound: InboundService,
        voice: VoiceService,
    ) -> None:
        self.db = db
        self.providers = providers
        self.channels = channels
        self.inbound = inbound
        self.voice = voice

    def kinds(self, provider: str) -> frozenset[str]:
        source = self.providers.webhooks(provider)
        return source.kinds if source is not None else frozenset()

    # told how each webhook of a known provider went: None, or why it failed (the alerts'
    # run of webhook failures)
    on_outcome: Callable[[str, str | None], Awaitable[None]] | None = None

    async def handle(
        self, provider: str, kind: str, request: WebhookRequest, tenant_slug: str | None = None
    ) -> WebhookReply:
        source = self.providers.webhooks(provider)
        if source is None or kind not in source.kinds:
            raise NotFound(f"No webhook {provider}/{kind}", code="unknown_webhook")
        try:
            reply = await self._handle(provider, source, kind, request, tenant_slug)
        except Exception as exc:
            if self.on_outcome is not None:
                await self.on_outcome(provider, getattr(exc, "code", type(exc).__name__))
            raise
        if self.on_outcome is not None:
            await self.on_outcome(provider, None)
        return reply

    async def _handle(
        self,
        provider: str,
        source: WebhookSource,
        kind: str,
        request: WebhookRequest,
        tenant_slug: str | None,
    ) -> WebhookReply:
        tenant_id, secrets = await self._tenant(tenant_slug)
        try:
            source.verify(kind, request, secrets)
        except WebhookRejected as exc:
            log.warning("rejected webhook", extra={"source": provider, "reason": exc.reason})
            raise Forbidden(
                "Missing or invalid webhook signature", code="invalid_signature"
            ) from None
        try:
            events = source.parse(kind, request, secrets)
        except ValueError as exc:
            raise BadRequest(str(exc), code="malformed_webhook") from None
        for report in events.statuses:
            await self.inbound.apply_status(report, tenant_id=tenant_id)
        for message in events.inbound:
            await self.inbound.receive(message, tenant_id)
        if events.progress is not None:
            await self.voice.call_progress(events.progress)
        if events.call is not None:
            return await self.voice.answer_call(events.call)
        return events.reply

    async def _tenant(self, slug: str | None) -> tuple[str | None, WhatsAppConfig | None]:
        """The tenant a scoped webhook names and its WhatsApp settings; an unknown slug, or
        settings that cannot be read, get settings without secrets (refused like a forgery)."""
        if slug is None:
            return None, None
        tenant = await tenant_store.get_tenant(self.db, slug)
        if tenant is None or tenant.slug != slug:
            return None, _NO_TENANT
        try:
            state = await self.channels.load(TenantDB(self.db, tenant.id), "whatsapp")
            config = state.config()
        except (ApiError, ValueError):
            return None, _NO_TENANT
        assert isinstance(config, WhatsAppConfig)
        return tenant.id, config
