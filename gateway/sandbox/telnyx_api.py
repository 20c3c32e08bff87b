"""A local emulator of Telnyx's Messaging API v2.

`TelnyxSandbox(...).app` is a Starlette app that answers `POST /v2/messages` and `GET
/v2/messages/{id}` as api.telnyx.com does (Bearer API key, JSON in and out, Telnyx's
`{"errors": [...]}` bodies), walks each message through queued → sending → sent →
delivered, and posts `message.sent` and `message.finalized` webhooks signed with the
emulator's Ed25519 key (its public key: `.public_key`, and `GET /_sandbox/public_key`).
Telnyx has no magic test numbers; the fault switches reproduce the failures the gateway must
survive. Control endpoints live under `/_sandbox/`; they are not part of Telnyx's API.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox.control import bad_request, closing, json_object
from gateway.sandbox.telnyx_lifecycle import TelnyxMessages
from gateway.sandbox.telnyx_webhooks import inbound_event, post_signed_event, sign
from gateway.sandbox.telnyx_wire import error_response

__all__ = ["FAULT_KINDS", "TelnyxSandbox", "inbound_event", "post_signed_event", "sign"]

# "40001": accepted, then finalized as delivery_failed (landline or not routable).
FAULT_KINDS = frozenset({"429", "500", "hang", "40300", "40305", "40310", "40001"})
_REFUSALS = {"40300": 409, "40305": 400, "40310": 400}
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_ALPHANUMERIC = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


class TelnyxSandbox(TelnyxMessages):
    """One emulated Telnyx account: serve `.app` with any ASGI server.

    `webhook_transport` routes webhooks somewhere other than the network, such as
    `httpx.ASGITransport(gateway_app)` for in-process tests. Served without a lifespan
    (through httpx.ASGITransport, say), call `await sandbox.aclose()` when done.
    """

    fault_kinds = FAULT_KINDS

    def __init__(
        self,
        api_key: str,
        private_key: Ed25519PrivateKey | None = None,
        callback_delay: float = 0.05,
        *,
        phone_number: str = "+15550100001",
        messaging_profile_id: str | None = None,
        profile_webhook_url: str | None = None,
        hang_seconds: float = 30.0,
        retry_after: int = 1,
        max_messages: int = 100_000,
        webhook_concurrency: int = 8,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            api_key,
            private_key,
            callback_delay,
            phone_number=phone_number,
            messaging_profile_id=messaging_profile_id,
            profile_webhook_url=profile_webhook_url,
            max_messages=max_messages,
            webhook_concurrency=webhook_concurrency,
            webhook_transport=webhook_transport,
        )
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.app = Starlette(
            routes=[
                Route("/v2/messages", self._create, methods=["POST"]),
                Route("/v2/messages/{message_id:str}", self._retrieve, methods=["GET"]),
                *self.control_routes(),
                Route("/_sandbox/public_key", self._public_key_endpoint, methods=["GET"]),
                Route("/_sandbox/inbound", self._inbound_endpoint, methods=["POST"]),
            ],
            lifespan=closing(self.aclose),
        )

    # -- Telnyx API ---------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        self.create_requests += 1
        denied = self._check_access(request)
        if denied is not None:
            return denied
        fault = self._faults.take()
        if fault == "429":
            reset = str(self.retry_after)
            headers = {"x-ratelimit-limit": "1", "x-ratelimit-remaining": "0"}
            return error_response(429, "10011", headers={**headers, "x-ratelimit-reset": reset})
        if fault == "500":
            return error_response(500, "10007")
        try:
            body: Any = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error_response(400, "10015")
        rejected = self._validate(body)
        if rejected is not None:
            return rejected
        to, sender = body["to"], body.get("from") or self.phone_number
        if fault in _REFUSALS:
            return error_response(_REFUSALS[fault], fault, src=sender, dst=to)
        resource = self.create_message(
            to=to,
            from_=sender,
            text=body["text"],
            webhook_url=_text(body.get("webhook_url")),
            failover_url=_text(body.get("webhook_failover_url")),
            use_profile_webhooks=body.get("use_profile_webhooks") is not False,
            final_error="40001" if fault == "40001" else None,
        )
        if self._hangs(fault):
            await self._hang(request)
        return JSONResponse({"data": resource})

    async def _retrieve(self, request: Request) -> Response:
        denied = self._check_access(request)
        if denied is not None:
            return denied
        message_id = request.path_params["message_id"]
        try:
            uuid.UUID(message_id)
        except ValueError:
            return error_response(400, "10006", pointer="/id")
        found = self.message(message_id)
        if found is None:
            return error_response(404, "10005")
        return JSONResponse({"data": found})

    @staticmethod
    def _validate(body: dict[str, Any]) -> Response | None:
        for name in ("to", "text"):
            if not isinstance(body.get(name), str) or not body[name]:
                return error_response(422, "10004", pointer=f"/{name}")
        sender = body.get("from")
        if not sender and not body.get("messaging_profile_id"):
            return error_response(422, "10004", pointer="/from")
        if not _PHONE.match(body["to"]):
            return error_response(400, "40310", pointer="/to")
        if sender and not (
            isinstance(sender, str) and (_PHONE.match(sender) or _ALPHANUMERIC.match(sender))
        ):
            return error_response(400, "40305", pointer="/from")
        return None

    def _check_access(self, request: Request) -> Response | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key.strip().encode(), self.api_key.encode()
        ):
            return error_response(401, "10009")
        return None

    # -- control endpoints of its own ---------------------------------------------------------

    async def _public_key_endpoint(self, request: Request) -> Response:
        return JSONResponse({"public_key": self.public_key})

    async def _inbound_endpoint(self, request: Request) -> Response:
        """A customer texts one of our numbers: `{"from", "text", "to"?, "url"?}` posts a
        signed `message.received` to `url` (default: the messaging profile's webhook)."""
        payload = await json_object(request)
        sender, text = _text(payload.get("from")), _text(payload.get("text"))
        to = _text(payload.get("to")) or self.phone_number
        url = _text(payload.get("url")) or self.profile_webhook_url
        if sender is None or text is None or url is None:
            return bad_request("need {'from': number, 'text': str, 'to'?: number, 'url'?: str}")
        data = inbound_event(sender, to, text, messaging_profile_id=self.messaging_profile_id)
        self.webhooks.post(data["payload"]["id"], [url], data)
        return JSONResponse({"event": data})


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
