"""Vapi's server URL (`POST /api/vapi/functions`): tool calls, end-of-call reports, status
updates and assistant requests, each for the tenant the call belongs to.

Every request carries the server secret (`gateway.providers.vapi.server_auth`), checked
before the body is read; the envelope is then validated (`gateway.providers.vapi.messages`).
The tenant of a message is found from the call the bridge recorded (Vapi call id), else the
assistant id, else the tenant id the bridge put in the call's metadata; none is a 403.

An `assistant-request` for a call that came over a tenant's Vapi SIP address (SIP mode)
names its tenant in the `X-Tenant-Id` header the bridge dialled with; it is believed only
when the call arrived on the SIP address provisioned for that tenant, else it is a 403 like an
unknown call. Other assistant requests (a number imported into Vapi) are answered from the
called number, else the Vapi phone number id.

Tool calls never fail the HTTP request: a malformed tool call, an unknown function or bad
arguments come back as an `error` result the assistant can say.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from gateway.errors import Forbidden
from gateway.ids import iso
from gateway.providers.base import WebhookRejected
from gateway.providers.vapi.messages import Call, Envelope, Message, ToolCall, sip_headers
from gateway.providers.vapi.server_auth import verify_server_secret
from gateway.regions import tenant_region
from gateway.services import pricing
from gateway.services.booking import BookingService
from gateway.services.channel_config import ChannelConfigService
from gateway.services.exchange import ExchangeRates
from gateway.services.principal import TenantPrincipal
from gateway.services.voice import (
    BRIDGE_CALL_SID_HEADER,
    BRIDGE_TENANT_HEADER,
    VoiceService,
)
from gateway.store import calls as call_store
from gateway.store import channels as channel_store
from gateway.store import tenants as tenant_store
from gateway.store.engine import Engine
from gateway.store.tenant_scope import TenantDB
from gateway.validation import (
    RequestModel,
    field_errors,
    loads_json,
    normalize_e164,
    validate_model,
)

__all__ = ["Envelope", "ToolContext", "ToolError", "ToolHandler", "VapiServer"]

log = logging.getLogger("gateway.vapi")
ToolHandler = Callable[["ToolContext", dict[str, Any]], Awaitable[str]]
_UNKNOWN = object()
NOT_IN_SERVICE = "Sorry, this number is not in service."
# what a suspended tenant's assistant may still do during a call already under way
READ_ONLY_TOOLS = frozenset({"check_availability"})
SUSPENDED = (
    "this business cannot take bookings or requests by phone at the moment; "
    "please contact it another way"
)


class ToolError(Exception):
    """A message for the assistant to say: the call went wrong in a way the caller can fix."""


class ToolArguments(RequestModel):
    """The base of a tool's arguments: an assistant fills optional arguments it does not know
    with "" (not given) and may add arguments of its own (ignored)."""

    model_config = ConfigDict(extra="ignore")


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{f['field']} {f['message']}" for f in field_errors(exc))


class ToolContext:
    """What a tool call may use: the tenant it acts for, the call it is made on, and the
    booking service."""

    def __init__(
        self, db: Engine, booking: BookingService, principal: TenantPrincipal, call: Call
    ) -> None:
        self.db = db
        self.booking = booking
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
            row = await call_store.get_call_by_vapi_id(self.db, self.call_id)
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
    def __init__(
        self,
        db: Engine,
        voice: VoiceService,
        channels: ChannelConfigService,
        booking: BookingService,
        tools: dict[str, ToolHandler],
        *,
        server_secret: SecretStr | None,
        price_per_minute: Decimal,
        usd_eur_rate: Decimal,
        exchange: ExchangeRates | None = None,
    ) -> None:
        self.db = db
        self.voice = voice
        self.channels = channels
        self.booking = booking
        self.tools = tools
        self._secret = server_secret.get_secret_value() if server_secret else None
        # the default billed price of a started minute (a tenant's price_per_minute wins)
        self.price_per_minute = float(price_per_minute)
        self.usd_eur_rate = float(usd_eur_rate)
        # the day's rate, when there is an exchange service (else the fixed one above)
        self.exchange = exchange

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Refuse (403) a request without the server secret, before its body is read."""
        try:
            verify_server_secret(headers, self._secret)
        except WebhookRejected as exc:
            log.warning("rejected Vapi server message", extra={"reason": exc.reason})
            raise Forbidden(
                "Missing or invalid Vapi server secret", code="invalid_signature"
            ) from None

    async def receive(self, body: Any) -> dict[str, Any]:
        """The answer to an authenticated server message (a 422 names a field of the wrong
        type)."""
        return await self.handle(validate_model(Envelope, body))

    async def tenant_of(self, message: Message) -> str | None:
        call = message.call or Call()
        voice = self.voice
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
            tenant = await tenant_store.get_tenant(self.db, candidate)
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
        tenant = await tenant_store.get_tenant(self.db, tenant_id)
        assert tenant is not None
        principal = TenantPrincipal(tenant, "vapi", TenantDB(self.db, tenant.id))
        if message.type == "tool-calls":
            return await self._tool_calls(principal, message)
        if message.type == "end-of-call-report":
            await self._end_of_call(principal, message)
        elif message.type == "status-update":
            await self._status_update(principal, message)
        return {}

    async def _tool_calls(self, principal: TenantPrincipal, message: Message) -> dict[str, Any]:
        context = ToolContext(self.db, self.booking, principal, message.call or Call())
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
            # suspended while the call was under way: it writes nothing (the API's 403)
            if name not in READ_ONLY_TOOLS and context.principal.tenant.status != "active":
                raise ToolError(SUSPENDED)
            entry["result"] = await handler(context, _arguments(tool_call))
        except ToolError as exc:
            entry["error"] = str(exc)
        except Exception:
            log.exception("tool call failed", extra={"tool": name})
            entry["error"] = "an internal error occurred; please try again"
        return entry

    async def _assistant_request(self, message: Message) -> dict[str, Any]:
        """Which assistant answers a call: for a SIP bridge, the tenant its headers name
        (checked against the SIP address the call came to); for a number imported into
        Vapi, the tenant's, found from the called number, else from the Vapi phone number
        id."""
        call = message.call or Call()
        phone = message.phoneNumber or call.phoneNumber
        number_id = (phone.id if phone else None) or call.phoneNumberId
        headers = sip_headers(call)
        claimed = headers.get(BRIDGE_TENANT_HEADER.lower(), "").strip()
        if claimed:
            sip_uri = phone.sipUri if phone else None
            return await self._sip_assistant(call, claimed, number_id, sip_uri, headers)
        number = phone.number if phone else None
        found = await self.voice.tenant_for_called_number(number) if number else None
        if found and found[1]:
            return {"assistantId": found[1]}
        if number_id:
            rows = await channel_store.tenants_with_vapi_number(self.db, number_id)
            live = [r for r in rows if r["enabled"] and r["assistant_id"]]
            if len(live) == 1:
                return {"assistantId": live[0]["assistant_id"]}
        return {"error": NOT_IN_SERVICE}

    async def _sip_assistant(
        self,
        call: Call,
        claimed: str,
        number_id: str | None,
        sip_uri: str | None,
        headers: dict[str, str],
    ) -> dict[str, Any]:
        found = await self.voice.tenant_for_sip_call(claimed, number_id, sip_uri)
        if found is None:
            log.warning(
                "assistant-request naming a tenant that does not own the SIP address",
                extra={"phone_number_id": number_id},
            )
            raise Forbidden("No tenant for this call", code="unknown_call")
        if found.assistant_id is None:
            return {"error": NOT_IN_SERVICE}
        call_sid = headers.get(BRIDGE_CALL_SID_HEADER.lower())
        if call_sid and call.id:
            await self.voice.link_vapi_call(found.tenant_id, call_sid, call.id)
        # the tenant on the call's metadata: the messages that follow carry it
        return {
            "assistantId": found.assistant_id,
            "assistantOverrides": {"metadata": {"tenant_id": found.tenant_id}},
        }

    async def _status_update(self, principal: TenantPrincipal, message: Message) -> None:
        call = message.call or Call()
        if not call.id:
            return
        fields: dict[str, Any] = {"status": message.status or "unknown"}
        if message.endedReason:
            fields["ended_reason"] = message.endedReason
        await self.voice.update_vapi_call(principal.tenant.id, call.id, fields)

    async def _end_of_call(self, principal: TenantPrincipal, message: Message) -> None:
        call = message.call or Call()
        if not call.id:
            return
        started = message.startedAt or call.startedAt
        ended = message.endedAt or call.endedAt
        duration = (ended - started).total_seconds() if started and ended else None
        if duration is None and message.durationSeconds is not None:
            duration = message.durationSeconds
        state = await self.channels.load(principal.db, "phone")
        price = state.operator_settings.get("price_per_minute")
        if price is None:
            price = self.price_per_minute
        minutes = math.ceil(duration / 60) if duration and duration > 0 else 0
        billed = pricing.billed_cost(price, minutes)
        cost_usd = message.cost if message.cost is not None else call.cost
        rate = self.usd_eur_rate
        if self.exchange is not None and cost_usd is not None:
            rate = await self.exchange.rate_for()
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
        await self.voice.update_vapi_call(
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
