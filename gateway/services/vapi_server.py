"""Vapi's server URL (`POST /api/vapi/functions`): tool calls, end-of-call reports, status
updates and assistant requests, each for the tenant the call belongs to.

The tenant of a message is found from the call the bridge recorded (Vapi call id), else the
assistant id, else the tenant id the bridge put in the call's metadata; none is a 403.
The envelope is validated before it gets here (`gateway.channels.vapi_messages`). Tool calls
never fail the HTTP request: a malformed tool call, an unknown function or bad arguments come
back as an `error` result the assistant can say.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.auth import TenantPrincipal
from gateway.channels.vapi_messages import Call, Envelope, Message, ToolCall
from gateway.db import TenantDB
from gateway.errors import Forbidden
from gateway.ids import iso
from gateway.regions import tenant_region
from gateway.services import pricing
from gateway.store import calls as call_store
from gateway.store import channels as channel_store
from gateway.store import tenants as tenant_store
from gateway.validation import RequestModel, field_errors, loads_json, normalize_e164

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.vapi")
ToolHandler = Callable[["ToolContext", dict[str, Any]], Awaitable[str]]
_UNKNOWN = object()


class ToolError(Exception):
    """A message for the assistant to say: the call went wrong in a way the caller can fix."""


class ToolArguments(RequestModel):
    """The base of a tool's arguments: an assistant fills optional arguments it does not know
    with "" (not given) and may add arguments of its own (ignored)."""

    model_config = ConfigDict(extra="ignore")


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{f['field']} {f['message']}" for f in field_errors(exc))


class ToolContext:
    def __init__(self, gw: Gateway, principal: TenantPrincipal, call: Call) -> None:
        self.gw = gw
        self.principal = principal
        self.call = call
        self.region = tenant_region(principal.tenant)
        self._caller: Any = _UNKNOWN

    @property
    def call_id(self) -> str | None:
        return self.call.id or None

    async def caller(self) -> str | None:
        """The caller's number in E.164: Vapi's `call.customer.number`, else the number the
        bridge recorded for this Vapi call; None when neither is known (a web call)."""
        if self._caller is _UNKNOWN:
            self._caller = await self._find_caller()
        found: str | None = self._caller
        return found

    async def _find_caller(self) -> str | None:
        candidates = [self.call.customer.number if self.call.customer else None]
        if self.call_id:
            row = await call_store.get_call_by_vapi_id(self.gw.db, self.call_id)
            if row is not None and row["tenant_id"] == self.principal.tenant.id:
                candidates.append(row["from_number"])
        for number in candidates:
            if not number:
                continue
            try:
                return normalize_e164(number, self.region)
            except ValueError:
                continue
        return None


def parse_arguments(model: type[BaseModel], arguments: dict[str, Any], ctx: ToolContext) -> Any:
    """The arguments as `model`; national phone numbers are read in the tenant's country."""
    try:
        return model.model_validate(arguments, context={"region": ctx.region})
    except ValidationError as exc:
        raise ToolError(f"invalid arguments: {_problems(exc)}") from None


def _metadata_tenant(message: Message) -> str | None:
    call = message.call or Call()
    for holder in (
        call.metadata,
        call.assistantOverrides.metadata if call.assistantOverrides else None,
        message.assistant.metadata if message.assistant else None,
    ):
        if isinstance(holder, dict) and isinstance(holder.get("tenant_id"), str):
            return str(holder["tenant_id"])
    return None


class VapiServer:
    def __init__(self, gw: Gateway, tools: dict[str, ToolHandler]) -> None:
        self.gw = gw
        self.tools = tools

    async def tenant_of(self, message: Message) -> str | None:
        call = message.call or Call()
        voice = self.gw.voice
        if call.id:
            found = await voice.tenant_for_vapi_call(call.id)
            if found:
                return found
        assistant_id = call.assistantId or (message.assistant.id if message.assistant else None)
        if assistant_id:
            found = await voice.tenant_for_assistant(assistant_id)
            if found:
                return found
        candidate = _metadata_tenant(message)
        if candidate:
            tenant = await tenant_store.get_tenant(self.gw.db, candidate)
            if tenant is not None:
                return tenant.id
        return None

    async def handle(self, envelope: Envelope) -> dict[str, Any]:
        message = envelope.message
        if message.type == "assistant-request":
            return await self._assistant_request(message)
        tenant_id = await self.tenant_of(message)
        if tenant_id is None:
            raise Forbidden("No tenant for this call", code="unknown_call")
        tenant = await tenant_store.get_tenant(self.gw.db, tenant_id)
        assert tenant is not None
        principal = TenantPrincipal(tenant, "vapi", TenantDB(self.gw.db, tenant.id))
        if message.type == "tool-calls":
            return await self._tool_calls(principal, message)
        if message.type == "end-of-call-report":
            await self._end_of_call(principal, message)
        elif message.type == "status-update":
            await self._status_update(principal, message)
        return {}

    async def _tool_calls(self, principal: TenantPrincipal, message: Message) -> dict[str, Any]:
        context = ToolContext(self.gw, principal, message.call or Call())
        return {
            "results": [await self._tool_call(context, item) for item in message.toolCallList or []]
        }

    async def _tool_call(self, context: ToolContext, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            return {"toolCallId": None, "error": "this tool call is not a JSON object"}
        try:
            tool_call = ToolCall.model_validate(item)
        except ValidationError as exc:
            given = item.get("id")
            return {
                "toolCallId": given if isinstance(given, str) else None,
                "error": f"this tool call is malformed: {_problems(exc)}",
            }
        name = tool_call.function.name
        entry: dict[str, Any] = {"toolCallId": tool_call.id, "name": name}
        handler = self.tools.get(name)
        try:
            if handler is None:
                raise ToolError(f"unknown function {name!r}")
            entry["result"] = await handler(context, _arguments(tool_call))
        except ToolError as exc:
            entry["error"] = str(exc)
        except Exception:
            log.exception("tool call failed", extra={"tool": name})
            entry["error"] = "an internal error occurred; please try again"
        return entry

    async def _assistant_request(self, message: Message) -> dict[str, Any]:
        """A number imported into Vapi asks which assistant answers: the tenant's, found from
        the called number, else from the Vapi phone number id."""
        call = message.call or Call()
        phone = message.phoneNumber or call.phoneNumber
        number = phone.number if phone else None
        found = await self.gw.voice.tenant_for_called_number(number) if number else None
        if found and found[1]:
            return {"assistantId": found[1]}
        number_id = (phone.id if phone else None) or call.phoneNumberId
        if number_id:
            rows = await channel_store.tenants_with_vapi_number(self.gw.db, number_id)
            live = [r for r in rows if r["enabled"] and r["assistant_id"]]
            if len(live) == 1:
                return {"assistantId": live[0]["assistant_id"]}
        return {"error": "Sorry, this number is not in service."}

    async def _status_update(self, principal: TenantPrincipal, message: Message) -> None:
        call = message.call or Call()
        if not call.id:
            return
        fields: dict[str, Any] = {"status": message.status or "unknown"}
        if message.endedReason:
            fields["ended_reason"] = message.endedReason
        await self.gw.voice.update_vapi_call(principal.tenant.id, call.id, fields)

    async def _end_of_call(self, principal: TenantPrincipal, message: Message) -> None:
        call = message.call or Call()
        if not call.id:
            return
        started = message.startedAt or call.startedAt
        ended = message.endedAt or call.endedAt
        duration = (ended - started).total_seconds() if started and ended else None
        if duration is None and message.durationSeconds is not None:
            duration = message.durationSeconds
        state = await self.gw.channels.load(principal.db, "phone")
        price = state.operator_settings.get("price_per_minute")
        if price is None:
            price = float(self.gw.settings.decimal("CALL_PRICE_PER_MINUTE"))
        minutes = math.ceil(duration / 60) if duration and duration > 0 else 0
        billed = pricing.billed_cost(price, minutes)
        rate = float(self.gw.settings.decimal("USD_EUR_RATE"))
        cost_usd = message.cost if message.cost is not None else call.cost
        provider_cost = pricing.money(abs(cost_usd) * rate) if cost_usd is not None else None
        artifact, analysis = message.artifact, message.analysis
        fields: dict[str, Any] = {
            "status": "ended",
            "ended_reason": message.endedReason or call.endedReason,
            "started_at": iso(started) if started else None,
            "ended_at": iso(ended) if ended else None,
            "duration_seconds": round(duration, 3) if duration is not None else None,
            "provider_cost_usd": cost_usd,
            "exchange_rate_usd_eur": rate if cost_usd is not None else None,
            "provider_cost": provider_cost,
            "price_per_minute": price,
            "billed_minutes": minutes,
            "billed_cost": billed,
            "margin": pricing.margin(billed, provider_cost),
            "summary": (analysis.summary if analysis else None) or message.summary,
            "transcript": (artifact.transcript if artifact else None) or message.transcript,
            "recording_url": (artifact.recordingUrl if artifact else None) or message.recordingUrl,
        }
        await self.gw.voice.update_vapi_call(
            principal.tenant.id, call.id, {k: v for k, v in fields.items() if v is not None}
        )


def _arguments(tool_call: ToolCall) -> dict[str, Any]:
    """A tool call's arguments: Vapi sends an object or a JSON string of one."""
    arguments = tool_call.function.arguments
    if arguments is None:
        return {}
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            arguments = loads_json(arguments)
        except ValueError:
            raise ToolError("arguments are not valid JSON") from None
    if not isinstance(arguments, dict):
        raise ToolError("arguments must be a JSON object")
    return arguments
