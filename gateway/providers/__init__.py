"""One package per provider, each owning its whole wire (see gateway/providers/base.py for
what a provider can declare, and the README's "Adding a provider").

Registering a provider is one line here."""

from __future__ import annotations

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.providers import smtp, telnyx, twilio, vapi, whatsapp
from gateway.providers.registry import Providers

PACKAGES = (twilio, telnyx, smtp, whatsapp, vapi)


def build(settings: Settings) -> Providers:
    providers = Providers()
    for package in PACKAGES:
        package.register(providers, settings)
    _check_sms_providers(providers, settings.typed.sms_providers)
    return providers


def _check_sms_providers(providers: Providers, listed: tuple[str, ...]) -> None:
    """`SMS_PROVIDERS` may only name providers that send SMS: which ones exist is known once
    they are registered, so this is checked here, when the gateway is built (start-up)."""
    known = sorted(providers.names("sms"))
    unknown = [name for name in listed if name not in known]
    if unknown:
        which = "an unknown provider" if len(unknown) == 1 else "unknown providers"
        raise ConfigError(
            f"SMS_PROVIDERS names {which} {', '.join(repr(n) for n in unknown)}; "
            f"the SMS providers are {', '.join(known)}"
        )
