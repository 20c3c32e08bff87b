"""SMS through the operator's Telnyx account: Messaging API v2 over one shared httpx client.

`POST /v2/messages` with a Bearer API key and a JSON body (`from`, `to`, `text`,
`messaging_profile_id`, `webhook_url`) answers `{"data": <message>}`, the message carrying
its id, its recipient's status (`to[0].status`), its parts and its cost; `GET
/v2/messages/{id}` reads one back (for ten days). Telnyx offers no search of sent messages
by recipient that could prove a message absent, so `find_sent` says the outcome stays
unknown rather than risk a duplicate SMS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from gateway.domain.errors import ErrorKind, ProviderError
from gateway.domain.messages import OutboundMessage, ProviderMessage, SendResult, StatusReport
from gateway.providers.http import json_object
from gateway.providers.telnyx import statuses
from gateway.providers.telnyx.errors import classify_response, classify_transport

TELNYX_BASE = "https://api.telnyx.com"
MESSAGES_PATH = "/v2/messages"


class TelnyxSms:
    """Sender and Lookup for Telnyx. `sender` is the number (or alphanumeric id) used when a
    message names none; `messaging_profile_id` is sent with every message (Telnyx needs it
    for a number pool or an alphanumeric sender)."""

    name = "telnyx"
    channel = "sms"

    def __init__(
        self,
        api_key: str,
        base_url: str = TELNYX_BASE,
        timeout: float = 10.0,
        *,
        sender: str | None = None,
        messaging_profile_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Telnyx API key is required")
        self.sender = sender or None
        self.messaging_profile_id = messaging_profile_id or None
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            transport=transport,
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        body = self._request(message)
        try:
            response = await self._http.post(MESSAGES_PATH, json=body)
        except httpx.HTTPError as exc:
            raise classify_transport(exc, sent_something=True) from exc
        record = _record(response)
        price, unit = statuses.cost(record)
        return SendResult(
            provider=self.name,
            provider_message_id=str(record["id"]),
            provider_status=str(statuses.recipient(record).get("status") or "queued"),
            num_segments=_parts(record.get("parts")),
            price=price,
            price_unit=unit,
            raw=record,
        )

    async def fetch(self, provider_message_id: str) -> ProviderMessage:
        path = f"{MESSAGES_PATH}/{quote(provider_message_id, safe='')}"
        try:
            response = await self._http.get(path)
        except httpx.HTTPError as exc:
            # a read changes nothing at Telnyx: asking again is always safe
            raise classify_transport(exc, sent_something=False) from exc
        if response.status_code == 404:
            raise ProviderError(
                "permanent",
                f"Telnyx has no message {provider_message_id} (it keeps them ten days)",
                code="10005",
            )
        record = _record(response, reading=True)
        code, _ = statuses.first_error(record)
        price, unit = statuses.cost(record)
        return ProviderMessage(
            provider_message_id=str(record["id"]),
            status=str(statuses.recipient(record).get("status") or "queued"),
            created=_moment(record.get("received_at") or record.get("created_at")),
            body=record.get("text"),
            num_segments=_parts(record.get("parts")),
            price=price,
            price_unit=unit,
            error_code=code,
        )

    async def find_sent(
        self, to: str, sender: str | None, since: datetime
    ) -> list[ProviderMessage]:
        # Telnyx's only search over messages is its detail-record reporting, which promises
        # no freshness: an empty answer there would not prove the message absent, and
        # treating it as proof would send the SMS twice.
        raise ProviderError(
            "unknown",
            "Telnyx offers no look-up of sent messages by recipient, so whether it took "
            "this one cannot be told",
        )

    def report(self, found: ProviderMessage, source: str) -> StatusReport | None:
        status = statuses.STATUS.get(found.status)
        if status is None:
            return None
        reason = None
        if found.error_code:
            reason = statuses.ERRORS.get(found.error_code, f"provider error {found.error_code}")
        return StatusReport(
            status=status,
            provider_status=found.status,
            source=source,
            payload={"status": found.status, "error_code": found.error_code},
            error_code=found.error_code,
            error_reason=reason,
            provider_message_id=found.provider_message_id,
            provider=self.name,
            price=found.price,
            price_unit=found.price_unit,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _request(self, message: OutboundMessage) -> dict[str, Any]:
        if not message.body:
            raise ProviderError("permanent", "an SMS needs a text")
        sender = message.sender or self.sender
        if sender is None and self.messaging_profile_id is None:
            raise ProviderError(
                "configuration", "no Telnyx sender: set a phone number or a messaging profile"
            )
        body: dict[str, Any] = {"to": message.to, "text": message.body}
        if sender is not None:
            body["from"] = sender
        if self.messaging_profile_id is not None:
            body["messaging_profile_id"] = self.messaging_profile_id
        if message.status_callback:
            body["webhook_url"] = message.status_callback
        return body


def _record(response: httpx.Response, *, reading: bool = False) -> dict[str, Any]:
    """The `data` of a successful answer; a ProviderError for any other."""
    if response.status_code >= 400:
        raise classify_response(response)
    if not response.is_success:
        raise ProviderError(
            "configuration", f"Telnyx answered HTTP {response.status_code}: check its base URL"
        )
    record = json_object(response).get("data")
    if not isinstance(record, dict) or not record.get("id"):
        # a send Telnyx answered with success may well have been taken
        kind: ErrorKind = "transient" if reading else "unknown"
        raise ProviderError(kind, "Telnyx answered without a readable message")
    return record


def _parts(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
