"""Telnyx's webhooks: one URL receives every messaging event.

Each request carries `telnyx-signature-ed25519` (base64 Ed25519 signature) and
`telnyx-timestamp` (Unix seconds); the signature covers `f"{timestamp}|{raw body}"` and is
checked with the account's public key (base64, from Mission Control), and the timestamp
must be within five minutes of our clock, as Telnyx's own SDKs require. The body is
`{"data": {"event_type", "id", "occurred_at", "payload": <message>}, "meta": {...}}`:
`message.sent` and `message.finalized` report an outbound message's status (and its cost),
`message.received` brings an inbound one. Telnyx does not sign the URL, so our message id
is read from the `webhook_url` inside the signed payload, never from the request's query.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.domain.messages import InboundMessage
from gateway.providers.base import WebhookEvents, WebhookRejected, WebhookReply, WebhookRequest
from gateway.providers.telnyx import statuses

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
TOLERANCE_SECONDS = 300.0
# the query parameter of the webhook_url we send with a message that names our message id
MESSAGE_ID_PARAM = "mid"
SOURCE = "telnyx"
_STATUS_EVENTS = frozenset({"message.sent", "message.finalized"})


def load_public_key(encoded: str) -> Ed25519PublicKey:
    """The account's public key from its base64 form; ValueError if it is not one."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the Telnyx public key is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"the Telnyx public key has {len(raw)} bytes, not 32")
    return Ed25519PublicKey.from_public_bytes(raw)


class TelnyxWebhooks:
    name = "telnyx"
    kinds = frozenset({"events"})

    def __init__(
        self,
        public_key: str | None,
        *,
        tolerance: float = TOLERANCE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # a key that cannot be read fails at start-up, not on the first webhook
        self._key = load_public_key(public_key) if public_key else None
        self.tolerance = tolerance
        self._clock = clock

    def verify(self, kind: str, request: WebhookRequest, secrets: Any | None = None) -> None:
        if kind not in self.kinds:
            raise WebhookRejected(f"no Telnyx webhook {kind!r}")
        if self._key is None:
            raise WebhookRejected("TELNYX_PUBLIC_KEY not set")
        signature = request.headers.get(SIGNATURE_HEADER)
        stamp = request.headers.get(TIMESTAMP_HEADER)
        if not signature or not stamp:
            raise WebhookRejected("no signature")
        try:
            sent_at = int(stamp)
        except ValueError:
            raise WebhookRejected("unreadable timestamp") from None
        if abs(self._clock() - sent_at) > self.tolerance:
            raise WebhookRejected("timestamp outside the tolerance")
        try:
            raw_signature = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected("unreadable signature") from None
        try:
            self._key.verify(raw_signature, stamp.encode() + b"|" + request.body)
        except InvalidSignature:
            raise WebhookRejected("signature mismatch") from None

    def parse(
        self, kind: str, request: WebhookRequest, secrets: Any | None = None
    ) -> WebhookEvents:
        envelope = _envelope(request.body)
        data = envelope.get("data")
        data = data if isinstance(data, dict) else {}
        payload = data.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        event = data.get("event_type")
        reply = WebhookReply(204)
        if event in _STATUS_EVENTS and payload.get("direction") != "inbound":
            found = statuses.report(
                payload,
                SOURCE,
                envelope,
                message_id=_our_message_id(payload),
                at=data.get("occurred_at") if isinstance(data.get("occurred_at"), str) else None,
            )
            return WebhookEvents(statuses=[found] if found else [], reply=reply)
        if event == "message.received":
            inbound = _inbound(payload, envelope)
            return WebhookEvents(inbound=[inbound] if inbound else [], reply=reply)
        return WebhookEvents(reply=reply)


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookRejected("unreadable body") from None
    if not isinstance(envelope, dict):
        raise WebhookRejected("unreadable body")
    return envelope


def _our_message_id(payload: dict[str, Any]) -> str | None:
    url = payload.get("webhook_url")
    if not isinstance(url, str) or not url:
        return None
    found = parse_qs(urlsplit(url).query).get(MESSAGE_ID_PARAM)
    return found[0] if found else None


def _inbound(payload: dict[str, Any], envelope: dict[str, Any]) -> InboundMessage | None:
    message_id = payload.get("id")
    sender = payload.get("from")
    if not message_id or not isinstance(sender, dict):
        return None
    return InboundMessage(
        channel="sms",
        provider="telnyx",
        provider_message_id=str(message_id),
        from_address=str(sender.get("phone_number") or ""),
        to_address=str(statuses.recipient(payload).get("phone_number") or ""),
        body=str(payload.get("text") or ""),
        payload=envelope,
    )
