"""Creating or updating a tenant's Vapi assistant: the function tools with their JSON
schemas, the server URL and secret, and the tenant id in the metadata; the assistant id is
then stored in the tenant's phone configuration."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gateway.config import Settings
from gateway.db import TenantDB
from gateway.errors import Conflict, ProviderUnavailable
from gateway.services.channel_config import ChannelConfigService
from gateway.services.vapi_tools import TOOL_MODELS
from gateway.services.voice import VoiceService
from gateway.store.tenants import Tenant

DEFAULT_PROMPT = (
    "You are the phone assistant of {business}. Greet callers, answer briefly, and use the "
    "functions to check availability, book, move or cancel appointments, qualify real-estate "
    "prospects and open support tickets. Always confirm the date and time before booking."
)


def tool_schema(name: str, model: type[BaseModel], description: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema},
    }


def assistant_body(tenant: Tenant, settings: Settings, greeting: str | None) -> dict[str, Any]:
    server: dict[str, Any] = {"url": f"{settings.public_base_url}/api/vapi/functions"}
    secret = settings.get("VAPI_WEBHOOK_SECRET")
    if secret:
        server["secret"] = secret
    return {
        "name": f"{tenant.name} assistant"[:40],
        "firstMessage": greeting or f"Bonjour, {tenant.name}, que puis-je pour vous ?",
        "model": {
            "provider": "openai",
            "model": settings.get("VAPI_MODEL", "gpt-4o") or "gpt-4o",
            "messages": [
                {"role": "system", "content": DEFAULT_PROMPT.format(business=tenant.name)}
            ],
            "tools": [tool_schema(n, m, d) for n, (m, d) in TOOL_MODELS.items()],
        },
        "server": server,
        "metadata": {"tenant_id": tenant.id, "tenant_slug": tenant.slug},
    }


async def sync_assistant(
    tenant: Tenant, settings: Settings, channels: ChannelConfigService, voice: VoiceService
) -> dict[str, Any]:
    """Create the tenant's assistant, or update the one configured; returns the phone config."""
    client = voice.vapi()
    if client is None:
        raise Conflict("VAPI_API_KEY is not set on the gateway", code="vapi_not_configured")
    if not settings.get("VAPI_WEBHOOK_SECRET"):
        raise Conflict(
            "VAPI_WEBHOOK_SECRET is not set: the assistant could not call the gateway back",
            code="vapi_not_configured",
        )
    tdb = TenantDB(voice.db, tenant.id)
    state = await channels.load(tdb, "phone")
    greeting = state.tenant_settings.get("greeting")
    body = assistant_body(tenant, settings, greeting)
    existing = state.operator_settings.get("vapi_assistant_id")
    from gateway.channels.vapi import VapiError

    try:
        if existing:
            assistant = await client.update_assistant(existing, body)
        else:
            assistant = await client.create_assistant(body)
    except VapiError as exc:
        raise ProviderUnavailable(f"Vapi refused the assistant: {exc.reason}",
                                  code="vapi_error") from None  # fmt: skip
    assistant_id = str(assistant.get("id") or existing)
    return await channels.operator_update(tdb, "phone", {"vapi_assistant_id": assistant_id})
