"""`POST /api/channels/test`: validate a channel's configuration and check it live where an
adapter exists (email: connect and authenticate to the tenant's SMTP server)."""

from __future__ import annotations

from typing import Any

from gateway.auth import TenantPrincipal
from gateway.channel_models import EmailConfig
from gateway.channels import smtp_email
from gateway.errors import Conflict, ValidationFailed
from gateway.services.channel_config import ChannelConfigService
from gateway.validation import normalize_e164, normalize_email


class ChannelTests:
    def __init__(self, channels: ChannelConfigService) -> None:
        self.channels = channels

    async def run(self, principal: TenantPrincipal, channel: str, to: str) -> dict[str, Any]:
        try:
            to = normalize_email(to) if channel == "email" else normalize_e164(to)
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
        if channel == "email":
            config = state.config()
            assert isinstance(config, EmailConfig)
            check = await smtp_email.check_connection(
                config, self.channels.settings.get("SMTP_CA_FILE")
            )
            await self.channels.record_error(
                principal.db, channel, None if check.ok else check.detail
            )
            return {
                "channel": channel,
                "to": to,
                "ok": check.ok,
                "live": True,
                "stage": check.stage,
                "outcome": check.outcome,
                "detail": check.detail,
                "smtp_code": check.code,
            }
        return {
            "channel": channel,
            "to": to,
            "ok": True,
            "live": False,
            "stage": "validated",
            "outcome": "ok",
            "detail": "configuration is complete; no live provider check is available for "
            f"the {channel} channel yet",
        }
