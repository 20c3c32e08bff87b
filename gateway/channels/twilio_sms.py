"""SMS through the operator's Twilio account, with the official `twilio` library running on
an httpx-based HttpClient whose base URL is configurable (the sandbox replaces it in tests).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from gateway.channels.base import OutboundMessage, ProviderError, SendResult

TWILIO_BASE = "https://api.twilio.com"
log = logging.getLogger("gateway.twilio")

# Twilio error codes (https://www.twilio.com/docs/api/errors) that no retry will fix.
_PERMANENT = {
    21211: "invalid 'To' phone number",
    21408: "no permission to send to this region",
    21610: "the recipient replied STOP and is unsubscribed",
    21612: "the 'To' number cannot be reached from this sender",
    21614: "the 'To' number is not a mobile number",
    21606: "the 'From' number cannot send SMS",
    30006: "landline or unreachable carrier",
}


class HttpxTwilioClient(AsyncHttpClient):  # type: ignore[misc]
    """The twilio library's async HTTP interface on a shared httpx.AsyncClient."""

    def __init__(self, base_url: str, client: httpx.AsyncClient) -> None:
        super().__init__(log, is_async=True)
        self.base_url = base_url.rstrip("/")
        self.client = client

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's interface
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if uri.startswith(TWILIO_BASE):
            uri = self.base_url + uri[len(TWILIO_BASE) :]
        response = await self.client.request(
            method,
            uri,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=headers,
            auth=auth,
            follow_redirects=allow_redirects,
        )
        return TwilioResponse(response.status_code, response.text, response.headers)


def classify(exc: BaseException) -> ProviderError:
    if isinstance(exc, TwilioRestException):
        code = int(exc.code) if exc.code else None
        label = str(code or exc.status)
        if exc.status == 429 or code == 20429:
            return ProviderError("transient", "Twilio rate limit (429)", code=label)
        if exc.status >= 500:
            return ProviderError("transient", f"Twilio server error {exc.status}", code=label)
        if exc.status in (401, 403) or code == 20003:
            return ProviderError(
                "configuration", "Twilio rejected the gateway's credentials", code=label
            )
        if code in _PERMANENT:
            return ProviderError(
                "permanent",
                _PERMANENT[code],
                code=label,
                suppress="stop_keyword" if code == 21610 else None,
            )
        return ProviderError("permanent", f"Twilio refused the message: {exc.msg}", code=label)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return ProviderError("transient", f"could not reach Twilio: {type(exc).__name__}")
    if isinstance(exc, httpx.TransportError):
        # the request may have reached Twilio: its outcome is unknown
        return ProviderError("unknown", f"no answer from Twilio: {type(exc).__name__}")
    return ProviderError("transient", f"Twilio client error: {exc}")


def _segments(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class TwilioSmsAdapter:
    provider = "twilio"

    def __init__(
        self, account_sid: str, auth_token: str, base_url: str, timeout: float = 10.0
    ) -> None:
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.client = Client(
            account_sid, auth_token, http_client=HttpxTwilioClient(base_url, self._http)
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        kwargs: dict[str, Any] = {"to": message.to, "body": message.body}
        if message.sender and message.sender.startswith("MG"):
            kwargs["messaging_service_sid"] = message.sender
        else:
            kwargs["from_"] = message.sender
        if message.status_callback:
            kwargs["status_callback"] = message.status_callback
        try:
            created = await self.client.messages.create_async(**kwargs)
        except (TwilioException, httpx.HTTPError) as exc:
            raise classify(exc) from exc
        return SendResult(
            provider=self.provider,
            provider_message_id=created.sid,
            provider_status=created.status or "queued",
            num_segments=_segments(created.num_segments),
        )

    async def fetch(self, sid: str) -> dict[str, Any]:
        try:
            found = await self.client.messages(sid).fetch_async()
        except (TwilioException, httpx.HTTPError) as exc:
            raise classify(exc) from exc
        return {
            "status": found.status,
            "price": found.price,
            "price_unit": found.price_unit,
            "num_segments": _segments(found.num_segments),
            "error_code": found.error_code,
        }

    async def find_sent(self, to: str, body: str, sent_after: date) -> list[dict[str, Any]]:
        """Messages to `to` with this exact body since a day: how a send whose answer was
        lost is found again, instead of being sent twice."""
        try:
            found = await self.client.messages.list_async(
                to=to, date_sent_after=sent_after, limit=100
            )
        except (TwilioException, httpx.HTTPError) as exc:
            raise classify(exc) from exc
        return [
            {"sid": m.sid, "status": m.status, "num_segments": _segments(m.num_segments)}
            for m in found
            if m.body == body
        ]

    async def aclose(self) -> None:
        await self._http.aclose()
