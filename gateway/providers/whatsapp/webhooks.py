"""WhatsApp's webhooks, Meta's Cloud API or 360dialog (which forwards the same envelope):
the GET subscription handshake, the signature (Meta: `X-Hub-Signature-256`, an HMAC of the
raw body with the app secret; 360dialog: the secret header chosen at registration, equal to
the tenant's `verify_token`), and the parsing of statuses and customer messages. Every
webhook is scoped to one tenant, whose settings carry the secrets."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.channel_models import WhatsAppConfig
from gateway.domain.errors import ProviderError
from gateway.domain.messages import InboundMessage, StatusReport
from gateway.ids import iso
from gateway.providers.base import WebhookEvents, WebhookRejected, WebhookReply, WebhookRequest
from gateway.providers.whatsapp.cloud import _classify, _int
from gateway.validation import loads_json

D360_SECRET_HEADER = "x-webhook-secret"
STATUS = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}


class WhatsAppWebhooks:
    name = "whatsapp"
    kinds = frozenset({"events", "verify"})

    def verify(self, kind: str, request: WebhookRequest, secrets: Any | None = None) -> None:
        config = secrets if isinstance(secrets, WhatsAppConfig) else None
        token = _secret(config.verify_token) if config else ""
        if kind == "verify":
            if subscription_challenge(request.query, token) is None:
                raise WebhookRejected("verify token mismatch")
            return
        if config is None:
            raise WebhookRejected("no WhatsApp settings")
        if config.provider == "meta_cloud":
            header = request.headers.get("x-hub-signature-256")
            if not verify_meta_signature(request.body, header, _secret(config.app_secret)):
                raise WebhookRejected("X-Hub-Signature-256 mismatch")
        elif not _matches(token, request.headers.get(D360_SECRET_HEADER)):
            raise WebhookRejected("360dialog secret header mismatch")

    def parse(
        self, kind: str, request: WebhookRequest, secrets: Any | None = None
    ) -> WebhookEvents:
        if kind == "verify":
            return WebhookEvents(reply=WebhookReply(200, request.query.get("hub.challenge", "")))
        config = secrets if isinstance(secrets, WhatsAppConfig) else WhatsAppConfig()
        try:
            payload = loads_json(request.body)
        except ValueError as exc:
            raise ValueError(f"The webhook body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ValueError("The webhook body is not a JSON object")
        updates, messages = parse_webhook(payload)
        reports = [
            StatusReport(
                status=STATUS[u.status],
                provider_status=u.status,
                source=config.provider,
                payload=u.raw,
                error_code=u.error_code,
                error_reason=u.error_reason,
                provider_message_id=u.wamid,
                at=iso(u.timestamp.astimezone(UTC)),
                provider=config.provider,
            )
            for u in updates
            if u.status in STATUS
        ]
        inbound = [
            InboundMessage(
                channel="whatsapp",
                provider=config.provider,
                provider_message_id=m.wamid,
                from_address=m.from_wa_id,
                to_address=config.phone_number_id or m.phone_number_id,
                body=m.text or "",
                payload=m.raw,
            )
            for m in messages
        ]
        return WebhookEvents(statuses=reports, inbound=inbound)


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def _matches(expected: str | None, given: str | None) -> bool:
    """The tenant's verify token (or 360dialog secret) against what a request carries, in
    constant time; an empty one matches nothing."""
    return bool(expected and given) and hmac.compare_digest(
        str(expected).encode("utf-8", "replace"), str(given).encode("utf-8", "replace")
    )


def verify_meta_signature(raw_body: bytes, header_value: str | None, app_secret: str) -> bool:
    """Check `X-Hub-Signature-256` against the exact bytes received (never a re-serialised
    body: Meta escapes "/" and non-ASCII, so re-encoding changes the bytes)."""
    if not header_value or not app_secret:
        return False
    scheme, _, given = header_value.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


def subscription_challenge(query: Mapping[str, str], verify_token: str) -> str | None:
    """The `hub.challenge` to echo for Meta's GET verification, or None to refuse it."""
    if query.get("hub.mode") != "subscribe" or not _matches(
        verify_token, query.get("hub.verify_token")
    ):
        return None
    return query.get("hub.challenge")


@dataclass
class StatusUpdate:
    wamid: str
    status: str
    timestamp: datetime
    recipient_id: str | None
    error_code: str | None
    error_reason: str | None
    raw: dict[str, Any]


@dataclass
class WhatsAppMessage:
    wamid: str
    from_wa_id: str
    phone_number_id: str
    timestamp: datetime
    type: str
    text: str | None
    profile_name: str | None
    raw: dict[str, Any]


def parse_webhook(payload: Any) -> tuple[list[StatusUpdate], list[WhatsAppMessage]]:
    """Statuses and customer messages in a Cloud API webhook (Meta's, or forwarded by
    360dialog in the same envelope). Malformed items are skipped: one bad item must not make
    the provider retry, and lose, the whole batch."""
    statuses: list[StatusUpdate] = []
    inbound: list[WhatsAppMessage] = []
    for value in _values(payload):
        metadata = value.get("metadata")
        number_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        for item in _dicts(value.get("statuses")):
            update = _status(item)
            if update is not None:
                statuses.append(update)
        names = _profile_names(value.get("contacts"))
        for item in _dicts(value.get("messages")):
            message = _inbound(item, str(number_id) if number_id else "", names)
            if message is not None:
                inbound.append(message)
    return statuses, inbound


def status_error(update: StatusUpdate) -> ProviderError | None:
    """The failure a `failed` status reports, classified like a synchronous error."""
    if update.status != "failed":
        return None
    code = _int(update.error_code)
    if code is None:
        return ProviderError("permanent", update.error_reason or "WhatsApp reported a failure")
    return _classify("meta_cloud", code, update.error_reason or "")


def _values(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict):
        return []
    values: list[dict[str, Any]] = []
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if change.get("field", "messages") == "messages" and isinstance(value, dict):
                values.append(value)
    return values


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _status(item: dict[str, Any]) -> StatusUpdate | None:
    wamid, status = item.get("id"), item.get("status")
    when = _timestamp(item.get("timestamp"))
    if not isinstance(wamid, str) or not wamid or not isinstance(status, str) or when is None:
        return None
    recipient = item.get("recipient_id")
    errors = _dicts(item.get("errors"))
    code: str | None = None
    reason: str | None = None
    if errors:
        first = errors[0]
        code = str(first["code"]) if first.get("code") is not None else None
        error_data = first.get("error_data")
        details = error_data.get("details") if isinstance(error_data, dict) else None
        text = details or first.get("message") or first.get("title")
        reason = str(text) if text else None
    return StatusUpdate(
        wamid=wamid,
        status=status,
        timestamp=when,
        recipient_id=str(recipient) if recipient is not None else None,
        error_code=code,
        error_reason=reason,
        raw=item,
    )


def _profile_names(contacts: Any) -> dict[str, str]:
    names: dict[str, str] = {}
    for contact in _dicts(contacts):
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        if isinstance(name, str):
            names[str(contact.get("wa_id", ""))] = name
    return names


def _inbound(
    item: dict[str, Any], phone_number_id: str, names: dict[str, str]
) -> WhatsAppMessage | None:
    wamid, sender = item.get("id"), item.get("from")
    when = _timestamp(item.get("timestamp"))
    digits = re.sub(r"\D", "", str(sender)) if sender is not None else ""
    if not isinstance(wamid, str) or not wamid or not digits or when is None:
        return None
    kind = item.get("type")
    kind = kind if isinstance(kind, str) else "unknown"
    name = names.get(str(sender))
    if name is None and len(names) == 1:
        # A lone contact is the sender, even when its wa_id is written differently.
        name = next(iter(names.values()))
    return WhatsAppMessage(
        wamid=wamid,
        from_wa_id=f"+{digits}",
        phone_number_id=phone_number_id,
        timestamp=when,
        type=kind,
        text=_text(item, kind),
        profile_name=name,
        raw=item,
    )


def _text(item: dict[str, Any], kind: str) -> str | None:
    part = item.get(kind)
    if not isinstance(part, dict):
        return None
    if kind == "text":
        text = part.get("body")
    elif kind == "button":
        text = part.get("text")
    elif kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply")
        text = reply.get("title") if isinstance(reply, dict) else None
    else:
        text = part.get("caption")
    return text if isinstance(text, str) else None
