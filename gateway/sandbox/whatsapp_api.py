"""Emulator of Meta's WhatsApp Cloud API and of 360dialog's v2 messaging API.

It accepts `POST /{version}/{phone_number_id}/messages` (Graph, `Authorization: Bearer`) and
360dialog's `POST /messages` (`D360-API-KEY`), then plays WhatsApp's part: status webhooks
(sent, delivered, read — or failed) in Meta's envelope. Meta webhooks are signed with
`X-Hub-Signature-256`; 360dialog ones carry the secret headers chosen at webhook registration.

Error forms follow the providers, because the gateway must classify them:

- Graph errors are `{"error": {message, type, code, error_data?, fbtrace_id}}`. A wrong or
  expired token is HTTP 401 code 190; a missing token is HTTP 400 code 104 (what Graph
  answers); an invalid body is HTTP 400 code 100; 130429 (throughput) is HTTP 400, as Meta
  documents it, not 429; 131000 "Something went wrong" is HTTP 500.
- 360dialog answers its own failures (bad key, its own 5xx) with
  `{"meta": {"success": false, "http_code", "developer_message", "360dialog_trace_id"}}` and
  passes Meta's errors through unchanged.
- 131047 (more than 24 hours since the customer replied) and 131026 (undeliverable) are
  emulated in their asynchronous form: the send is accepted with a wamid, then a `failed`
  status webhook carries the error. That is how the Cloud API reports them today, and it is
  the case the gateway must not get wrong: a 200 that still ends in failure.

Meta escapes "/" as "\\/" and non-ASCII as "\\uXXXX" in webhook bodies; so does this emulator,
so that a receiver checking the signature of a re-serialised body instead of the raw bytes
fails here as it would in production.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox.control import (
    apply_settings,
    bad_request,
    closing,
    hold,
    json_object,
    requested_fault,
)
from gateway.sandbox.faults import FaultQueue

FAULT_KINDS = frozenset({"130429", "131047", "131026", "190", "500", "hang"})
PROVIDERS = ("meta_cloud", "360dialog")
# What POST /_sandbox/settings may change, with its type (str: a URL, or null to unset).
_SETTINGS: dict[str, type] = {
    "webhook_url": str,
    "d360_webhook_url": str,
    "d360_webhook_headers": dict,
    "callback_delay": float,
    "reorder": bool,
    "duplicate": bool,
    "hang_seconds": float,
}
ERROR_CODES_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
_ASYNC_FAILURES = {
    "131047": (
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer "
        "last replied to this number.",
    ),
    "131026": (
        "Message undeliverable",
        "Unable to deliver message. The recipient may not be a WhatsApp user or may not have "
        "accepted the latest terms of service.",
    ),
}
_VERSION = re.compile(r"v\d+\.\d+")


def sign_meta_payload(raw_body: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` value Meta sends: HMAC-SHA256 of the exact raw body."""
    digest = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def meta_json_bytes(payload: Any) -> bytes:
    """Serialise like Meta does: compact, ASCII-only, with escaped slashes."""
    return json.dumps(payload, separators=(",", ":")).replace("/", "\\/").encode()


@dataclass
class MetaAccount:
    """One business's Cloud API set-up: the token that may send for a number, its app secret
    and where its webhooks go."""

    access_token: str
    app_secret: str
    webhook_url: str | None = None
    display_phone_number: str = "15550001234"
    waba_id: str = "102290129340398"


@dataclass
class D360Channel:
    """One 360dialog channel: an API key bound to one number and its webhook registration."""

    api_key: str
    phone_number_id: str
    webhook_url: str | None = None
    webhook_headers: dict[str, str] = field(default_factory=dict)
    display_phone_number: str = "15550001234"
    waba_id: str = "102290129340398"


@dataclass
class SentMessage:
    provider: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    wamid: str
    phone_number_id: str
    outcome: str


@dataclass
class WebhookDelivery:
    url: str
    headers: dict[str, str]
    body: str
    status_code: int | None
    error: str | None


@dataclass
class _Target:
    url: str | None
    app_secret: str | None
    headers: dict[str, str]
    phone_number_id: str
    display_phone_number: str
    waba_id: str


class WhatsAppSandbox:
    def __init__(
        self,
        access_token: str,
        d360_api_key: str,
        app_secret: str,
        callback_delay: float = 0.05,
        *,
        webhook_url: str | None = None,
        d360_webhook_url: str | None = None,
        d360_phone_number_id: str = "106540352242922",
        display_phone_number: str = "15550001234",
        waba_id: str = "102290129340398",
        hang_seconds: float = 30.0,
        d360_webhook_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.access_token = access_token
        self.app_secret = app_secret
        self.webhook_url = webhook_url
        self.display_phone_number = display_phone_number
        self.waba_id = waba_id
        self.d360_api_key = d360_api_key
        self.d360_phone_number_id = d360_phone_number_id
        self.d360_webhook_url = d360_webhook_url
        self.d360_webhook_headers = dict(d360_webhook_headers or {})
        self.callback_delay = callback_delay
        self.hang_seconds = hang_seconds
        self.reorder = False
        self.duplicate = False
        self.accounts: dict[str, MetaAccount] = {}
        self.d360_channels: dict[str, D360Channel] = {}
        self.sent: list[SentMessage] = []
        self.webhooks: list[WebhookDelivery] = []
        self._faults = FaultQueue(FAULT_KINDS)
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self.app = Starlette(
            routes=[
                Route("/messages", self._d360_send, methods=["POST"]),
                Route("/{version}/{phone_number_id}/messages", self._meta_send, methods=["POST"]),
                Route("/_sandbox/faults", self._http_fault, methods=["POST"]),
                Route("/_sandbox/messages", self._http_messages, methods=["GET"]),
                Route("/_sandbox/webhooks", self._http_webhooks, methods=["GET"]),
                Route("/_sandbox/reset", self._http_reset, methods=["POST"]),
                Route("/_sandbox/settings", self._http_settings, methods=["GET", "POST"]),
                # the name these switches had first
                Route("/_sandbox/config", self._http_settings, methods=["POST"]),
                Route("/_sandbox/inbound", self._http_inbound, methods=["POST"]),
            ],
            lifespan=closing(self.aclose),
        )

    # -- configuration ---------------------------------------------------------------------

    def add_account(self, phone_number_id: str, account: MetaAccount) -> None:
        """Give one phone number its own token, app secret and webhook URL (one tenant)."""
        self.accounts[phone_number_id] = account

    def add_d360_channel(self, channel: D360Channel) -> None:
        self.d360_channels[channel.api_key] = channel

    @property
    def webhooks_pending(self) -> int:
        """How many sends still have status webhooks on their way."""
        return len(self._tasks)

    def add_fault(self, kind: str, count: int = 1) -> None:
        """Make the next `count` accepted-looking send requests fail in the way `kind` says."""
        self._faults.add(kind, count)

    def reset(self) -> None:
        """Forget messages, webhooks and faults, drop pending webhooks, release hung answers."""
        self.sent.clear()
        self.webhooks.clear()
        self._faults.clear()
        self.reorder = False
        self.duplicate = False
        self._generation += 1

    def _meta_account(self, phone_number_id: str) -> MetaAccount:
        return self.accounts.get(phone_number_id) or MetaAccount(
            self.access_token,
            self.app_secret,
            self.webhook_url,
            self.display_phone_number,
            self.waba_id,
        )

    def _default_d360(self) -> D360Channel:
        return D360Channel(
            self.d360_api_key,
            self.d360_phone_number_id,
            self.d360_webhook_url,
            dict(self.d360_webhook_headers),
            self.display_phone_number,
            self.waba_id,
        )

    def _d360_by_key(self, api_key: str) -> D360Channel | None:
        if api_key in self.d360_channels:
            return self.d360_channels[api_key]
        if _same(api_key, self.d360_api_key):
            return self._default_d360()
        return None

    def _d360_by_number(self, phone_number_id: str) -> D360Channel:
        for channel in self.d360_channels.values():
            if channel.phone_number_id == phone_number_id:
                return channel
        return self._default_d360()

    def _target(self, provider: str, phone_number_id: str) -> _Target:
        if provider == "360dialog":
            ch = self._d360_by_number(phone_number_id)
            return _Target(
                ch.webhook_url,
                None,
                dict(ch.webhook_headers),
                ch.phone_number_id,
                ch.display_phone_number,
                ch.waba_id,
            )
        acc = self._meta_account(phone_number_id)
        return _Target(
            acc.webhook_url,
            acc.app_secret,
            {},
            phone_number_id,
            acc.display_phone_number,
            acc.waba_id,
        )

    # -- send endpoints --------------------------------------------------------------------

    async def _meta_send(self, request: Request) -> Response:
        version = request.path_params["version"]
        phone_number_id = request.path_params["phone_number_id"]
        if not _VERSION.fullmatch(version):
            return _graph_error(400, 2500, f"Unknown path components: /{version}")
        token = _bearer(request.headers.get("authorization", ""))
        if not token:
            return _graph_error(400, 104, "An access token is required to request this resource.")
        if not _same(token, self._meta_account(phone_number_id).access_token):
            return _invalid_token("Invalid OAuth access token - Cannot parse access token")
        body, problem = await _parse_message(request)
        if problem is not None:
            return _graph_error(400, 100, "(#100) Invalid parameter", details=problem)
        fault = self._faults.take()
        if fault == "130429":
            return _rate_limited()
        if fault == "190":
            return _invalid_token(
                "Error validating access token: Session has expired on Monday, 01-Jan-24 "
                "00:00:00 PST.",
                subcode=463,
            )
        if fault == "500":
            return _graph_error(
                500, 131000, "(#131000) Something went wrong", details="Something went wrong."
            )
        headers = {"authorization": request.headers["authorization"]}
        return await self._accept(request, "meta_cloud", phone_number_id, headers, body, fault)

    async def _d360_send(self, request: Request) -> Response:
        channel = self._d360_by_key(request.headers.get("d360-api-key", ""))
        if channel is None:
            return _d360_error(401, "Invalid api_key")
        body, problem = await _parse_message(request)
        if problem is not None:
            return _graph_error(400, 100, "(#100) Invalid parameter", details=problem)
        fault = self._faults.take()
        if fault == "130429":
            return _rate_limited()
        if fault == "190":
            return _d360_error(401, "Invalid api_key")
        if fault == "500":
            return _d360_error(500, "Internal server error")
        headers = {"d360-api-key": request.headers["d360-api-key"]}
        return await self._accept(
            request, "360dialog", channel.phone_number_id, headers, body, fault
        )

    async def _accept(
        self,
        request: Request,
        provider: str,
        phone_number_id: str,
        headers: dict[str, str],
        body: dict[str, Any],
        fault: str | None,
    ) -> Response:
        to = str(body["to"])
        wa_id = re.sub(r"\D", "", to)
        wamid = _new_wamid(wa_id)
        headers["content-type"] = request.headers.get("content-type", "")
        outcome = fault or "read"
        self.sent.append(
            SentMessage(provider, request.url.path, headers, body, wamid, phone_number_id, outcome)
        )
        target = self._target(provider, phone_number_id)
        is_template = body.get("type", "text") == "template"
        statuses = _statuses(wamid, wa_id, outcome, is_template=is_template)
        self._schedule(target, [_envelope(target, {"statuses": [s]}) for s in statuses])
        if fault == "hang":
            await self._hang(request)
        message: dict[str, str] = {"id": wamid}
        if is_template:
            message["message_status"] = "accepted"
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": wa_id}],
                "messages": [message],
            }
        )

    async def _hang(self, request: Request) -> None:
        generation = self._generation
        await hold(request, self.hang_seconds, lambda: generation == self._generation)

    # -- webhooks --------------------------------------------------------------------------

    def _schedule(self, target: _Target, payloads: list[dict[str, Any]]) -> None:
        if target.url is None:
            return
        if self.reorder:
            payloads = payloads[::-1]
        task = asyncio.get_running_loop().create_task(self._deliver_all(target, payloads))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_all(self, target: _Target, payloads: list[dict[str, Any]]) -> None:
        generation = self._generation
        for payload in payloads:
            for _ in range(2 if self.duplicate else 1):
                await asyncio.sleep(self.callback_delay)
                if generation != self._generation:
                    return
                # A receiver that is down or broken is the gateway's problem, not ours.
                with contextlib.suppress(Exception):
                    await self._post_webhook(target, payload, self._client())

    async def _post_webhook(
        self, target: _Target, payload: dict[str, Any], client: httpx.AsyncClient
    ) -> httpx.Response:
        if target.url is None:
            raise RuntimeError("no webhook URL is configured for this number")
        raw = meta_json_bytes(payload)
        headers = {"content-type": "application/json", **target.headers}
        if target.app_secret is not None:
            headers["user-agent"] = "facebookexternalua"
            headers["x-hub-signature"] = "sha1=" + _hmac_hex(target.app_secret, raw, "sha1")
            headers["x-hub-signature-256"] = sign_meta_payload(raw, target.app_secret)
        delivery = WebhookDelivery(target.url, headers, raw.decode(), None, None)
        self.webhooks.append(delivery)
        try:
            response = await client.post(target.url, content=raw, headers=headers)
        except Exception as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            raise
        delivery.status_code = response.status_code
        return response

    async def send_inbound_message(
        self,
        from_wa_id: str,
        text: str,
        phone_number_id: str,
        provider: str = "meta_cloud",
        *,
        profile_name: str = "Sandbox Customer",
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """POST a customer's text message to the number's webhook, as WhatsApp would."""
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}")
        target = self._target(provider, phone_number_id)
        value = {
            "contacts": [{"profile": {"name": profile_name}, "wa_id": from_wa_id}],
            "messages": [
                {
                    "from": from_wa_id,
                    "id": _new_wamid(from_wa_id),
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
        payload = _envelope(target, value)
        if client is not None:
            return await self._post_webhook(target, payload, client)
        async with httpx.AsyncClient(timeout=10.0) as own:
            return await self._post_webhook(target, payload, own)

    def _client(self) -> httpx.AsyncClient:
        # One pooled client per event loop: a client must not be shared across loops.
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            self._http = httpx.AsyncClient(timeout=10.0)
            self._http_loop = loop
        return self._http

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        tasks = [t for t in self._tasks if t.get_loop() is loop]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None and self._http_loop is loop:
            await self._http.aclose()
            self._http = None

    # -- control endpoints -----------------------------------------------------------------

    async def _http_fault(self, request: Request) -> Response:
        fault = requested_fault(await json_object(request), FAULT_KINDS)
        if isinstance(fault, str):
            return bad_request(fault)
        self.add_fault(*fault)
        return JSONResponse({"pending": self._faults.pending})

    async def _http_messages(self, request: Request) -> Response:
        return JSONResponse({"messages": [asdict(m) for m in self.sent]})

    async def _http_webhooks(self, request: Request) -> Response:
        return JSONResponse({"webhooks": [asdict(w) for w in self.webhooks]})

    async def _http_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    async def _http_settings(self, request: Request) -> Response:
        if request.method == "POST":
            problem = apply_settings(self, _SETTINGS, await json_object(request))
            if problem:
                return bad_request(problem)
        return JSONResponse({key: getattr(self, key) for key in sorted(_SETTINGS)})

    async def _http_inbound(self, request: Request) -> Response:
        data = await json_object(request)
        provider = str(data.get("provider", "meta_cloud"))
        default_number = self.d360_phone_number_id if provider == "360dialog" else ""
        try:
            response = await self.send_inbound_message(
                str(data["from"]),
                str(data["text"]),
                str(data.get("phone_number_id", default_number)),
                provider,
                client=self._client(),
            )
        except (KeyError, ValueError, RuntimeError, httpx.HTTPError) as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
        return JSONResponse({"webhook_status": response.status_code})


def _statuses(wamid: str, wa_id: str, outcome: str, *, is_template: bool) -> list[dict[str, Any]]:
    now = int(time.time())
    base: dict[str, Any] = {"id": wamid, "recipient_id": wa_id}
    if outcome in _ASYNC_FAILURES:
        title, details = _ASYNC_FAILURES[outcome]
        error = {
            "code": int(outcome),
            "title": title,
            "message": title,
            "error_data": {"details": details},
            "href": ERROR_CODES_URL,
        }
        return [{**base, "status": "failed", "timestamp": str(now), "errors": [error]}]
    # Per-message pricing: service replies inside the window are free, templates are billed.
    category = "utility" if is_template else "service"
    pricing = {
        "billable": is_template,
        "pricing_model": "PMP",
        "category": category,
        "type": "regular" if is_template else "free_customer_service",
    }
    conversation_id = secrets.token_hex(16)
    origin = {"type": category}
    return [
        {
            **base,
            "status": "sent",
            "timestamp": str(now),
            "conversation": {
                "id": conversation_id,
                "expiration_timestamp": str(now + 86400),
                "origin": origin,
            },
            "pricing": pricing,
        },
        {
            **base,
            "status": "delivered",
            "timestamp": str(now + 1),
            "conversation": {"id": conversation_id, "origin": origin},
            "pricing": pricing,
        },
        {**base, "status": "read", "timestamp": str(now + 2)},
    ]


def _envelope(target: _Target, value: dict[str, Any]) -> dict[str, Any]:
    metadata = {
        "display_phone_number": target.display_phone_number,
        "phone_number_id": target.phone_number_id,
    }
    change = {
        "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
        "field": "messages",
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": target.waba_id, "changes": [change]}],
    }


async def _parse_message(request: Request) -> tuple[dict[str, Any], str | None]:
    """Validate a send body the way the Cloud API does, for the types we emulate."""
    body = await json_object(request)
    if body.get("messaging_product") != "whatsapp":
        return body, "The parameter messaging_product is required and must be 'whatsapp'."
    if body.get("recipient_type", "individual") != "individual":
        return body, "Param recipient_type must be 'individual'."
    to = body.get("to")
    if not isinstance(to, str) or not re.sub(r"\D", "", to):
        return body, "The parameter to is required."
    kind = body.get("type", "text")
    if kind == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str):
            return body, "The parameter text['body'] is required."
        if not text["body"]:
            return body, "Param text['body'] must not be empty."
        if len(text["body"]) > 4096:
            return body, "Param text['body'] must be at most 4096 characters long."
    elif kind == "template":
        template = body.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("name"), str):
            return body, "The parameter template['name'] is required."
        language = template.get("language")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            return body, "The parameter template['language']['code'] is required."
        if not isinstance(template.get("components", []), list):
            return body, "Param template['components'] must be an array."
    else:
        return body, f'Param type must be one of {{TEXT, TEMPLATE}} - got "{kind}".'
    return body, None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _graph_error(
    status: int,
    code: int,
    message: str,
    *,
    details: str | None = None,
    subcode: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = _trace_id()
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _invalid_token(message: str, subcode: int | None = None) -> JSONResponse:
    www = f'OAuth "Facebook Platform" "invalid_token" "{message}"'
    return _graph_error(401, 190, message, subcode=subcode, headers={"www-authenticate": www})


def _rate_limited() -> JSONResponse:
    details = (
        "Message failed to send because there were too many messages sent from this phone "
        "number in a short period of time"
    )
    return _graph_error(400, 130429, "(#130429) Rate limit hit", details=details)


def _d360_error(status: int, message: str) -> JSONResponse:
    meta = {
        "success": False,
        "http_code": status,
        "developer_message": message,
        "360dialog_trace_id": _trace_id(),
    }
    return JSONResponse({"meta": meta}, status_code=status)


def _new_wamid(wa_id: str) -> str:
    # Same layout as real ids ("wamid.HBgL..."): length-prefixed wa_id, then a random part.
    digits = wa_id.encode()[:255]
    raw = b"\x1c\x18" + bytes([len(digits)]) + digits + b"\x15\x02\x00\x11\x18\x12"
    raw += secrets.token_hex(9).upper().encode() + b"\x00"
    return "wamid." + base64.b64encode(raw).decode()


def _trace_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(17)).decode().rstrip("=")


def _hmac_hex(secret: str, raw: bytes, algorithm: str) -> str:
    return hmac.new(secret.encode(), raw, algorithm).hexdigest()
