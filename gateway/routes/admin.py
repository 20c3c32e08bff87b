"""Operator endpoints: tenants, their API keys, operator-only channel fields."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator
from starlette.responses import Response

from gateway.channel_models import PhoneOperatorConfig, SmsOperatorConfig, TimeZoneName
from gateway.domain.key_scopes import ALL_SCOPES, KeyScope
from gateway.routes import admin_alerts
from gateway.routing import Ctx, Endpoint, json_response
from gateway.services import tenants as service
from gateway.validation import Country, HeaderText, RequestModel, Slug


class TenantCreate(RequestModel):
    name: Annotated[HeaderText, Field(min_length=1, max_length=200)]
    slug: Slug
    timezone: TimeZoneName = "Europe/Paris"
    country: Country | None = Field(
        None,
        description="ISO 3166-1 alpha-2 country its national-format phone numbers are read "
        "in; default: the country of its time zone",
    )


class TenantPatch(RequestModel):
    name: Annotated[HeaderText, Field(min_length=1, max_length=200)] | None = None
    timezone: TimeZoneName | None = None
    status: Literal["active", "suspended"] | None = Field(
        None,
        description="suspended: its sends, channel tests, bookings and every other write "
        "answer 403 tenant_suspended, its calls hear that the service is unavailable, its "
        "queued messages and reminders wait; active: what waited goes out",
    )
    monthly_sms_budget_eur: (
        Annotated[
            float,
            Field(ge=0, le=1e9, allow_inf_nan=False, strict=True),
            AfterValidator(lambda v: round(v, 4)),
        ]
        | None
    ) = Field(
        None,
        description="The tenant's monthly SMS budget in EUR (billed cost, calendar month "
        "UTC): above it, the sms_budget alert; null removes it",
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(
            f
            for f in self.model_fields_set
            if getattr(self, f) is None and f != "monthly_sms_budget_eur"
        )
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self


class TenantDelete(RequestModel):
    confirm: Annotated[str, Field(max_length=200)] = Field(
        description="The tenant's slug, repeated: anything else deletes nothing"
    )


class ApiKeyCreate(RequestModel):
    label: Annotated[HeaderText, Field(min_length=1, max_length=100)] | None = None
    scopes: list[KeyScope] = Field(
        default_factory=lambda: list(ALL_SCOPES),
        min_length=1,
        max_length=len(ALL_SCOPES),
        description="What the key may do: read, send, config (default: all three)",
    )


class Page(RequestModel):
    limit: int = Field(50, ge=1, le=200)
    after: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="Cursor: the last id of the previous page"
    )


async def create_tenant(ctx: Ctx) -> Response:
    body: TenantCreate = ctx.body
    tenant, key = await service.create_tenant(
        ctx.gw.db, body.name, body.slug, body.timezone, country=body.country
    )
    channels = await service.tenant_channels(ctx.gw.db, ctx.gw.channels, tenant.id)
    return json_response(
        {
            "tenant": tenant.public(),
            "api_key": key["key"],
            "api_key_id": key["id"],
            "channels": channels,
        },
        status=201,
    )


async def list_tenants(ctx: Ctx) -> Response:
    page: Page = ctx.query
    tenants, next_cursor = await service.list_tenants(ctx.gw.db, page.limit, page.after)
    return json_response({"tenants": [t.public() for t in tenants], "next_cursor": next_cursor})


async def get_tenant(ctx: Ctx) -> Response:
    tenant = await service.require_tenant(ctx.gw.db, ctx.param("tenant_id"))
    keys = await service.list_api_keys(ctx.gw.db, tenant.id)
    channels = await service.tenant_channels(ctx.gw.db, ctx.gw.channels, tenant.id)
    return json_response({"tenant": tenant.public(), "api_keys": keys, "channels": channels})


async def update_tenant(ctx: Ctx) -> Response:
    body: TenantPatch = ctx.body
    changes = body.model_dump(include=body.model_fields_set)
    tenant = await service.update_tenant(
        ctx.gw.db, ctx.param("tenant_id"), changes, ctx.gw.messaging.wake
    )
    return json_response({"tenant": tenant.public()})


async def delete_tenant(ctx: Ctx) -> Response:
    query: TenantDelete = ctx.query
    await service.delete_tenant(ctx.gw.db, ctx.param("tenant_id"), query.confirm)
    return Response(status_code=204)


async def create_api_key(ctx: Ctx) -> Response:
    body: ApiKeyCreate = ctx.body
    tenant = await service.require_tenant(ctx.gw.db, ctx.param("tenant_id"))
    key = await service.create_api_key(ctx.gw.db, tenant.id, body.label, tuple(body.scopes))
    return json_response(key, status=201)


async def revoke_api_key(ctx: Ctx) -> Response:
    tenant = await service.require_tenant(ctx.gw.db, ctx.param("tenant_id"))
    await service.revoke_api_key(ctx.gw.db, tenant.id, ctx.param("key_id"))
    return Response(status_code=204)


async def operator_channel_config(ctx: Ctx) -> Response:
    tenant = await service.require_tenant(ctx.gw.db, ctx.param("tenant_id"))
    view = await service.update_operator_fields(
        ctx.gw.db, ctx.gw.channels, tenant, ctx.param("channel_type"), ctx.body
    )
    return json_response(view)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/admin/tenants",
        create_tenant,
        "admin",
        "Create a tenant",
        tags=["operator"],
        body=TenantCreate,
        status=201,
        responses={409: "slug_taken: another tenant has this slug"},
        description="Creates the tenant, its four channel rows (disabled) and a first API "
        "key, which is returned once and never again.",
    ),
    Endpoint(
        "GET",
        "/admin/tenants",
        list_tenants,
        "admin",
        "List tenants",
        tags=["operator"],
        query=Page,
    ),
    Endpoint(
        "GET",
        "/admin/tenants/{tenant_id}",
        get_tenant,
        "admin",
        "A tenant with its keys and channels",
        tags=["operator"],
    ),
    Endpoint(
        "PATCH",
        "/admin/tenants/{tenant_id}",
        update_tenant,
        "admin",
        "Edit, suspend or resume a tenant",
        tags=["operator"],
        body=TenantPatch,
        responses={404: "tenant_not_found"},
        description="Changes the fields given (name, timezone, status, "
        "monthly_sms_budget_eur) and nothing else. "
        "A suspended tenant keeps read access to its data; resuming sends what waited.",
    ),
    Endpoint(
        "DELETE",
        "/admin/tenants/{tenant_id}",
        delete_tenant,
        "admin",
        "Delete a tenant and all its data",
        tags=["operator"],
        query=TenantDelete,
        status=204,
        responses={
            404: "tenant_not_found",
            422: "confirmation_mismatch: confirm is not the tenant's slug; nothing deleted",
        },
        description="Removes the tenant, its API keys, channel configurations, numbers, "
        "messages and their events, suppressions, calls, appointments, prospects and "
        "tickets. Requires ?confirm=<the tenant's slug>. Cannot be undone.",
    ),
    Endpoint(
        "POST",
        "/admin/tenants/{tenant_id}/api-keys",
        create_api_key,
        "admin",
        "Issue an API key (shown once)",
        tags=["operator"],
        body=ApiKeyCreate,
        status=201,
    ),
    Endpoint(
        "DELETE",
        "/admin/tenants/{tenant_id}/api-keys/{key_id}",
        revoke_api_key,
        "admin",
        "Revoke an API key",
        tags=["operator"],
        status=204,
    ),
    Endpoint(
        "PUT",
        "/admin/tenants/{tenant_id}/channels/{channel_type}/config",
        operator_channel_config,
        "admin",
        "Set operator-only channel fields",
        tags=["operator"],
        body=(PhoneOperatorConfig, SmsOperatorConfig),
        description="JSON merge patch of the operator-only fields: phone "
        "(vapi_mode, vapi_assistant_id, vapi_phone_number_id, vapi_sip_uri, "
        "vapi_sip_phone_number_id, dedicated_numbers, price_per_minute) "
        "and sms (sender, price_per_segment, providers).",
    ),
]


async def sync_assistant(ctx: Ctx) -> Response:
    from gateway.services.provisioning import sync_assistant as sync

    tenant = await service.require_tenant(ctx.gw.db, ctx.param("tenant_id"))
    view = await sync(tenant, ctx.gw.settings, ctx.gw.channels, ctx.gw.voice)
    return json_response(view)


ENDPOINTS.append(
    Endpoint(
        "POST",
        "/admin/tenants/{tenant_id}/assistant",
        sync_assistant,
        "admin",
        "Create or update the tenant's Vapi assistant",
        tags=["operator"],
        description="Creates the assistant (or updates the one in the phone configuration) "
        "with the function tools and their JSON schemas, the server URL PUBLIC_BASE_URL + "
        "/api/vapi/functions and VAPI_WEBHOOK_SECRET, then stores its id as "
        "vapi_assistant_id; in SIP mode (vapi_mode = sip) also creates or updates the "
        "tenant's Vapi SIP number and stores vapi_sip_uri and vapi_sip_phone_number_id.",
        responses={409: "VAPI_API_KEY or VAPI_WEBHOOK_SECRET missing", 502: "Vapi refused"},
    )
)

# GET /admin/alerts
ENDPOINTS += admin_alerts.ENDPOINTS
