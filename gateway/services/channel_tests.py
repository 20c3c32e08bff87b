"""`POST /api/channels/test`: send a real test message through the channel's adapter and
report the provider's answer. The test message is logged (and billed) like any other, with
`metadata.channel_test = true`. The phone channel is validated only.

A live test takes a token from the tenant's send limit (the one the send endpoints use) and
one from its own per-tenant, per-channel limit, both or neither, before anything is written
or sent: a 429 means nothing happened."""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.auth import TenantPrincipal
from gateway.channels.base import OutboundMessage, ProviderError
from gateway.channels.registry import Adapters
from gateway.errors import Conflict, ValidationFailed
from gateway.ids import new_id, now_iso
from gateway.regions import tenant_region
from gateway.services import pricing, segments
from gateway.services.channel_config import ChannelConfigService
from gateway.services.ratelimit import TokenBuckets, take_all
from gateway.store import messages as store
from gateway.validation import normalize_e164, normalize_email

TEST_TEXT = "Channel Gateway test message: this channel works."
# what the provider said about the send: true whatever status a callback has set meanwhile
_PROVIDER_FIELDS = ("provider", "provider_message_id", "provider_status")


class ChannelTests:
    def __init__(
        self,
        channels: ChannelConfigService,
        adapters: Adapters,
        send_limiter: TokenBuckets | None = None,
        test_limiter: TokenBuckets | None = None,
    ) -> None:
        self.channels = channels
        self.adapters = adapters
        self.send_limiter = send_limiter
        self.test_limiter = test_limiter

    def _meter(self, tenant_id: str, channel: str) -> None:
        claims: list[tuple[TokenBuckets, str]] = []
        if self.test_limiter is not None:
            claims.append((self.test_limiter, f"{tenant_id}:{channel}"))
        if self.send_limiter is not None:
            claims.append((self.send_limiter, tenant_id))
        take_all(claims)

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
        config = state.config()
        operator = state.operator_settings
        sender: str | None
        if channel == "sms":
            sender = operator.get("sender") or self.channels.settings.get("TWILIO_PHONE_NUMBER")
        elif channel == "email":
            sender = getattr(config, "from_email", None)
        else:
            sender = getattr(config, "phone_number_id", None)
        adapter = self.adapters(channel, None)
        if adapter is None:
            return {
                **result,
                "ok": False,
                "live": False,
                "outcome": "configuration",
                "detail": f"the gateway has no {channel} provider configured",
            }
        self._meter(principal.tenant.id, channel)
        message_id = new_id("msg")
        public = self.channels.settings.public_base_url
        message = OutboundMessage(
            id=message_id,
            tenant_id=principal.tenant.id,
            to=to,
            body=TEST_TEXT,
            config=config,
            sender=sender,
            subject="Channel Gateway test",
            status_callback=f"{public}/webhooks/twilio/status?mid={message_id}"
            if channel == "sms"
            else None,
        )
        await principal.db.write_fn(
            lambda conn: store.insert_message(
                conn, self._row(principal, channel, message, adapter.provider, operator)
            )
        )
        try:
            sent = await adapter.send(message)
        except ProviderError as exc:
            await self._finish(
                message_id,
                principal,
                channel,
                {
                    "status": "failed",
                    "failed_at": now_iso(),
                    "error_code": exc.code or exc.kind,
                    "failure_reason": exc.reason,
                },
            )
            await self.channels.record_error(principal.db, channel, exc.reason)
            return {
                **result,
                "ok": False,
                "live": True,
                "message_id": message_id,
                "outcome": exc.kind,
                "code": exc.code,
                "detail": exc.reason,
            }
        await self._finish(
            message_id,
            principal,
            channel,
            {
                "status": "sent",
                "sent_at": now_iso(),
                "provider": sent.provider,
                "provider_message_id": sent.provider_message_id,
                "provider_status": sent.provider_status,
            },
        )
        await self.channels.record_error(principal.db, channel, None)
        return {
            **result,
            "ok": True,
            "live": True,
            "message_id": message_id,
            "outcome": "ok",
            "provider": sent.provider,
            "provider_message_id": sent.provider_message_id,
            "provider_status": sent.provider_status,
            "detail": "sent",
        }

    def _row(
        self,
        principal: TenantPrincipal,
        channel: str,
        message: OutboundMessage,
        provider: str,
        operator: dict[str, Any],
    ) -> dict[str, Any]:
        now = now_iso()
        row: dict[str, Any] = {
            "id": message.id,
            "channel": channel,
            "direction": "outbound",
            "to_address": message.to,
            "from_address": message.sender,
            "body": message.body,
            "subject": message.subject if channel == "email" else None,
            "message_type": "notification",
            "status": "sending",
            "attempts": 1,
            "attempted_at": now,
            "provider": provider,
            "character_count": len(TEST_TEXT),
            "metadata": {"channel_test": True},
            "currency": "EUR",
            "created_at": now,
            "updated_at": now,
            "billed_cost": 0.0,
            "provider_cost": 0.0,
            "margin": 0.0,
        }
        if channel == "sms":
            info = segments.analyze(TEST_TEXT)
            price = operator.get("price_per_segment")
            if price is None:
                price = float(self.channels.settings.decimal("SMS_PRICE_PER_SEGMENT"))
            row.update(
                encoding=info.encoding,
                num_segments=info.segments,
                price_per_unit=price,
                billed_cost=pricing.billed_cost(price, info.segments),
                provider_cost=None,
                margin=None,
            )
        return row

    async def _finish(
        self, message_id: str, principal: TenantPrincipal, channel: str, fields: dict[str, Any]
    ) -> None:
        def write(conn: Any) -> None:
            raw: sqlite3.Connection = conn.raw
            # a status callback may already have moved it on: a conditional transition
            status = fields.pop("status")
            details = {k: fields.pop(k) for k in _PROVIDER_FIELDS if k in fields}
            moved = store.move(
                raw,
                message_id,
                status,
                {**fields, "updated_at": now_iso()},
                only_from=store.UNFINISHED,
            )
            store.update_message(raw, message_id, details)
            store.insert_event(
                raw, message_id, principal.tenant.id, "channel_test", status, moved, {}
            )

        await principal.db.write_fn(write)
