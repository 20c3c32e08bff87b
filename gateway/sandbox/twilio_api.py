"""A local emulator of Twilio's Programmable Messaging REST API.

`TwilioSandbox(...).app` is a Starlette app that answers `Messages.json` exactly as
api.twilio.com does (form posts, basic auth, JSON resources, Twilio error bodies), walks each
message through queued → sending → sent → delivered, and posts signed status callbacks. Fault
switches and Twilio's magic test numbers reproduce the failures the gateway must survive.
Control endpoints live under `/_sandbox/`; they are not part of Twilio's API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import re
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox.faults import FaultQueue
from gateway.sandbox.twilio_lifecycle import MESSAGES_PATH, TwilioMessages
from gateway.sandbox.twilio_webhooks import (
    inbound_sms_params,
    post_signed_form,
    voice_call_params,
)
from gateway.sandbox.twilio_wire import JSON_TYPE, MAX_BODY_CHARS, error_response

__all__ = [
    "FAULT_KINDS",
    "TwilioSandbox",
    "inbound_sms_params",
    "post_signed_form",
    "run",
    "voice_call_params",
]

FAULT_KINDS = frozenset({"429", "500", "hang", "21211", "21610", "21614", "30006"})
_REJECTING_FAULTS = {"21211": 21211, "21610": 21610, "21614": 21614}
# Twilio's documented magic "To" numbers for test credentials, plus one for carrier failure.
_MAGIC_REJECTIONS = {"+15005550001": 21211, "+15005550004": 21610, "+15005550009": 21614}
_MAGIC_UNDELIVERED = "+15005550006"
_UNDELIVERED_CODE = 30006
_PHONE = re.compile(r"^\+?[1-9]\d{6,14}$")
_SETTINGS: dict[str, type] = {
    "callback_delay": float,
    "reorder": bool,
    "duplicate": bool,
    "hang_seconds": float,
    "hang_every": int,
    "retry_after": int,
}


class TwilioSandbox(TwilioMessages):
    """One emulated Twilio account: serve `.app` with any ASGI server.

    `callback_transport` routes status callbacks somewhere other than the network, such as
    `httpx.ASGITransport(gateway_app)` for in-process tests. Served without a lifespan (through
    httpx.ASGITransport, say), call `await sandbox.aclose()` when done.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        callback_delay: float = 0.05,
        price_per_segment: str = "-0.0079",
        price_unit: str = "USD",
        *,
        hang_seconds: float = 30.0,
        retry_after: int = 1,
        max_messages: int = 100_000,
        service_sender: str = "+15005550006",
        callback_concurrency: int = 8,
        callback_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            account_sid,
            auth_token,
            callback_delay,
            price_per_segment,
            price_unit,
            max_messages=max_messages,
            service_sender=service_sender,
            callback_concurrency=callback_concurrency,
            callback_transport=callback_transport,
        )
        self.hang_seconds = hang_seconds
        # every Nth message created gets its answer held like a `hang` fault (0: never)
        self.hang_every = 0
        self.retry_after = retry_after
        self.create_requests = 0
        self._faults = FaultQueue(FAULT_KINDS)
        base = MESSAGES_PATH.replace("{account_sid}", "{account_sid:str}")
        self.app = Starlette(
            routes=[
                Route(f"{base}.json", self._create, methods=["POST"]),
                Route(f"{base}.json", self._list, methods=["GET"]),
                Route(f"{base}/{{sid:str}}.json", self._fetch, methods=["GET"]),
                Route("/_sandbox/messages", self._list_messages, methods=["GET"]),
                Route("/_sandbox/faults", self._faults_endpoint, methods=["GET", "POST"]),
                Route("/_sandbox/settings", self._settings_endpoint, methods=["GET", "POST"]),
                Route("/_sandbox/reset", self._reset_endpoint, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )

    def add_fault(self, kind: str, count: int = 1) -> None:
        """Make the next `count` authenticated create requests fail as `kind`."""
        self._faults.add(kind, count)

    @property
    def pending_faults(self) -> list[str]:
        return self._faults.pending

    def reset(self) -> None:
        """Forget messages, faults and counters; reorder/duplicate off; unsent callbacks dropped."""
        self._faults.clear()
        self.create_requests = 0
        self.reorder = False
        self.duplicate = False
        self.hang_every = 0
        self.forget_messages()

    # -- Twilio API ---------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        self.create_requests += 1
        denied = self._check_access(request)
        if denied is not None:
            return denied
        fault = self._faults.take()
        if fault == "429":
            return error_response(429, 20429, headers={"Retry-After": str(self.retry_after)})
        if fault == "500":
            return error_response(500, 20500)
        form = dict(
            parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        )
        rejected = _validate(form)
        if rejected is not None:
            return rejected
        to = form["To"]
        code = _REJECTING_FAULTS.get(fault or "") or _MAGIC_REJECTIONS.get(to)
        if code is not None:
            return error_response(400, code, to=to)
        undelivered = fault == "30006" or to == _MAGIC_UNDELIVERED
        resource = self.create_message(
            to=to,
            from_=form.get("From") or None,
            service_sid=form.get("MessagingServiceSid") or None,
            body=form["Body"],
            status_callback=form.get("StatusCallback") or None,
            final_error=_UNDELIVERED_CODE if undelivered else None,
        )
        if fault == "hang" or (self.hang_every and self.create_requests % self.hang_every == 0):
            await self._hang(request)
        return JSONResponse(resource, status_code=201, media_type=JSON_TYPE)

    async def _fetch(self, request: Request) -> Response:
        denied = self._check_access(request)
        if denied is not None:
            return denied
        found = self.message(request.path_params["sid"])
        if found is None:
            return error_response(404, 20404, path=request.url.path)
        return JSONResponse(found, media_type=JSON_TYPE)

    async def _list(self, request: Request) -> Response:
        """Message list with Twilio's To/From/DateSent> filters, newest first, in pages
        (`PageSize` up to 1000, `Page`, `PageToken`) linked by `next_page_uri` as Twilio's
        are. Messages not yet sent (no date_sent) are matched on their creation date."""
        denied = self._check_access(request)
        if denied is not None:
            return denied
        query = request.query_params
        after = query.get("DateSent>") or query.get("DateSent>=")
        since = datetime.fromisoformat(after[:10]).date() if after else None
        try:
            size = min(max(int(query.get("PageSize", "50") or 50), 1), 1000)
            number = max(int(query.get("Page", "0") or 0), 0)
        except ValueError:
            return error_response(400, 20001)
        found = []
        for message in reversed(self.messages):  # newest first, as Twilio lists them
            if query.get("To") and message["to"] != query["To"]:
                continue
            if query.get("From") and message["from"] != query["From"]:
                continue
            stamp = message["date_sent"] or message["date_created"]
            if since and parsedate_to_datetime(stamp).date() < since:
                continue
            found.append(message)
        first = number * size
        page = found[first : first + size]
        base = request.url.path
        kept = [(k, v) for k, v in query.multi_items() if k not in ("Page", "PageToken")]

        def page_uri(n: int, token: str | None = None) -> str:
            items = [*kept, ("Page", str(n))] + ([("PageToken", token)] if token else [])
            return base + "?" + urlencode(items)

        more = first + size < len(found)
        return JSONResponse(
            {
                "messages": page,
                "start": first,
                "end": first + max(len(page) - 1, 0),
                "page": number,
                "page_size": size,
                "uri": page_uri(number),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(number + 1, "PA" + page[-1]["sid"]) if more else None,
                "previous_page_uri": page_uri(number - 1) if number > 0 else None,
            },
            media_type=JSON_TYPE,
        )

    def _check_access(self, request: Request) -> Response | None:
        if not self._authorized(request.headers.get("authorization", "")):
            headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            return error_response(401, 20003, headers=headers)
        if request.path_params["account_sid"] != self.account_sid:
            return error_response(404, 20404, path=request.url.path)
        return None

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            credentials = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            return False
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        return hmac.compare_digest(credentials, expected)

    async def _hang(self, request: Request) -> None:
        # The message exists; only the answer is late. Stop early once the client gave up or
        # the sandbox was reset, so a stopping server is not held for the whole delay.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hang_seconds
        generation = self._generation
        while (remaining := deadline - loop.time()) > 0 and generation == self._generation:
            if await request.is_disconnected():
                return
            await asyncio.sleep(min(0.05, remaining))

    # -- control endpoints --------------------------------------------------------------------

    async def _list_messages(self, request: Request) -> Response:
        return JSONResponse({"messages": self.messages, "create_requests": self.create_requests})

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            payload = await _json_object(request)
            kind, count = payload.get("kind"), payload.get("count", 1)
            if kind not in FAULT_KINDS or not isinstance(count, int) or count < 1:
                kinds = ", ".join(sorted(FAULT_KINDS))
                return _bad_request(f"need {{'kind': one of {kinds}, 'count': positive int}}")
            self.add_fault(str(kind), count)
        return JSONResponse({"faults": self.pending_faults})

    async def _settings_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            payload = await _json_object(request)
            for name, value in payload.items():
                kind = _SETTINGS.get(name)
                if kind is None or not _is_kind(value, kind):
                    return _bad_request(f"bad setting {name!r}; known: {sorted(_SETTINGS)}")
            for name, value in payload.items():
                setattr(self, name, _SETTINGS[name](value))
        return JSONResponse({name: getattr(self, name) for name in _SETTINGS})

    async def _reset_endpoint(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.aclose()


def _is_kind(value: object, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    # JSON has one number type; a bool is an int in Python but never a valid number here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value >= 0 and (kind is float or isinstance(value, int))


def _validate(form: dict[str, str]) -> Response | None:
    to = form.get("To", "")
    if not to:
        return error_response(400, 21604)
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return error_response(400, 21603)
    body = form.get("Body", "")
    if not body:
        return error_response(400, 21602)
    if len(body) > MAX_BODY_CHARS:
        return error_response(400, 21617)
    number = to.split(":", 1)[1] if ":" in to else to  # channel prefixes such as "whatsapp:"
    if not _PHONE.match(number):
        return error_response(400, 21211, to=to)
    return None


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        payload = await request.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _bad_request(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)


def run(
    host: str,
    port: int,
    account_sid: str,
    auth_token: str,
    *,
    callback_delay: float = 0.05,
    callback_concurrency: int = 8,
    log_level: str = "warning",
) -> None:
    """Serve a fresh sandbox with uvicorn in the foreground until interrupted."""
    sandbox = TwilioSandbox(
        account_sid,
        auth_token,
        callback_delay=callback_delay,
        callback_concurrency=callback_concurrency,
    )
    uvicorn.run(
        sandbox.app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on"
    )
