"""Analytics endpoints: message and call metrics with a comparison to the period before, one
contact's timeline, money-losing items, and the operator's per-tenant totals."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, WithJsonSchema
from starlette.responses import Response

from gateway.channel_models import MessageType
from gateway.regions import tenant_region
from gateway.routing import Ctx, Endpoint, json_response
from gateway.services import analytics as service
from gateway.validation import HeaderText, RequestModel, day_in_range, instant_in_range

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# an unencoded "+01:00" in a query string arrives as " 01:00"
_SPACED_OFFSET = re.compile(r" (\d{2}(:?\d{2})?)$")
_BOUND_HELP = "must be a date (2025-11-01) or a date-time with a UTC offset (2025-11-01T09:00:00Z)"


def _bound(value: object) -> date:
    if isinstance(value, datetime):
        return instant_in_range(value)
    if isinstance(value, date):
        return day_in_range(value)
    if not isinstance(value, str):
        raise ValueError(_BOUND_HELP)
    text = value.strip()
    try:
        moment = (
            date.fromisoformat(text)
            if _DATE.fullmatch(text)
            else datetime.fromisoformat(_SPACED_OFFSET.sub(r"+\1", text))
        )
    except ValueError:
        raise ValueError(_BOUND_HELP) from None
    if not isinstance(moment, datetime):
        return day_in_range(moment)
    if moment.tzinfo is None:
        raise ValueError("needs a UTC offset (Z or +01:00), or give a date")
    return instant_in_range(moment)


Bound = Annotated[
    date,
    PlainValidator(_bound),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
            ],
            "examples": ["2025-11-01", "2025-11-01T09:00:00+01:00"],
        }
    ),
]


class PeriodQuery(RequestModel):
    start: Bound | None = Field(
        None,
        description="Inclusive. A date is midnight in the tenant's time zone (UTC for the "
        "operator); default: 30 days before end",
    )
    end: Bound | None = Field(None, description="Exclusive; default: now")


class MessageMetricsQuery(PeriodQuery):
    channel: Literal["sms", "email", "whatsapp"] | None = None
    message_type: MessageType | None = None
    agent: Annotated[HeaderText, Field(min_length=1, max_length=100)] | None = None


class CallMetricsQuery(PeriodQuery):
    pass


class CommunicationsQuery(RequestModel):
    contact: Annotated[str, Field(min_length=1, max_length=320)] = Field(
        description="A phone number (international, or national in the tenant's country) or "
        "an email address"
    )
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=500, description="next_cursor of the previous page")


class UnprofitableQuery(PeriodQuery):
    limit: int = Field(50, ge=1, le=200)


class OperatorMetricsQuery(PeriodQuery):
    sort: Literal[
        "margin",
        "revenue",
        "cost",
        "messages",
        "calls",
        "call_revenue",
        "call_margin",
        "total_revenue",
        "total_margin",
    ] = "margin"
    order: Literal["asc", "desc"] = "desc"
    limit: int = Field(100, ge=1, le=1000)


def _tenant_period(ctx: Ctx, query: PeriodQuery) -> service.Period:
    return service.resolve_period(query.start, query.end, ctx.tenant.tenant.timezone)


async def message_metrics(ctx: Ctx) -> Response:
    query: MessageMetricsQuery = ctx.query
    filters = {"channel": query.channel, "message_type": query.message_type, "agent": query.agent}
    period = _tenant_period(ctx, query)
    return json_response(await service.message_metrics(ctx.tenant.db, period, filters))


async def call_metrics(ctx: Ctx) -> Response:
    query: CallMetricsQuery = ctx.query
    period = _tenant_period(ctx, query)
    return json_response(await service.call_metrics(ctx.tenant.db, period))


async def communications(ctx: Ctx) -> Response:
    query: CommunicationsQuery = ctx.query
    region = tenant_region(ctx.tenant.tenant)
    page = await service.timeline(
        ctx.tenant.db, query.contact, query.limit, query.cursor, region=region
    )
    return json_response(page)


async def unprofitable(ctx: Ctx) -> Response:
    query: UnprofitableQuery = ctx.query
    period = _tenant_period(ctx, query)
    return json_response(await service.unprofitable(ctx.tenant.db, period, query.limit))


async def operator_metrics(ctx: Ctx) -> Response:
    query: OperatorMetricsQuery = ctx.query
    period = service.resolve_period(query.start, query.end)
    report = await service.operator_metrics(ctx.gw.db, period, query.sort, query.order, query.limit)
    return json_response(report)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/metrics/messages",
        message_metrics,
        "tenant",
        "Message metrics for a period, compared with the period before",
        scope="read",
        tags=["analytics"],
        query=MessageMetricsQuery,
        description="Outbound messages created in [start, end): volumes, delivery, money, "
        "characters, recipients, call linkage and delivery time, by message type and by "
        "channel; the same for the period of the same length just before, and the change.",
    ),
    Endpoint(
        "GET",
        "/api/metrics/calls",
        call_metrics,
        "tenant",
        "Call metrics for a period, compared with the period before",
        scope="read",
        tags=["analytics"],
        query=CallMetricsQuery,
    ),
    Endpoint(
        "GET",
        "/api/communications",
        communications,
        "tenant",
        "Calls and messages of one contact, newest first",
        scope="read",
        tags=["analytics"],
        query=CommunicationsQuery,
    ),
    Endpoint(
        "GET",
        "/api/metrics/unprofitable",
        unprofitable,
        "tenant",
        "Messages and calls that lost money, worst first",
        scope="read",
        tags=["analytics"],
        query=UnprofitableQuery,
    ),
    Endpoint(
        "GET",
        "/admin/metrics",
        operator_metrics,
        "admin",
        "Per-tenant totals for a period",
        tags=["operator"],
        query=OperatorMetricsQuery,
    ),
]
