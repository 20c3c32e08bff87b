"""The sandbox account's messages and their life cycle after creation.

Each message walks queued → sending → sent → delivered (or delivery_failed) one step per
`callback_delay`, on timers of the event loop. Telnyx posts `message.sent` when the carrier
has the message and `message.finalized` when its status is final, both carrying the whole
message (with its cost). State is guarded by a lock because tests read it from another
thread than the one serving the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.sandbox.sms_emulator import SmsEmulator
from gateway.sandbox.telnyx_webhooks import WebhookPoster, event, public_key_b64
from gateway.sandbox.telnyx_wire import (
    DELIVERY_ERRORS,
    amount,
    encoding_of,
    iso,
    new_id,
    segment_count,
)

_NEXT_STATUS = {"queued": "sending", "sending": "sent", "sent": "delivered"}
_FINAL = frozenset({"delivered", "delivery_failed"})
# How long a message may wait in Telnyx's queue (the sandbox's own choice).
_VALIDITY = timedelta(hours=4)


@dataclass(slots=True)
class _Message:
    id: str
    to: str
    from_: str
    profile_id: str | None
    text: str
    webhook_url: str | None
    failover_url: str | None
    urls: list[str]
    parts: int
    received: datetime
    final_error: str | None
    status: str = "queued"
    sent: datetime | None = None
    completed: datetime | None = None
    history: list[str] = field(default_factory=lambda: ["queued"])
    held: list[dict[str, Any]] | None = None


class TelnyxMessages(SmsEmulator[_Message]):
    """Message state, the life-cycle switches and the read helpers tests use."""

    def __init__(
        self,
        api_key: str,
        private_key: Ed25519PrivateKey | None = None,
        callback_delay: float = 0.05,
        *,
        phone_number: str = "+15550100001",
        messaging_profile_id: str | None = None,
        profile_webhook_url: str | None = None,
        rate_per_part: str = "0.0040",
        carrier_fee_per_part: str = "0.0030",
        currency: str = "USD",
        max_messages: int = 100_000,
        webhook_concurrency: int = 8,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_key = api_key
        self.private_key = private_key or Ed25519PrivateKey.generate()
        self.public_key = public_key_b64(self.private_key)
        self.phone_number = phone_number
        self.messaging_profile_id = messaging_profile_id or new_id()
        self.organization_id = new_id()
        # the messaging profile's webhook: inbound messages, and messages sent without one
        self.profile_webhook_url = profile_webhook_url
        self.rate_per_part = rate_per_part
        self.carrier_fee_per_part = carrier_fee_per_part
        self.currency = currency
        self.webhooks = WebhookPoster(
            self.private_key, concurrency=webhook_concurrency, transport=webhook_transport
        )
        super().__init__(self.webhooks, callback_delay, max_messages)

    def create_message(
        self,
        *,
        to: str,
        from_: str,
        text: str,
        webhook_url: str | None,
        failover_url: str | None,
        use_profile_webhooks: bool = True,
        final_error: str | None = None,
    ) -> dict[str, Any]:
        """Store a new message, start its life cycle and return it; on the loop."""
        if webhook_url:
            urls = [webhook_url, *([failover_url] if failover_url else [])]
        elif use_profile_webhooks and self.profile_webhook_url:
            urls = [self.profile_webhook_url]
        else:
            urls = []
        message = _Message(
            id=new_id(),
            to=to,
            from_=from_,
            profile_id=self.messaging_profile_id,
            text=text,
            webhook_url=webhook_url,
            failover_url=failover_url,
            urls=urls,
            parts=segment_count(text),
            received=datetime.now(UTC),
            final_error=final_error,
        )
        return self._add(message.id, message)

    def _advance(self, message_id: str, generation: int) -> None:
        with self._lock:
            message = self._messages.get(message_id)
            if generation != self._generation or message is None or message.status in _FINAL:
                return
            status = _NEXT_STATUS[message.status]
            if status == "delivered" and message.final_error is not None:
                status = "delivery_failed"
            now = datetime.now(UTC)
            message.status = status
            message.history.append(status)
            if status == "sent":
                message.sent = now
            if status in _FINAL:
                message.completed = now
            batch = self._webhook_batch(message)
        if status not in _FINAL:
            self._next_step(message_id, generation)
        for data in batch:
            self.webhooks.post(message_id, message.urls, data)

    def _webhook_batch(self, message: _Message) -> list[dict[str, Any]]:
        if not message.urls or message.status not in ("sent", *_FINAL):
            return []
        kind = "message.sent" if message.status == "sent" else "message.finalized"
        return self._reports(
            message, event(kind, self._resource(message)), message.status in _FINAL
        )

    def _resource(self, message: _Message) -> dict[str, Any]:
        rate = amount(self.rate_per_part, message.parts)
        fee = amount(self.carrier_fee_per_part, message.parts)
        per_part = Decimal(self.rate_per_part) + Decimal(self.carrier_fee_per_part)
        total = amount(str(per_part), message.parts)
        failed = message.status == "delivery_failed" and message.final_error is not None
        errors = []
        if failed:
            assert message.final_error is not None
            title, detail = DELIVERY_ERRORS[message.final_error]
            errors = [{"code": message.final_error, "title": title, "detail": detail}]
        queued = message.status in ("queued", "sending")
        return {
            "record_type": "message",
            "direction": "outbound",
            "id": message.id,
            "type": "SMS",
            "messaging_profile_id": message.profile_id,
            "organization_id": self.organization_id,
            "from": {"phone_number": message.from_, "carrier": "Telnyx", "line_type": "VoIP"},
            "to": [
                {
                    "phone_number": message.to,
                    "status": message.status,
                    "carrier": "",
                    "line_type": "Wireless",
                }
            ],
            "cc": [],
            "text": message.text,
            "subject": None,
            "media": [],
            "webhook_url": message.webhook_url,
            "webhook_failover_url": message.failover_url,
            "encoding": encoding_of(message.text),
            "parts": message.parts,
            "tags": [],
            "cost": {"amount": total, "currency": self.currency},
            "cost_breakdown": {
                "carrier_fee": {"amount": fee, "currency": self.currency},
                "rate": {"amount": rate, "currency": self.currency},
            },
            "tcr_campaign_id": None,
            "tcr_campaign_billable": False,
            "tcr_campaign_registered": None,
            "received_at": iso(message.received),
            "sent_at": iso(message.sent),
            "completed_at": iso(message.completed),
            # nulled once the message leaves the queue, as Telnyx does
            "valid_until": iso(message.received + _VALIDITY) if queued else None,
            "errors": errors,
        }
