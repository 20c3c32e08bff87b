"""`POST /api/channels/test`: send a real test message and report the provider's answer.

The test message takes the path of every message: accepted by the messaging service (the
same validation, suppressions, sender and price; logged and billed like any other, with
`metadata.channel_test = true`), then sent at once by the dispatcher's own send step — the
same provider, status transitions and events. The channel may still be off; a transient
failure is reported rather than retried. The phone channel is validated only.

A live test takes a token from the tenant's send limit (the one the send endpoints use) and
one from its own per-tenant, per-channel limit, both or neither, before anything is written
or sent: a 429 means nothing happened."""

from __future__ import annotations

from typing import Any

from gateway.errors import Conflict, ValidationFailed
from gateway.providers.base import ProviderError, SendResult
from gateway.providers.registry import Providers
from gateway.regions import tenant_region
from gateway.services.channel_config import ChannelConfigService
from gateway.services.dispatcher import Dispatcher
from gateway.services.messaging import Draft, MessagingService
from gateway.services.principal import TenantPrincipal
from gateway.services.ratelimit import Limiter, take_all
from gateway.validation import normalize_e164, normalize_email

TEST_TEXT = "Channel Gateway test message: this channel works."
TEST_SUBJECT = "Channel Gateway test"
# the provider each channel's messages go to when accepted
_PROVIDER_OF = {"email": "smtp"}


class ChannelTests:
    def __init__(
        self,
        channels: ChannelConfigService,
        providers: Providers,
        messaging: MessagingService,
        dispatcher: Dispatcher,
        send_limiter: Limiter | None = None,
        test_limiter: Limiter | None = None,
    ) -> None:
        self.channels = channels
        self.providers = providers
        self.messaging = messaging
        self.dispatcher = dispatcher
        self.send_limiter = send_limiter
        self.test_limiter = test_limiter

    async def _meter(self, tenant_id: str, channel: str) -> None:
        claims: list[tuple[Limiter, str]] = []
        if self.test_limiter is not None:
            claims.append((self.test_limiter, f"{tenant_id}:{channel}"))
        if self.send_limiter is not None:
            claims.append((self.send_limiter, tenant_id))
        await take_all(claims)

    async def run(self, principal: TenantPrincipal, channel: str, to: str) -> dict[str, Any]:
        try:
            if channel == "email":
                to = normalize_email(to)
            else:
                to = normalize_e164(to, tenant_region(principal.tenant))
        except ValueError as exc:
            raise ValidationFailed.one("to", str(exc)) from None
        state = await self.channels.load(principal.db, channel)
        missing = self.channels.missing(state)
        if missing:
            raise Conflict(
                f"The {channel} channel is not configured; missing: " + ", ".join(missing),
                code="channel_not_configured",
                details={"missing": missing},
            )
        result: dict[str, Any] = {"channel": channel, "to": to}
        if channel == "phone":
            return {
                **result,
                "ok": True,
                "live": False,
                "outcome": "ok",
                "detail": "configuration is complete; calls are checked by calling in",
            }
        provider = self._provider(channel, state.config())
        if self.providers.sender(provider) is None:
            return {
                **result,
                "ok": False,
                "live": False,
                "outcome": "configuration",
                "detail": f"the gateway has no {channel} provider configured",
            }
        await self._meter(principal.tenant.id, channel)
        draft = Draft(
            channel,
            to,
            body=TEST_TEXT,
            subject=TEST_SUBJECT if channel == "email" else None,
            message_type="notification",
            metadata={"channel_test": True},
            request={"channel_test": True, "to": to},
        )
        message, _ = await self.messaging.accept(principal, draft, None, hold=True)
        outcome = await self.dispatcher.send_now(str(message["id"]))
        result.update(live=True, message_id=message["id"])
        if isinstance(outcome, SendResult):
            await self.channels.record_error(principal.db, channel, None)
            return {
                **result,
                "ok": True,
                "outcome": "ok",
                "provider": outcome.provider,
                "provider_message_id": outcome.provider_message_id,
                "provider_status": outcome.provider_status,
                "detail": "sent",
            }
        await self.channels.record_error(principal.db, channel, outcome.reason)
        return {**result, **_failure(outcome)}

    def _provider(self, channel: str, config: Any) -> str:
        if channel == "whatsapp":
            return str(config.provider)
        return _PROVIDER_OF.get(channel) or self.providers.names(channel)[0]


def _failure(error: ProviderError) -> dict[str, Any]:
    return {"ok": False, "outcome": error.kind, "code": error.code, "detail": error.reason}
