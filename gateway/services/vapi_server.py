"""Vapi's server URL (`POST /api/vapi/functions`): tool calls, end-of-call reports, status
updates and assistant requests, each for the tenant the call belongs to.

The tenant of a message is found from the call the bridge recorded (Vapi call id), else the
assistant id, else the tenant id the bridge put in the call's metadata; none is a 403.
Tool calls never fail the HTTP request: an unknown function or bad arguments come back as an
`error` result the assistant can say.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from gateway.auth import TenantPrincipal
from gateway.db import TenantDB
from gateway.errors import Forbidden
from gateway.ids import iso, parse_iso
from gateway.services import pricing
from gateway.store import channels as channel_store
from gateway.store import tenants as tenant_store
from gateway.validation import field_errors

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.vapi")
ToolHandler = Callable[["ToolContext", dict[str, Any]], Awaitable[str]]


class ToolError(Exception):
    """A message for the assistant to say: the call went wrong in a way the caller can fix."""


class ToolContext:
    def __init__(self, gw: Gateway, principal: TenantPrincipal, call: dict[str, Any]) -> None:
        self.gw = gw
        self.principal = principal
        self.call = call

    @property
    def call_id(self) -> str | None:
        value = self.call.get("id")
        return str(value) if value else None

    @property
    def caller(self) -> str | None:
        customer = self.call.get("customer") or {}
        number = customer.get("number")
        return str(number) if number else None


def parse_arguments(model: type[BaseModel], arguments: dict[str, Any]) -> Any:
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(f"{f['field']} {f['message']}" for f in field_errors(exc))
        raise ToolError(f"invalid arguments: {problems}") from None


def _metadata_tenant(call: dict[str, Any], message: dict[str, Any]) -> str | None:
    for holder in (
        call.get("metadata"),
        (call.get("assistantOverrides") or {}).get("metadata"),
        (message.get("assistant") or {}).get("metadata"),
    ):
        if isinstance(holder, dict) and holder.get("tenant_id"):
            return str(holder["tenant_id"])
    return None


class VapiServer:
    def __init__(self, gw: Gateway, tools: dict[str, ToolHandler]) -> None:
        self.gw = gw
        self.tools = tools

    async def tenant_of(self, message: dict[str, Any]) -> str | None:
        call = message.get("call") or {}
        voice = self.gw.voice
        if call.get("id"):
            found = await voice.tenant_for_vapi_call(str(call["id"]))
            if found:
                return found
        assistant_id = call.get("assistantId") or (message.get("assistant") or {}).get("id")
        if assistant_id:
            found = await voice.tenant_for_assistant(str(assistant_id))
            if found:
                return found
        candidate = _metadata_tenant(call, message)
        if candidate:
            tenant = await tenant_store.get_tenant(self.gw.db, candidate)
            if tenant is not None:
                return tenant.id
        return None

    async def handle(self, body: dict[str, Any]) -> dict[str, Any]:
        message = body.get("message")
        if not isinstance(message, dict):
            raise Forbidden("Not a Vapi server message", code="invalid_message")
        kind = message.get("type")
        if kind == "assistant-request":
            return await self._assistant_request(message)
        tenant_id = await self.tenant_of(message)
        if tenant_id is None:
            raise Forbidden("No tenant for this call", code="unknown_call")
        tenant = await tenant_store.get_tenant(self.gw.db, tenant_id)
        assert tenant is not None
        principal = TenantPrincipal(tenant, "vapi", TenantDB(self.gw.db, tenant.id))
        if kind == "tool-calls":
            return await self._tool_calls(principal, message)
        if kind == "end-of-call-report":
            await self._end_of_call(principal, message)
        elif kind == "status-update":
            await self._status_update(principal, message)
        return {}

    async def _tool_calls(
        self, principal: TenantPrincipal, message: dict[str, Any]
    ) -> dict[str, Any]:
        context = ToolContext(self.gw, principal, message.get("call") or {})
        results = []
        for item in message.get("toolCallList") or []:
            function = (item or {}).get("function") or {}
            name = str(function.get("name") or "")
            entry: dict[str, Any] = {"toolCallId": item.get("id"), "name": name}
            handler = self.tools.get(name)
            try:
                if handler is None:
                    raise ToolError(f"unknown function {name!r}")
                arguments = function.get("arguments") or {}
                if isinstance(arguments, str):
                    try:
                        arguments = json.loads(arguments) if arguments.strip() else {}
                    except json.JSONDecodeError:
                        raise ToolError("arguments are not valid JSON") from None
                if not isinstance(arguments, dict):
                    raise ToolError("arguments must be a JSON object")
                entry["result"] = await handler(context, arguments)
            except ToolError as exc:
                entry["error"] = str(exc)
            except Exception:
                log.exception("tool call failed", extra={"tool": name})
                entry["error"] = "an internal error occurred; please try again"
            results.append(entry)
        return {"results": results}

    async def _assistant_request(self, message: dict[str, Any]) -> dict[str, Any]:
        """A number imported into Vapi asks which assistant answers: the tenant's, found from
        the called number, else from the Vapi phone number id."""
        call = message.get("call") or {}
        phone = message.get("phoneNumber") or call.get("phoneNumber") or {}
        number = phone.get("number")
        found = await self.gw.voice.tenant_for_called_number(str(number)) if number else None
        if found and found[1]:
            return {"assistantId": found[1]}
        number_id = phone.get("id") or call.get("phoneNumberId")
        if number_id:
            rows = await channel_store.tenants_with_vapi_number(self.gw.db, str(number_id))
            live = [r for r in rows if r["enabled"] and r["assistant_id"]]
            if len(live) == 1:
                return {"assistantId": live[0]["assistant_id"]}
        return {"error": "Sorry, this number is not in service."}

    async def _status_update(self, principal: TenantPrincipal, message: dict[str, Any]) -> None:
        call = message.get("call") or {}
        if not call.get("id"):
            return
        fields: dict[str, Any] = {"status": str(message.get("status") or "unknown")}
        if message.get("endedReason"):
            fields["ended_reason"] = str(message["endedReason"])
        await self.gw.voice.update_vapi_call(principal.tenant.id, str(call["id"]), fields)

    async def _end_of_call(self, principal: TenantPrincipal, message: dict[str, Any]) -> None:
        call = message.get("call") or {}
        if not call.get("id"):
            return
        artifact = message.get("artifact") or {}
        analysis = message.get("analysis") or {}
        started = _when(message.get("startedAt") or call.get("startedAt"))
        ended = _when(message.get("endedAt") or call.get("endedAt"))
        duration = (ended - started).total_seconds() if started and ended else None
        if duration is None and message.get("durationSeconds") is not None:
            duration = float(message["durationSeconds"])
        state = await self.gw.channels.load(principal.db, "phone")
        price = state.operator_settings.get("price_per_minute")
        if price is None:
            price = float(self.gw.settings.decimal("CALL_PRICE_PER_MINUTE"))
        minutes = math.ceil(duration / 60) if duration and duration > 0 else 0
        billed = pricing.billed_cost(price, minutes)
        rate = float(self.gw.settings.decimal("USD_EUR_RATE"))
        cost_usd = message.get("cost", call.get("cost"))
        provider_cost = pricing.money(abs(float(cost_usd)) * rate) if cost_usd is not None else None
        fields: dict[str, Any] = {
            "status": "ended",
            "ended_reason": message.get("endedReason") or call.get("endedReason"),
            "started_at": iso(started) if started else None,
            "ended_at": iso(ended) if ended else None,
            "duration_seconds": round(duration, 3) if duration is not None else None,
            "provider_cost_usd": float(cost_usd) if cost_usd is not None else None,
            "exchange_rate_usd_eur": rate if cost_usd is not None else None,
            "provider_cost": provider_cost,
            "price_per_minute": price,
            "billed_minutes": minutes,
            "billed_cost": billed,
            "margin": pricing.margin(billed, provider_cost),
            "summary": analysis.get("summary") or message.get("summary"),
            "transcript": artifact.get("transcript") or message.get("transcript"),
            "recording_url": artifact.get("recordingUrl") or message.get("recordingUrl"),
        }
        await self.gw.voice.update_vapi_call(
            principal.tenant.id, str(call["id"]), {k: v for k, v in fields.items() if v is not None}
        )


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parse_iso(str(value))
    except ValueError:
        return None
