"""Emulator of Vapi's REST API, and a client that plays Vapi calling our server URL.

`VapiSandbox` answers `POST /call` (phone-call-provider bypass: the call object carries the
TwiML that connects Twilio's media stream to Vapi), `GET /call/{id}`, the `/assistant`
endpoints and the `/phone-number` endpoints for Vapi SIP numbers (gateway/sandbox/vapi_sip.py),
with Vapi's NestJS error bodies: `{"message": [...] | "...", "error": "Bad Request",
"statusCode": 400}`. Field validation answers a list of messages, as class-validator does
(unknown properties are rejected, like Vapi's whitelist); a missing phone number, customer or
assistant answers a single sentence, as Vapi's call service does. Every API request's method,
path and body is kept in `requests`, for tests that pin the wire.

`sip_invite` plays a SIP INVITE reaching Vapi (the address of Twilio's `<Dial><Sip>`): it
answers the call object Vapi makes of it, to send on in an `assistant-request`.

`VapiServerMessenger` (gateway/sandbox/vapi_messenger.py, exported here) sends the server
messages Vapi sends during a call to our server URL.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox import vapi_sip
from gateway.sandbox.control import bad_request, hold, json_object, requested_fault
from gateway.sandbox.faults import FaultQueue
from gateway.sandbox.vapi_messenger import VapiServerMessenger, vapi_call

__all__ = ["INVALID_KEY", "VapiSandbox", "VapiServerMessenger", "run_vapi", "vapi_call"]

FAULT_KINDS = frozenset({"500", "401", "400", "hang"})
SIP_HOST = "sip.vapi.ai"
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
        sip_host: str = SIP_HOST,
    ) -> None:
        self.api_key = api_key
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.org_id = org_id or str(uuid.uuid4())
        self.stream_host = stream_host
        self.sip_host = sip_host
        self.calls: list[dict[str, Any]] = []
        self.assistants: dict[str, dict[str, Any]] = {}
        self.phone_numbers: dict[str, dict[str, Any]] = {}
        # the calls Vapi made of SIP INVITEs to its numbers (see `sip_invite`)
        self.sip_calls: list[dict[str, Any]] = []
        # (method, path, JSON body) of every API request that passed the key check
        self.requests: list[tuple[str, str, Any]] = []
        self._faults = FaultQueue(FAULT_KINDS)
        self._generation = 0
        self.app = Starlette(
            routes=[
                Route("/call", self._create_call, methods=["POST"]),
                Route("/call/{id}", self._get_call, methods=["GET"]),
                Route("/assistant", self._create_assistant, methods=["POST"]),
                Route("/assistant/{id}", self._get_assistant, methods=["GET"]),
                Route("/assistant/{id}", self._update_assistant, methods=["PATCH"]),
                Route("/phone-number", self._create_number, methods=["POST"]),
                Route("/phone-number/{id}", self._get_number, methods=["GET"]),
                Route("/phone-number/{id}", self._update_number, methods=["PATCH"]),
                Route("/_sandbox/faults", self._http_fault, methods=["POST"]),
                Route("/_sandbox/calls", self._http_calls, methods=["GET"]),
                Route("/_sandbox/assistants", self._http_assistants, methods=["GET"]),
                Route("/_sandbox/phone-numbers", self._http_numbers, methods=["GET"]),
                Route("/_sandbox/reset", self._http_reset, methods=["POST"]),
            ]
        )

    def add_fault(self, kind: str, count: int = 1) -> None:
        """Make the next `count` valid API requests fail in the way `kind` says."""
        self._faults.add(kind, count)

    def reset(self) -> None:
        """Forget calls, assistants, phone numbers, requests and faults; release answers held
        by a `hang` fault."""
        self.calls.clear()
        self.assistants.clear()
        self.phone_numbers.clear()
        self.sip_calls.clear()
        self.requests.clear()
        self._faults.clear()
        self._generation += 1

    def sip_invite(self, address: str, caller: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """An INVITE from `caller` to `address` (the text of a `<Sip>`): the call Vapi makes
        of it and the number it reached, or None when no number has that SIP URI (Vapi
        refuses the INVITE)."""
        uri, headers = vapi_sip.invite(address)
        for number in self.phone_numbers.values():
            if str(number.get("sipUri", "")).lower() == uri.lower():
                call = vapi_sip.sip_call(number, caller, headers, self.org_id)
                self.sip_calls.append(call)
                return call, number
        return None

    # -- API -------------------------------------------------------------------------------

    async def _create_call(self, request: Request) -> Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        body = await self._body(request)
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
        _, stop = await self._admit(request)
        if stop is not None:
            return stop
        for call in self.calls:
            if call["id"] == request.path_params["id"]:
                return JSONResponse(call)
        return _error(404, "Not Found", "Call not found")

    async def _create_assistant(self, request: Request) -> Response:
        body, stop = await self._admit(request, _assistant_problems)
        if stop is not None:
            return stop
        now = _iso(datetime.now(UTC))
        assistant = {"id": str(uuid.uuid4()), "orgId": self.org_id, **body}
        assistant.update(createdAt=now, updatedAt=now)
        self.assistants[assistant["id"]] = _with_secret_flag(assistant)
        return JSONResponse(self.assistants[assistant["id"]], status_code=201)

    async def _get_assistant(self, request: Request) -> Response:
        _, stop = await self._admit(request)
        if stop is not None:
            return stop
        assistant = self.assistants.get(request.path_params["id"])
        if assistant is None:
            return _error(404, "Not Found", "Assistant not found")
        return JSONResponse(assistant)

    async def _update_assistant(self, request: Request) -> Response:
        body, stop = await self._admit(request, _assistant_problems)
        if stop is not None:
            return stop
        assistant = self.assistants.get(request.path_params["id"])
        if assistant is None:
            return _error(404, "Not Found", "Assistant not found")
        fixed = {"id", "orgId", "createdAt"}
        assistant.update({k: v for k, v in body.items() if k not in fixed})
        assistant["updatedAt"] = _iso(datetime.now(UTC))
        _with_secret_flag(assistant)
        return JSONResponse(assistant)

    async def _create_number(self, request: Request) -> Response:
        body, stop = await self._admit(request, self._new_number_problems)
        if stop is not None:
            return stop
        free = f"+1415555{len(self.phone_numbers):04d}"
        number = vapi_sip.new_number(body, self.org_id, free)
        self.phone_numbers[number["id"]] = number
        return JSONResponse(number, status_code=201)

    async def _get_number(self, request: Request) -> Response:
        _, stop = await self._admit(request)
        if stop is not None:
            return stop
        number = self.phone_numbers.get(request.path_params["id"])
        if number is None:
            return _error(404, "Not Found", "Phone Number Not Found")
        return JSONResponse(number)

    async def _update_number(self, request: Request) -> Response:
        body, stop = await self._admit(request, self._number_update_problems)
        if stop is not None:
            return stop
        number = self.phone_numbers.get(request.path_params["id"])
        if number is None:
            return _error(404, "Not Found", "Phone Number Not Found")
        if self._sip_uri_taken(body.get("sipUri"), but=number["id"]):
            return _error(400, "Bad Request", "sipUri is already in use")
        number.update(body)
        number["updatedAt"] = _iso(datetime.now(UTC))
        return JSONResponse(number)

    def _new_number_problems(self, body: Any) -> list[str] | str:
        problems = vapi_sip.number_problems(body, self.sip_host, creating=True)
        if not problems and self._sip_uri_taken(body.get("sipUri")):
            return "sipUri is already in use"
        return problems

    def _number_update_problems(self, body: Any) -> list[str] | str:
        return vapi_sip.number_problems(body, self.sip_host, creating=False)

    def _sip_uri_taken(self, uri: Any, but: str | None = None) -> bool:
        if not isinstance(uri, str):
            return False
        return any(
            str(n.get("sipUri", "")).lower() == uri.lower()
            for n in self.phone_numbers.values()
            if n["id"] != but
        )

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

    async def _admit(
        self, request: Request, check: Callable[[Any], list[str] | str] | None = None
    ) -> tuple[Any, Response | None]:
        """The request's JSON body (read when there is a `check`) and, when it must not go
        on, the answer: a wrong key (401), what `check` finds wrong with the body (400: a list
        of messages, or one sentence), or a queued fault."""
        denied = await self._guard(request)
        if denied is not None:
            return None, denied
        if check is None:
            return None, await self._fault(request)
        body = await self._body(request)
        problems = check(body)
        if problems:
            return body, _error(400, "Bad Request", problems)
        return body, await self._fault(request)

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
        await hold(request, self.hang_seconds, lambda: generation == self._generation)

    # -- control endpoints -----------------------------------------------------------------

    async def _http_fault(self, request: Request) -> Response:
        fault = requested_fault(await json_object(request), FAULT_KINDS)
        if isinstance(fault, str):
            return bad_request(fault)
        self.add_fault(*fault)
        return JSONResponse({"pending": self._faults.pending})

    async def _http_calls(self, request: Request) -> Response:
        return JSONResponse({"calls": self.calls})

    async def _http_assistants(self, request: Request) -> Response:
        return JSONResponse({"assistants": list(self.assistants.values())})

    async def _http_numbers(self, request: Request) -> Response:
        return JSONResponse({"phone_numbers": list(self.phone_numbers.values())})

    async def _body(self, request: Request) -> Any:
        body = await _json_body(request)
        self.requests.append((request.method, request.url.path, body))
        return body

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


_iso = vapi_sip.iso


def run_vapi(
    host: str = "127.0.0.1",
    port: int = 8789,
    api_key: str = "sandbox-vapi-key",
    *,
    latency: float = 0.0,
) -> None:
    """Serve the Vapi emulator in the foreground until interrupted."""
    uvicorn.run(VapiSandbox(api_key, latency).app, host=host, port=port, log_level="info")
