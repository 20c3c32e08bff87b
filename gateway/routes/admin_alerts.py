"""Operator endpoint: the alerts the evaluation on the cron schedule raised."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from starlette.responses import Response

from gateway.routing import Ctx, Endpoint, json_response
from gateway.validation import RequestModel


class AlertQuery(RequestModel):
    state: Literal["active", "resolved"] | None = Field(
        None, description="active: still holding; resolved: no longer; default both"
    )
    limit: int = Field(50, ge=1, le=200)
    cursor: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="The next_cursor of the previous page"
    )


async def list_alerts(ctx: Ctx) -> Response:
    query: AlertQuery = ctx.query
    alerts, next_cursor = await ctx.gw.alerts.list(query.state, query.limit, query.cursor)
    return json_response({"alerts": alerts, "next_cursor": next_cursor})


ENDPOINTS = [
    Endpoint(
        "GET",
        "/admin/alerts",
        list_alerts,
        "admin",
        "Active and recent alerts",
        tags=["operator"],
        query=AlertQuery,
        description="Newest first: each alert's tenant (null: every tenant together), rule "
        "(failure_rate_24h, sms_budget, webhook_failures, loss_share_7d, "
        "expensive_destination), subject (the destination or webhook source, when the rule "
        "has several), value and threshold, since (first seen), last_seen, resolved_at, and "
        "notification (the ALERT_WEBHOOK_URL delivery: pending, delivered, failed; null "
        "without a webhook).",
        responses={422: "validation_failed: state, limit or cursor"},
    ),
]
