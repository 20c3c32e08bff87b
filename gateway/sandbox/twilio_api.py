"""A local emulator of Twilio's Programmable Messaging REST API.

`TwilioSandbox(...).app` is a Starlette app that answers `Messages.json` exactly as
api.twilio.com does (form posts, basic auth, JSON resources, Twilio error bodies), walks each
message through queued → sending → sent → delivered, and posts signed status callbacks. Fault
switches and Twilio's magic test numbers reproduce the failures the gateway must survive.
Control endpoints live under `/_sandbox/`; they are not part of Twilio's API.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from datetime import datetime
from urllib.parse import parse_qsl, urlencode

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox.control import closing
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


class TwilioSandbox(TwilioMessages):
    """One emulated Twilio account: serve `.app` with any ASGI server.

    `callback_transport` routes status callbacks somewhere other than the network, such as
    `httpx.ASGITransport(gateway_app)` for in-process tests. Served without a lifespan (through
    httpx.ASGITransport, say), call `await sandbox.aclose()` when done.
    """

    fault_kinds = FAULT_KINDS

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
        self.retry_after = retry_after
        base = MESSAGES_PATH.replace("{account_sid}", "{account_sid:str}")
        self.app = Starlette(
            routes=[
                Route(f"{base}.json", self._create, methods=["POST"]),
                Route(f"{base}.json", self._list, methods=["GET"]),
                Route(f"{base}/{{sid:str}}.json", self._fetch, methods=["GET"]),
                *self.control_routes(),
            ],
            lifespan=closing(self.aclose),
        )

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
        if self._hangs(fault):
            await self._hang(request)
        return JSONResponse(resource, status_code=201, media_type=JSON_TYPE)

    async def _fetch(self, request: Request) -> Response:
        denied = self._check_access(request)
        if denied is not None:
            return denied
        await self._hang_lookup(request)
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
        await self._hang_lookup(request)
        query = request.query_params
        after = query.get("DateSent>") or query.get("DateSent>=")
        since = datetime.fromisoformat(after[:10]).date() if after else None
        try:
            size = min(max(int(query.get("PageSize", "50") or 50), 1), 1000)
            number = max(int(query.get("Page", "0") or 0), 0)
        except ValueError:
            return error_response(400, 20001)
        first = number * size
        page, matching = self.list_page(
            query.get("To") or None, query.get("From") or None, since, first, size
        )
        base = request.url.path
        kept = [(k, v) for k, v in query.multi_items() if k not in ("Page", "PageToken")]

        def page_uri(n: int, token: str | None = None) -> str:
            items = [*kept, ("Page", str(n))] + ([("PageToken", token)] if token else [])
            return base + "?" + urlencode(items)

        more = first + size < matching
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
