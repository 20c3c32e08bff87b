"""A client that plays Vapi calling our server URL: the server messages Vapi sends during a
call — `tool-calls`, `status-update`, `end-of-call-report`, `assistant-request` — in Vapi's
envelope `{"message": {"type", "call", "timestamp", ...}}`, authenticated with `X-Vapi-Secret`
or a Bearer credential, and `vapi_call`, the call object they embed."""

from __future__ import annotations

import secrets
import string
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

from gateway.sandbox.vapi_sip import iso as _iso


def _as_datetime(moment: datetime | str) -> datetime:
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def vapi_call(
    assistant_id: str,
    customer_number: str,
    *,
    call_id: str | None = None,
    org_id: str | None = None,
    phone_number_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A minimal call object as Vapi embeds it in server messages."""
    call: dict[str, Any] = {
        "id": call_id or str(uuid.uuid4()),
        "orgId": org_id or str(uuid.uuid4()),
        "type": "inboundPhoneCall",
        "assistantId": assistant_id,
        "customer": {"number": customer_number},
        "status": "in-progress",
    }
    if phone_number_id is not None:
        call["phoneNumberId"] = phone_number_id
    if metadata is not None:
        call["metadata"] = dict(metadata)
    return call


class VapiServerMessenger:
    """Plays Vapi calling a server URL: builds the real message envelopes and POSTs them."""

    def __init__(
        self,
        server_url: str,
        secret: str | None,
        client: httpx.AsyncClient | None = None,
        *,
        bearer: bool = False,
    ) -> None:
        self.server_url = server_url
        self.secret = secret
        self.bearer = bearer
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=10.0)

    async def send(self, message: Mapping[str, Any]) -> httpx.Response:
        """POST `{"message": message}` with Vapi's credential header and a timestamp."""
        headers: dict[str, str] = {}
        if self.secret is not None:
            if self.bearer:
                headers["authorization"] = f"Bearer {self.secret}"
            else:
                headers["x-vapi-secret"] = self.secret
        envelope = {"message": {"timestamp": int(time.time() * 1000), **message}}
        return await self._client.post(self.server_url, json=envelope, headers=headers)

    async def tool_calls(
        self,
        call: Mapping[str, Any],
        calls: Sequence[tuple[str, dict[str, Any] | str]],
    ) -> httpx.Response:
        """`calls` are (function name, arguments); arguments go out exactly as given."""
        tool_calls: list[dict[str, Any]] = []
        with_tools: list[dict[str, Any]] = []
        for name, arguments in calls:
            tool_call = {
                "id": _tool_call_id(),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            tool_calls.append(tool_call)
            with_tools.append(
                {
                    "type": "function",
                    "function": {"name": name, "parameters": {"type": "object", "properties": {}}},
                    "server": {"url": self.server_url},
                    "messages": [],
                    "toolCall": tool_call,
                }
            )
        return await self.send(
            {
                "type": "tool-calls",
                "toolCallList": tool_calls,
                "toolWithToolCallList": with_tools,
                "artifact": {"messages": []},
                "call": dict(call),
                "customer": call.get("customer"),
            }
        )

    async def status_update(
        self, call: Mapping[str, Any], status: str, ended_reason: str | None = None
    ) -> httpx.Response:
        message: dict[str, Any] = {"type": "status-update", "status": status}
        call_now = {**call, "status": status}
        if ended_reason is not None:
            message["endedReason"] = ended_reason
            call_now["endedReason"] = ended_reason
        message["call"] = call_now
        return await self.send(message)

    async def end_of_call_report(
        self,
        call: Mapping[str, Any],
        started_at: datetime | str,
        ended_at: datetime | str,
        cost_usd: float,
        ended_reason: str = "customer-ended-call",
        transcript: str = "",
        recording_url: str | None = None,
        summary: str | None = None,
    ) -> httpx.Response:
        start, end = _as_datetime(started_at), _as_datetime(ended_at)
        seconds = max((end - start).total_seconds(), 0.0)
        artifact: dict[str, Any] = {"messages": [], "transcript": transcript}
        if recording_url is not None:
            artifact["recordingUrl"] = recording_url
        return await self.send(
            {
                "type": "end-of-call-report",
                "endedReason": ended_reason,
                "startedAt": _iso(start),
                "endedAt": _iso(end),
                "durationSeconds": seconds,
                "durationMs": round(seconds * 1000),
                "durationMinutes": round(seconds / 60, 4),
                "cost": cost_usd,
                "costBreakdown": _cost_breakdown(cost_usd),
                "costs": _costs(cost_usd, seconds),
                "artifact": artifact,
                "analysis": {"summary": summary} if summary is not None else {},
                "call": {**call, "status": "ended", "endedReason": ended_reason},
                "customer": call.get("customer"),
            }
        )

    async def assistant_request(
        self, call: Mapping[str, Any], phone_number: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """Vapi asking which assistant answers `call`; `phone_number` is the number it came
        to, as Vapi has it (a SIP number from `VapiSandbox.sip_invite`), else a Twilio number
        with the call's `phoneNumberId`."""
        message: dict[str, Any] = {
            "type": "assistant-request",
            "call": {**call, "status": "ringing"},
            "customer": call.get("customer"),
        }
        if phone_number is not None:
            message["phoneNumber"] = dict(phone_number)
        elif "phoneNumberId" in call:
            message["phoneNumber"] = {"id": call["phoneNumberId"], "provider": "twilio"}
        return await self.send(message)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> VapiServerMessenger:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _tool_call_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(24))


# Shares of a call's cost by component; only the total is meaningful in the sandbox.
_COST_SHARES = (("transport", 0.1), ("stt", 0.1), ("llm", 0.3), ("tts", 0.2))


def _cost_breakdown(total: float) -> dict[str, Any]:
    parts = {name: round(total * share, 4) for name, share in _COST_SHARES}
    parts["vapi"] = round(total - sum(parts.values()), 4)
    return {**parts, "total": total, "llmPromptTokens": 0, "llmCompletionTokens": 0}


def _costs(total: float, seconds: float) -> list[dict[str, Any]]:
    parts = _cost_breakdown(total)
    minutes = round(seconds / 60, 4)
    return [
        {"type": "transport", "provider": "twilio", "minutes": minutes, "cost": parts["transport"]},
        {"type": "transcriber", "minutes": minutes, "cost": parts["stt"]},
        {"type": "model", "promptTokens": 0, "completionTokens": 0, "cost": parts["llm"]},
        {"type": "voice", "characters": 0, "cost": parts["tts"]},
        {"type": "vapi", "subType": "normal", "minutes": minutes, "cost": parts["vapi"]},
    ]
