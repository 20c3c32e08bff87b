"""What the assistants collected, per tenant: prospects, tickets, and the calls themselves."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from starlette.responses import Response

from gateway.routing import Ctx, Endpoint, page_response
from gateway.services import crm
from gateway.validation import RequestModel

Cursor = Annotated[str, Field(max_length=200, description="next_cursor of the previous page")]
CallRef = Annotated[str, Field(max_length=100)]


class ProspectQuery(RequestModel):
    project: Literal["buy", "sell", "rent", "let", "invest"] | None = None
    call_id: CallRef | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: Cursor | None = None


class TicketQuery(RequestModel):
    status: Literal["open", "in_progress", "closed"] | None = None
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    call_id: CallRef | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: Cursor | None = None


async def list_prospects(ctx: Ctx) -> Response:
    query: ProspectQuery = ctx.query
    rows = await crm.list_prospects(
        ctx.tenant.db,
        query.limit + 1,
        query.cursor,
        project=query.project,
        call_id=query.call_id,
    )
    return page_response("prospects", rows, query.limit)


async def list_tickets(ctx: Ctx) -> Response:
    query: TicketQuery = ctx.query
    rows = await crm.list_tickets(
        ctx.tenant.db,
        query.limit + 1,
        query.cursor,
        status=query.status,
        priority=query.priority,
        call_id=query.call_id,
    )
    return page_response("tickets", rows, query.limit)


class CallQuery(RequestModel):
    outcome: (
        Literal[
            "bridged", "fallback_dial", "fallback_apology", "unknown_tenant", "channel_disabled"
        ]
        | None
    ) = None
    status: Annotated[str, Field(max_length=50)] | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: Cursor | None = None


async def list_calls(ctx: Ctx) -> Response:
    query: CallQuery = ctx.query
    rows = await crm.list_calls(
        ctx.tenant.db, query.limit + 1, query.cursor, outcome=query.outcome, status=query.status
    )
    return page_response("calls", rows, query.limit)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/calls",
        list_calls,
        "tenant",
        "Calls, newest first",
        scope="read",
        tags=["voice"],
        query=CallQuery,
    ),
    Endpoint(
        "GET",
        "/api/prospects",
        list_prospects,
        "tenant",
        "Qualified prospects, newest first",
        scope="read",
        tags=["voice"],
        query=ProspectQuery,
    ),
    Endpoint(
        "GET",
        "/api/tickets",
        list_tickets,
        "tenant",
        "Support tickets, newest first",
        scope="read",
        tags=["voice"],
        query=TicketQuery,
    ),
]
