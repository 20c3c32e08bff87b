"""One contact's personal data: its erasure (the tenant), and the record of erasures and
retention runs (the operator)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from starlette.responses import Response

from gateway.errors import ValidationFailed
from gateway.regions import tenant_region
from gateway.routing import Ctx, Endpoint, json_response
from gateway.services import erasure as service
from gateway.validation import RequestModel

# an email address is at most 254 characters (RFC 5321); a phone number far fewer
_MAX_CONTACT = 254


async def erase_contact(ctx: Ctx) -> Response:
    contact = ctx.param("contact")
    if len(contact) > _MAX_CONTACT:
        raise ValidationFailed.one("contact", f"must be at most {_MAX_CONTACT} characters")
    region = tenant_region(ctx.tenant.tenant)
    return json_response(await service.erase_contact(ctx.tenant.db, contact, region))


class ErasureQuery(RequestModel):
    kind: Literal["contact", "retention"] | None = None
    tenant_id: Annotated[str, Field(max_length=100)] | None = None
    limit: int = Field(50, ge=1, le=200)


async def list_erasures(ctx: Ctx) -> Response:
    query: ErasureQuery = ctx.query
    rows = await service.list_erasures(
        ctx.gw.db, query.limit, kind=query.kind, tenant_id=query.tenant_id
    )
    return json_response({"erasures": rows})


ENDPOINTS = [
    Endpoint(
        "DELETE",
        "/api/contacts/{contact}",
        erase_contact,
        "tenant",
        "Erase one contact's personal data (GDPR art. 17)",
        scope="config",
        tags=["contacts"],
        responses={
            409: "contact_in_use: messages to it are being sent, or it has upcoming "
            "appointments (cancel them first)",
            422: "validation_failed: not a phone number or an email address",
        },
        description=(
            "`contact` is a phone number (E.164, or national in the tenant's country) or an "
            "email address. Its messages, their events, calls, appointments, prospects and "
            "tickets keep their money, counts, statuses and timestamps; every address of it "
            "becomes one pseudonym and every text is removed. Queued messages to it are "
            "canceled; its suppressions stay in force. Erasing it again answers zeros."
        ),
    ),
    Endpoint(
        "GET",
        "/admin/erasures",
        list_erasures,
        "admin",
        "Erasures of contacts and retention runs, newest first (what was touched, per table)",
        tags=["operator"],
        query=ErasureQuery,
    ),
]
