"""Creating or updating a tenant's Vapi assistant: the function tools with their JSON
schemas, the server URL and secret, and the tenant id in the metadata; the assistant id is
then stored in the tenant's phone configuration.

A tenant in SIP mode (`vapi_mode = "sip"`) also gets its own Vapi SIP address,
`sip:<user>@<VAPI_SIP_HOST>`, whose user part is 128 random bits (nobody guesses it, and the
gateway still checks every call to it, see gateway/services/vapi_server.py). It carries no
assistant, so Vapi asks our server URL which one answers each call; its URI and Vapi id are
stored with the phone settings. Syncing again updates the address (a new server secret, a
new public URL) and replaces it only when Vapi no longer knows it."""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel

from gateway.config import Settings
from gateway.domain.calls import SipNumber
from gateway.domain.errors import ProviderError
from gateway.errors import Conflict, ProviderUnavailable
from gateway.providers.base import VoiceAgent
from gateway.services.channel_config import ChannelConfigService
from gateway.services.vapi_tools import TOOL_MODELS
from gateway.services.voice import VoiceService
from gateway.settings_model import reveal
from gateway.store.tenant_scope import TenantDB
from gateway.store.tenants import Tenant

DEFAULT_PROMPT = (
    "You are the phone assistant of {business}. Greet callers, answer briefly, and use the "
    "functions to check availability, book, move or cancel appointments, qualify real-estate "
    "prospects and open support tickets. Always confirm the date and time before booking."
)
SERVER_PATH = "/api/vapi/functions"


def tool_schema(name: str, model: type[BaseModel], description: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema},
    }


def server_url(settings: Settings) -> str:
    return f"{settings.public_base_url}{SERVER_PATH}"


def assistant_body(tenant: Tenant, settings: Settings, greeting: str | None) -> dict[str, Any]:
    server: dict[str, Any] = {"url": server_url(settings)}
    secret = reveal(settings.typed.vapi_webhook_secret)
    if secret:
        server["secret"] = secret
    return {
        "name": f"{tenant.name} assistant"[:40],
        "firstMessage": greeting or f"Bonjour, {tenant.name}, que puis-je pour vous ?",
        "model": {
            "provider": "openai",
            "model": settings.typed.vapi_model,
            "messages": [
                {"role": "system", "content": DEFAULT_PROMPT.format(business=tenant.name)}
            ],
            "tools": [tool_schema(n, m, d) for n, (m, d) in TOOL_MODELS.items()],
        },
        "server": server,
        "metadata": {"tenant_id": tenant.id, "tenant_slug": tenant.slug},
    }


def new_sip_uri(host: str) -> str:
    """A fresh SIP address on Vapi's `host`: 32 hex digits are valid in a SIP user part and
    unguessable."""
    return f"sip:{secrets.token_hex(16)}@{host}"


async def sync_assistant(
    tenant: Tenant, settings: Settings, channels: ChannelConfigService, voice: VoiceService
) -> dict[str, Any]:
    """Create the tenant's assistant, or update the one configured, and in SIP mode its SIP
    address; returns the phone config."""
    client = voice.vapi()
    if client is None:
        raise Conflict("VAPI_API_KEY is not set on the gateway", code="vapi_not_configured")
    secret = reveal(settings.typed.vapi_webhook_secret)
    if not secret:
        raise Conflict(
            "VAPI_WEBHOOK_SECRET is not set: the assistant could not call the gateway back",
            code="vapi_not_configured",
        )
    tdb = TenantDB(voice.db, tenant.id)
    state = await channels.load(tdb, "phone")
    body = assistant_body(tenant, settings, state.tenant_settings.get("greeting"))
    existing = state.operator_settings.get("vapi_assistant_id")
    try:
        if existing:
            assistant = await client.update_assistant(existing, body)
        else:
            assistant = await client.create_assistant(body)
    except ProviderError as exc:
        raise _refused("the assistant", exc) from None
    assistant_id = assistant.get("id") or existing
    if not isinstance(assistant_id, str) or not assistant_id:
        raise ProviderUnavailable(
            "Vapi created an assistant but did not say its id", code="vapi_error"
        )
    # kept before the SIP address is made: a failure there must not lose the assistant
    view = await channels.operator_update(tdb, "phone", {"vapi_assistant_id": assistant_id})
    if state.operator_settings.get("vapi_mode") != "sip":
        return view
    number = await _sync_sip_number(
        client, tenant, state.operator_settings, server_url(settings), secret, settings
    )
    patch = {"vapi_sip_uri": number.sip_uri, "vapi_sip_phone_number_id": number.id}
    return await channels.operator_update(tdb, "phone", patch)


async def _sync_sip_number(
    client: VoiceAgent,
    tenant: Tenant,
    operator: dict[str, Any],
    url: str,
    secret: str,
    settings: Settings,
) -> SipNumber:
    number_id, sip_uri = operator.get("vapi_sip_phone_number_id"), operator.get("vapi_sip_uri")
    try:
        if number_id and sip_uri:
            try:
                return await client.update_sip_number(number_id, url, secret, tenant.name)
            except ProviderError as exc:
                if exc.code != "404":
                    raise
                # deleted on Vapi's side: the tenant gets a new address
        uri = new_sip_uri(settings.typed.vapi_sip_host)
        return await client.create_sip_number(uri, url, secret, tenant.name)
    except ProviderError as exc:
        raise _refused("the SIP address", exc) from None


def _refused(what: str, exc: ProviderError) -> ProviderUnavailable:
    return ProviderUnavailable(f"Vapi refused {what}: {exc.reason}", code="vapi_error")
