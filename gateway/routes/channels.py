"""Tenant endpoints for channel configuration: read, replace, patch, toggle, test."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool
from starlette.responses import Response

from gateway.channel_models import (
    ChannelType,
    EmailConfig,
    PhoneConfig,
    SmsConfig,
    WhatsAppConfig,
)
from gateway.routing import Ctx, Endpoint, json_response
from gateway.validation import RequestModel

CONFIG_MODELS = (PhoneConfig, SmsConfig, EmailConfig, WhatsAppConfig)


class ToggleBody(RequestModel):
    enabled: StrictBool


class ChannelTestBody(RequestModel):
    channel: ChannelType
    to: Annotated[str, Field(min_length=3, max_length=320)] = Field(
        description="E.164 number (phone, sms, whatsapp) or email address (email)"
    )


async def list_channels(ctx: Ctx) -> Response:
    return json_response({"channels": await ctx.gw.channels.list(ctx.tenant.db)})


async def get_config(ctx: Ctx) -> Response:
    state = await ctx.gw.channels.load(ctx.tenant.db, ctx.param("channel_type"))
    return json_response(ctx.gw.channels.view(state))


async def replace_config(ctx: Ctx) -> Response:
    view = await ctx.gw.channels.replace(ctx.tenant.db, ctx.param("channel_type"), ctx.body)
    return json_response(view)


async def update_config(ctx: Ctx) -> Response:
    view = await ctx.gw.channels.update(ctx.tenant.db, ctx.param("channel_type"), ctx.body)
    return json_response(view)


async def toggle(ctx: Ctx) -> Response:
    body: ToggleBody = ctx.body
    view = await ctx.gw.channels.toggle(ctx.tenant.db, ctx.param("channel_type"), body.enabled)
    return json_response(view)


async def test_channel(ctx: Ctx) -> Response:
    body: ChannelTestBody = ctx.body
    result = await ctx.gw.channel_tests.run(ctx.tenant, body.channel, body.to)
    return json_response(result)


_CONFIG = "/api/channels/{channel_type}/config"
ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/channels",
        list_channels,
        "tenant",
        "The four channels with their enabled and configured state",
        scope="read",
        tags=["channels"],
    ),
    Endpoint(
        "GET",
        _CONFIG,
        get_config,
        "tenant",
        "A channel's configuration (secrets masked)",
        scope="read",
        tags=["channels"],
    ),
    Endpoint(
        "POST",
        _CONFIG,
        replace_config,
        "tenant",
        "Create or replace a channel's settings",
        scope="config",
        tags=["channels"],
        body=CONFIG_MODELS,
        description="Replaces every tenant-editable field; an omitted secret is removed.",
    ),
    Endpoint(
        "PUT",
        _CONFIG,
        update_config,
        "tenant",
        "Update a channel's settings partially",
        scope="config",
        tags=["channels"],
        body=CONFIG_MODELS,
        description="JSON merge patch (RFC 7396): omitted fields, secrets included, keep "
        "their value; null clears a field.",
    ),
    Endpoint(
        "POST",
        "/api/channels/{channel_type}/toggle",
        toggle,
        "tenant",
        "Enable or disable a channel",
        scope="config",
        tags=["channels"],
        body=ToggleBody,
        responses={409: "Required settings are missing (listed in details.missing)"},
    ),
    Endpoint(
        "POST",
        "/api/channels/test",
        test_channel,
        "tenant",
        "Check a channel against its provider",
        scope="send",
        tags=["channels"],
        body=ChannelTestBody,
    ),
]
