"""The sandbox account's messages and their life cycle after creation.

Each message walks queued → sending → sent → delivered (or undelivered) one step per
`callback_delay`, driven by timers on the event loop's own heap rather than a sleeping task
per message, so thousands of messages a second cost little. State is guarded by a lock
because tests read it from another thread than the one serving the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx

from gateway.sandbox.sms_emulator import SmsEmulator
from gateway.sandbox.twilio_callbacks import CallbackSender
from gateway.sandbox.twilio_wire import (
    API_VERSION,
    ERROR_MESSAGES,
    new_sid,
    price_for,
    raw_dlr_done_date,
    rfc2822,
    segment_count,
)

MESSAGES_PATH = "/2010-04-01/Accounts/{account_sid}/Messages"

_NEXT_STATUS = {"accepted": "queued", "queued": "sending", "sending": "sent", "sent": "delivered"}
_FINAL = frozenset({"delivered", "undelivered", "failed"})
# Twilio posts no callback for the initial status, nor for the fleeting "sending".
_CALLBACK_STATUSES = frozenset({"queued", "sent", "delivered", "undelivered", "failed"})


@dataclass(slots=True)
class _Message:
    sid: str
    to: str
    from_: str | None
    service_sid: str | None
    body: str
    status_callback: str | None
    segments: int
    created: datetime
    status: str
    final_error: int | None
    updated: datetime = field(init=False)
    sent: datetime | None = None
    error_code: int | None = None
    history: list[str] = field(init=False)
    held: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.updated = self.created
        self.history = [self.status]


class TwilioMessages(SmsEmulator[_Message]):
    """Message state, the life-cycle switches and the read helpers tests use."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        callback_delay: float = 0.05,
        price_per_segment: str = "-0.0079",
        price_unit: str = "USD",
        *,
        max_messages: int = 100_000,
        service_sender: str = "+15005550006",
        callback_concurrency: int = 8,
        callback_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.price_per_segment = price_per_segment
        self.price_unit = price_unit
        self.service_sender = service_sender
        self.callbacks = CallbackSender(
            auth_token, concurrency=callback_concurrency, transport=callback_transport
        )
        super().__init__(self.callbacks, callback_delay, max_messages)
        # message sids by recipient, oldest first: a list filtered on To (how a lost answer
        # is looked up) reads that recipient's messages only, not the whole account
        self._by_to: dict[str, list[str]] = {}

    def create_message(
        self,
        *,
        to: str,
        from_: str | None,
        service_sid: str | None,
        body: str,
        status_callback: str | None,
        final_error: int | None = None,
    ) -> dict[str, Any]:
        """Store a new message, start its life cycle and return the resource; on the loop."""
        message = _Message(
            sid=new_sid("SM"),
            to=to,
            from_=from_,
            service_sid=service_sid,
            body=body,
            status_callback=status_callback,
            segments=segment_count(body),
            created=_now(),
            status="accepted" if service_sid else "queued",
            final_error=final_error,
        )
        with self._lock:
            self._by_to.setdefault(to, []).append(message.sid)
        return self._add(message.sid, message)

    def list_page(
        self, to: str | None, from_: str | None, since: date | None, first: int, size: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the messages matching Twilio's list filters, newest first (not yet
        sent: matched on the creation date), and how many match in all. Only the page's
        resources are built."""
        with self._lock:
            if to is None:
                candidates = list(self._messages.values())
            else:
                found = (self._messages.get(sid) for sid in self._by_to.get(to, ()))
                candidates = [m for m in found if m is not None]  # evicted ones are gone
            matching = [
                m
                for m in reversed(candidates)
                if (from_ is None or m.from_ == from_)
                and (since is None or (m.sent or m.created).date() >= since)
            ]
            page = [self._resource(m) for m in matching[first : first + size]]
        return page, len(matching)

    def forget_messages(self) -> None:
        super().forget_messages()
        with self._lock:
            self._by_to.clear()

    def _advance(self, sid: str, generation: int) -> None:
        with self._lock:
            message = self._messages.get(sid)
            if generation != self._generation or message is None or message.status in _FINAL:
                return
            status = _NEXT_STATUS[message.status]
            if status == "delivered" and message.final_error is not None:
                status = "undelivered"
            now = _now()
            message.status, message.updated = status, now
            message.history.append(status)
            if message.from_ is None and status == "queued":
                message.from_ = self.service_sender
            if status == "sent":
                message.sent = now
            if status in _FINAL:
                message.error_code = message.final_error
            batch = self._callback_batch(message, now)
        if status not in _FINAL:
            self._next_step(sid, generation)
        if batch and message.status_callback:
            self.callbacks.send(sid, message.status_callback, batch)

    def _callback_batch(self, message: _Message, now: datetime) -> list[dict[str, Any]]:
        if message.status_callback is None or message.status not in _CALLBACK_STATUSES:
            return []
        return self._reports(message, self._callback_params(message, now), message.status in _FINAL)

    def _callback_params(self, message: _Message, now: datetime) -> dict[str, str]:
        params = {
            "MessageSid": message.sid,
            "SmsSid": message.sid,
            "AccountSid": self.account_sid,
            "From": message.from_ or "",
            "To": message.to,
            "MessageStatus": message.status,
            "SmsStatus": message.status,
            "ApiVersion": API_VERSION,
        }
        if message.service_sid:
            params["MessagingServiceSid"] = message.service_sid
        if message.status in ("delivered", "undelivered"):
            params["RawDlrDoneDate"] = raw_dlr_done_date(now)
        if message.error_code is not None:
            params["ErrorCode"] = str(message.error_code)
        return params

    def _resource(self, message: _Message) -> dict[str, Any]:
        uri = f"{MESSAGES_PATH.format(account_sid=self.account_sid)}/{message.sid}"
        final = message.status in _FINAL
        code = message.error_code
        # Through a Messaging Service Twilio reports 0 segments until it picks the sender.
        segments = 0 if message.status == "accepted" else message.segments
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": message.body,
            "date_created": rfc2822(message.created),
            "date_sent": rfc2822(message.sent),
            "date_updated": rfc2822(message.updated),
            "direction": "outbound-api",
            "error_code": code,
            "error_message": None if code is None else ERROR_MESSAGES.get(code),
            "from": message.from_,
            "messaging_service_sid": message.service_sid,
            "num_media": "0",
            "num_segments": str(segments),
            "price": price_for(self.price_per_segment, message.segments) if final else None,
            "price_unit": self.price_unit,
            "sid": message.sid,
            "status": message.status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": message.to,
            "uri": f"{uri}.json",
        }


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
