"""SMS through the operator's Twilio account: a send is one lean form POST on a pooled
aiohttp session (`gateway.providers.twilio.rest`: the library's request, without its cost
per send; aiohttp because it costs a fraction of httpx's CPU per request — bench/RESULTS.md);
look-ups use the official `twilio` library on an httpx-based HttpClient. Both go to a
configurable base URL (the sandbox replaces it in tests).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import aiohttp
import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from gateway.domain.errors import ProviderError
from gateway.domain.messages import OutboundMessage, ProviderMessage, SendResult, StatusReport
from gateway.providers.http import aiohttp_error, transport_error
from gateway.providers.twilio import statuses
from gateway.providers.twilio.rest import MessagesEndpoint, created_resource, message_form

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
    if isinstance(exc, httpx.HTTPError):
        return transport_error(exc, "Twilio")
    return ProviderError("transient", f"Twilio client error: {exc}")


_PAGE_SIZE = 1000  # Twilio's largest page
_MAX_LISTED = 50_000


def _provider_message(record: Any) -> ProviderMessage:
    code = record.error_code
    return ProviderMessage(
        provider_message_id=record.sid,
        status=record.status or "queued",
        created=record.date_created,
        body=record.body,
        num_segments=_segments(record.num_segments),
        price=record.price,
        price_unit=record.price_unit,
        error_code=str(code) if code not in (None, 0, "0") else None,
    )


def _segments(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class TwilioSms:
    """Sender and Lookup for SMS on the operator's Twilio account."""

    name = "twilio"
    channel = "sms"

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
        self._messages = MessagesEndpoint.for_account(base_url, account_sid, auth_token)
        # the limits of the httpx client: connect 5 s, each read `timeout`
        self._send_timeout = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _sending(self) -> aiohttp.ClientSession:
        """The send session, made on first use: it belongs to the running event loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64),
                timeout=self._send_timeout,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),  # the library's, in the endpoint's headers
            )
        return self._session

    async def send(self, message: OutboundMessage) -> SendResult:
        endpoint = self._messages
        form = message_form(message.to, message.sender, message.body, message.status_callback)
        try:
            async with self._sending().post(
                endpoint.url,
                data=endpoint.encode(form),
                headers=endpoint.headers,
                allow_redirects=False,  # as the library's create: a 3xx is an error
            ) as response:
                # JSON is UTF-8; as httpx's `.text`, nothing undecodable raises
                text = (await response.read()).decode("utf-8", "replace")
            created = created_resource(response.status, text, endpoint.url)
        except TwilioException as exc:
            raise classify(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise aiohttp_error(exc, "Twilio") from exc
        sid: Any = created.get("sid")  # as the library's MessageInstance reads it
        return SendResult(
            provider=self.name,
            provider_message_id=sid,
            provider_status=created.get("status") or "queued",
            num_segments=_segments(created.get("num_segments")),
        )

    async def fetch(self, provider_message_id: str) -> ProviderMessage:
        try:
            found = await self.client.messages(provider_message_id).fetch_async()
        except (TwilioException, httpx.HTTPError) as exc:
            raise classify(exc) from exc
        return _provider_message(found)

    async def find_sent(
        self, to: str, sender: str | None, since: datetime
    ) -> list[ProviderMessage]:
        """Every message to `to` from `sender` (a number, an alphanumeric id or a Messaging
        Service sid) created since `since`: how a send whose answer was lost is found again.

        Twilio lists newest first and pages: the pages are followed until a whole page is
        older than `since` (not a fixed count: a recipient may have had a hundred newer
        messages since). No DateSent filter, because a message still queued at Twilio has
        no DateSent yet."""
        service = sender if sender and sender.startswith("MG") else None
        filters: dict[str, Any] = {"to": to, "page_size": _PAGE_SIZE}
        if sender and service is None:
            filters["from_"] = sender
        found: list[ProviderMessage] = []
        older_in_a_row = 0
        seen = 0
        try:
            records = await self.client.messages.stream_async(**filters)
            async for record in records:
                seen += 1
                if seen > _MAX_LISTED:
                    raise ProviderError(
                        "unknown", f"more than {_MAX_LISTED} messages to look through"
                    )
                created = record.date_created
                if created is not None and created < since:
                    older_in_a_row += 1
                    if older_in_a_row >= _PAGE_SIZE:
                        break
                    continue
                older_in_a_row = 0
                if service is not None and record.messaging_service_sid != service:
                    continue
                found.append(_provider_message(record))
        except (TwilioException, httpx.HTTPError) as exc:
            raise classify(exc) from exc
        return found

    def report(self, found: ProviderMessage, source: str) -> StatusReport | None:
        return statuses.report(
            found.status,
            source,
            {"status": found.status, "error_code": found.error_code},
            error_code=found.error_code,
            provider_message_id=found.provider_message_id,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._http.aclose()
