"""Emulator of Vapi's REST API, and a client that plays Vapi calling our server URL.

`VapiSandbox` answers `POST /call` (phone-call-provider bypass: the call object carries the
TwiML that connects Twilio's media stream to Vapi), `GET /call/{id}` and the `/assistant`
endpoints, with Vapi's NestJS error bodies: `{"message": [...] | "...", "error": "Bad
Request", "statusCode": 400}`. Field validation answers a list of messages, as
class-validator does (unknown properties are rejected, like Vapi's whitelist); a missing
phone number, customer or assistant answers a single sentence, as Vapi's call service does.

`VapiServerMessenger` sends the server messages Vapi sends during a call — `tool-calls`,
`status-update`, `end-of-call-report`, `assistant-request` — in Vapi's envelope
`{"message": {"type", "call", "timestamp", ...}}`, authenticated with `X-Vapi-Secret` or a
Bearer credential.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import string
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox.faults import FaultQueue

FAULT_KINDS = frozenset({"500", "401", "400", "hang"})
STREAM_HOST = "phone-call-websocket.aws-us-west-2-backend-production1.vapi.ai"
INVALID_KEY = (
    "Invalid Key. Hot tip, you may be using the private key instead of the public key, "
    "or vice versa."
)
_E164_HINT = (
    "customer.number must be a valid phone number in the E.164 format. "
    "Hot tip, you may be missing the country code (Eg. US: +1)."
)
_E164 = re.compile(r"\+[1-9]\d{1,14}")
# Vapi rejects any other property of a create-call body ("property x should not exist").
# fmt: off
_CALL_FIELDS = frozenset({
    "name", "type", "assistantId", "assistant", "assistantOverrides", "squadId", "squad",
    "workflowId", "workflow", "workflowOverrides", "phoneNumberId", "phoneNumber",
    "customerId", "customer", "customers", "schedulePlan", "transport", "metadata",
    "phoneCallProviderBypassEnabled",
})
# fmt: on
_OBJECT_FIELDS = ("assistant", "assistantOverrides", "customer", "phoneNumber", "squad")


class VapiSandbox:
    def __init__(
        self,
        api_key: str,
        latency: float = 0.0,
        *,
        hang_seconds: float = 30.0,
        org_id: str | None = None,
        stream_host: str = STREAM_HOST,
    ) -> None:
        self.api_key = api_key
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.org_id = org_id or str(uuid.uuid4())
        self.stream_host = stream_host
        self.calls: list[dict[str, Any]] = []
        self.assistants: dict[str, dict[str, Any]] = {}
        self._faults = FaultQueue(FAULT_KINDS)
        self._generation = 0
        self.app = Starlette(
            routes=[
                Route("/call", self._create_call, methods=["POST"]),
                Route("/call/{id}", self._get_call, methods=["GET"]),
                Route("/assistant", self._create_assistant, methods=["POST"]),
                Route("/assistant/{id}", self._get_assistant, methods=["GET"]),
                Route("/assistant/{id}", self._update_assistant, methods=["PATCH"]),
                Route("/_sandbox/faults", self._http_fault, methods=["POST"]),
                Route("/_sandbox/calls", self._http_calls, methods=["GET"]),
                Route("/_sandbox/assistants", self._http_assistants, methods=["GET"]),
                Route("/_sandbox/reset", self._http_reset, methods=["POST"]),
            ]
        )

    def add_fault(self, kind: str, count: int = 1) -> None:
        """Make the next `count` valid API requests fail in the way `kind` says."""
        self._faults.add(kind, count)

    def reset(self) -> None:
        """Forget calls, assistants and faults; release answers held by a `hang` fault."""
        self.calls.clear()
        self.assistants.clear()
        self._faults.clear()
        self._generation += 1

    # -- API -------------------------------------------------------------------------------

    async def _create_call(self, request: Request) -> Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "Bad Request", ["body must be a JSON object"])
        problems = _call_problems(body)
        if problems:
            return _error(400, "Bad Request", problems)
        missing = _call_missing(body)
        if missing is not None:
            return _error(400, "Bad Request", missing)
        failed = await self._fault(request)
        if failed is not None:
            return failed
        call = self._new_call(body)
        self.calls.append(call)
        return JSONResponse(call, status_code=201)

    async def _get_call(self, request: Request) -> Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        failed = await self._fault(request)
        if failed is not None:
            return failed
        for call in self.calls:
            if call["id"] == request.path_params["id"]:
                return JSONResponse(call)
        return _error(404, "Not Found", "Call not found")

    async def _create_assistant(self, request: Request) -> Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        body = await _json_body(request)
        problems = _assistant_problems(body)
        if problems:
            return _error(400, "Bad Request", problems)
        failed = await self._fault(request)
        if failed is not None:
            return failed
        now = _iso(datetime.now(UTC))
        assistant = {"id": str(uuid.uuid4()), "orgId": self.org_id, **body}
        assistant.update(createdAt=now, updatedAt=now)
        self.assistants[assistant["id"]] = _with_secret_flag(assistant)
        return JSONResponse(self.assistants[assistant["id"]], status_code=201)

    async def _get_assistant(self, request: Request) -> Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        failed = await self._fault(request)
        if failed is not None:
            return failed
        assistant = self.assistants.get(request.path_params["id"])
        if assistant is None:
            return _error(404, "Not Found", "Assistant not found")
        return JSONResponse(assistant)

    async def _update_assistant(self, request: Request) -> Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        body = await _json_body(request)
        problems = _assistant_problems(body)
        if problems:
            return _error(400, "Bad Request", problems)
        failed = await self._fault(request)
        if failed is not None:
            return failed
        assistant = self.assistants.get(request.path_params["id"])
        if assistant is None:
            return _error(404, "Not Found", "Assistant not found")
        fixed = {"id", "orgId", "createdAt"}
        assistant.update({k: v for k, v in body.items() if k not in fixed})
        assistant["updatedAt"] = _iso(datetime.now(UTC))
        _with_secret_flag(assistant)
        return JSONResponse(assistant)

    def _new_call(self, body: dict[str, Any]) -> dict[str, Any]:
        now = _iso(datetime.now(UTC))
        call_id = str(uuid.uuid4())
        bypass = body.get("phoneCallProviderBypassEnabled") is True
        call: dict[str, Any] = {
            "id": call_id,
            "orgId": self.org_id,
            "createdAt": now,
            "updatedAt": now,
            "type": body.get("type", "inboundPhoneCall" if bypass else "outboundPhoneCall"),
            "cost": 0,
            "costs": [],
            "monitor": {
                "listenUrl": f"wss://{self.stream_host}/{call_id}/listen",
                "controlUrl": f"https://{self.stream_host}/{call_id}/control",
            },
            "phoneCallProvider": "twilio",
            "phoneCallTransport": "pstn",
            "phoneCallProviderBypassEnabled": bypass,
            "status": "queued",
        }
        if bypass:
            # Twilio connects the caller's audio to Vapi over this media stream.
            stream = f"wss://{self.stream_host}/{call_id}/transport"
            call["phoneCallProviderDetails"] = {
                "twiml": '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
                f'<Stream url="{stream}"/></Connect></Response>'
            }
        for key, value in body.items():
            call.setdefault(key, value)
        return call

    async def _guard(self, request: Request) -> Response | None:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            return _error(401, "Unauthorized", INVALID_KEY)
        return None

    async def _fault(self, request: Request) -> Response | None:
        kind = self._faults.take()
        if kind == "500":
            return JSONResponse({"statusCode": 500, "message": "Internal server error"}, 500)
        if kind == "401":
            return _error(401, "Unauthorized", INVALID_KEY)
        if kind == "400":
            return _error(400, "Bad Request", [_E164_HINT])
        if kind == "hang":
            await self._hang(request)
        return None

    async def _hang(self, request: Request) -> None:
        generation = self._generation
        deadline = time.monotonic() + self.hang_seconds
        while time.monotonic() < deadline and generation == self._generation:
            # A client that gave up must not keep the server busy until the deadline.
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.02)

    # -- control endpoints -----------------------------------------------------------------

    async def _http_fault(self, request: Request) -> Response:
        data = await _json_body(request)
        if not isinstance(data, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        try:
            self.add_fault(str(data.get("kind")), int(data.get("count", 1)))
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"pending": self._faults.pending})

    async def _http_calls(self, request: Request) -> Response:
        return JSONResponse({"calls": self.calls})

    async def _http_assistants(self, request: Request) -> Response:
        return JSONResponse({"assistants": list(self.assistants.values())})

    async def _http_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})


def _call_problems(body: dict[str, Any]) -> list[str]:
    problems = [f"property {key} should not exist" for key in body if key not in _CALL_FIELDS]
    for key in ("phoneNumberId", "assistantId", "customerId", "name", "type"):
        if key in body and not isinstance(body[key], str):
            problems.append(f"{key} must be a string")
    if body.get("type", "inboundPhoneCall") not in ("inboundPhoneCall", "outboundPhoneCall"):
        problems.append(
            "type must be one of the following values: inboundPhoneCall, outboundPhoneCall"
        )
    flag = body.get("phoneCallProviderBypassEnabled", False)
    if not isinstance(flag, bool):
        problems.append("phoneCallProviderBypassEnabled must be a boolean value")
    for key in _OBJECT_FIELDS:
        if key in body and not isinstance(body[key], dict):
            problems.append(f"nested property {key} must be either object or array")
    if "metadata" in body and not isinstance(body["metadata"], dict):
        problems.append("metadata must be an object")
    customer = body.get("customer")
    if isinstance(customer, dict):
        number = customer.get("number")
        if not isinstance(number, str) or not _E164.fullmatch(number):
            problems.append(_E164_HINT)
    return problems


def _call_missing(body: dict[str, Any]) -> str | None:
    if "phoneNumberId" not in body and "phoneNumber" not in body:
        return "Couldn't Get Phone Number. Need Either `phoneNumberId` Or `phoneNumber`."
    if not {"customer", "customerId", "customers"} & body.keys():
        return "Couldn't Get Customer. Need Either `customerId` Or `customer`."
    if not {"assistantId", "assistant", "squadId", "squad", "workflowId", "workflow"} & body.keys():
        return "Couldn't Get Assistant. Need Either `assistantId` Or `assistant`."
    return None


def _assistant_problems(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    problems: list[str] = []
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        problems.append("name must be a string")
    elif isinstance(name, str) and len(name) > 40:
        problems.append("name must be shorter than or equal to 40 characters")
    for key in ("model", "voice", "transcriber", "server", "metadata"):
        if key in body and not isinstance(body[key], dict):
            problems.append(f"nested property {key} must be either object or array")
    server = body.get("server")
    if isinstance(server, dict) and not isinstance(server.get("url"), str):
        problems.append("server.url must be a string")
    for key in ("serverUrl", "serverUrlSecret", "firstMessage"):
        if key in body and not isinstance(body[key], str):
            problems.append(f"{key} must be a string")
    return problems


def _with_secret_flag(assistant: dict[str, Any]) -> dict[str, Any]:
    server = assistant.get("server")
    server_secret = server.get("secret") if isinstance(server, dict) else None
    assistant["isServerUrlSecretSet"] = bool(assistant.get("serverUrlSecret") or server_secret)
    return assistant


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError:
        return None


def _error(status: int, error: str, message: str | list[str]) -> JSONResponse:
    return JSONResponse(
        {"message": message, "error": error, "statusCode": status}, status_code=status
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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

    async def assistant_request(self, call: Mapping[str, Any]) -> httpx.Response:
        message: dict[str, Any] = {
            "type": "assistant-request",
            "call": {**call, "status": "ringing"},
            "customer": call.get("customer"),
        }
        if "phoneNumberId" in call:
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


def run_vapi(
    host: str = "127.0.0.1",
    port: int = 8789,
    api_key: str = "sandbox-vapi-key",
    *,
    latency: float = 0.0,
) -> None:
    """Serve the Vapi emulator in the foreground until interrupted."""
    uvicorn.run(VapiSandbox(api_key, latency).app, host=host, port=port, log_level="info")
