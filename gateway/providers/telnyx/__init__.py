"""Telnyx, the second SMS provider: Messaging API v2 (`POST /v2/messages`, Bearer key,
JSON) and its Ed25519-signed webhooks (`message.sent`, `message.finalized`,
`message.received`), all on one URL."""

from __future__ import annotations

from gateway.config import Settings
from gateway.providers.registry import Providers
from gateway.providers.telnyx.sms import TelnyxSms
from gateway.providers.telnyx.webhooks import TelnyxWebhooks
from gateway.settings_model import reveal

__all__ = ["TelnyxSms", "TelnyxWebhooks", "register"]


def register(providers: Providers, settings: Settings) -> None:
    typed = settings.typed

    def sms() -> TelnyxSms | None:
        key = reveal(typed.telnyx_api_key)
        if not key:
            return None
        return TelnyxSms(
            key,
            typed.telnyx_api_base,
            typed.provider_timeout_seconds,
            sender=typed.telnyx_phone_number,
            messaging_profile_id=typed.telnyx_messaging_profile_id,
        )

    providers.register(
        "telnyx",
        TelnyxSms,
        {"send", "lookup"},
        sms,
        channel="sms",
        status_callback="events",
        sender=typed.telnyx_phone_number,
    )
    providers.register(
        "telnyx",
        TelnyxWebhooks,
        {"webhooks"},
        lambda: TelnyxWebhooks(typed.telnyx_public_key),
    )
