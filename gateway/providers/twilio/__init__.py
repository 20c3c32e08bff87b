"""Twilio: SMS on the operator's account (send, look-ups), its webhooks (message status,
inbound SMS, inbound calls, call status) and TwiML for the calls on the shared line."""

from __future__ import annotations

from gateway.config import Settings
from gateway.providers.registry import Providers
from gateway.providers.twilio.sms import TwilioSms
from gateway.providers.twilio.twiml import TwilioTelephony
from gateway.providers.twilio.webhooks import TwilioWebhooks
from gateway.settings_model import reveal


def register(providers: Providers, settings: Settings) -> None:
    typed = settings.typed
    token = reveal(typed.twilio_auth_token)

    def sms() -> TwilioSms | None:
        if not typed.twilio_account_sid or not token:
            return None
        return TwilioSms(
            typed.twilio_account_sid,
            token,
            typed.twilio_api_base,
            typed.provider_timeout_seconds,
        )

    providers.register(
        "twilio",
        TwilioSms,
        {"send", "lookup"},
        sms,
        channel="sms",
        status_callback="status",
        sender=typed.twilio_phone_number,
    )
    providers.register(
        "twilio",
        TwilioWebhooks,
        {"webhooks"},
        lambda: TwilioWebhooks(token),
    )
    providers.register("twilio", TwilioTelephony, {"telephony"}, TwilioTelephony)
