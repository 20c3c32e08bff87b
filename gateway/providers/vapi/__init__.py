"""Vapi: the voice assistants. The bridge of a call to an assistant (bypass, or the tenant's
SIP address), the assistants themselves (provisioning), the server messages it sends us and
their secret."""

from __future__ import annotations

from gateway.config import Settings
from gateway.providers.registry import Providers
from gateway.providers.vapi.client import VapiClient
from gateway.settings_model import reveal


def register(providers: Providers, settings: Settings) -> None:
    typed = settings.typed

    def client() -> VapiClient | None:
        key = reveal(typed.vapi_api_key)
        if not key:
            return None
        return VapiClient(typed.vapi_api_base, key, typed.provider_timeout_seconds)

    providers.register("vapi", VapiClient, {"voice_agent"}, client)
