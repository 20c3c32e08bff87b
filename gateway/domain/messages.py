"""Messages as every layer sees them: what is handed to a provider to send, what it answers,
what its records and its webhooks say — in the project's vocabulary, never a provider's
SDK objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True)
class OutboundMessage:
    """What a provider needs to send one message; `config` is the channel's settings model
    (secrets included) and `status_callback` the URL the provider should report to."""

    id: str
    tenant_id: str
    to: str
    body: str | None
    config: Any
    sender: str | None = None
    subject: str | None = None
    html_body: str | None = None
    template: dict[str, Any] | None = None
    status_callback: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str
    provider_status: str
    status: Literal["sending", "sent"] = "sent"
    num_segments: int | None = None
    # what the provider already said the message costs (Telnyx does, Twilio later)
    price: str | None = None
    price_unit: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderMessage:
    """A message as the provider's own records show it (its status in its vocabulary)."""

    provider_message_id: str
    status: str
    created: datetime | None = None
    body: str | None = None
    num_segments: int | None = None
    price: str | None = None
    price_unit: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class StatusReport:
    """A provider's word on one message's status, mapped to our vocabulary (`status`); the
    provider's own word is kept in `provider_status` and the whole payload in `payload`."""

    status: str
    provider_status: str
    source: str
    payload: dict[str, Any]
    error_code: str | None = None
    error_reason: str | None = None
    provider_message_id: str | None = None
    # our message id when the provider carries it back (Twilio's StatusCallback URL)
    message_id: str | None = None
    at: str | None = None
    # the provider as the message log names it (twilio, telnyx, meta_cloud, 360dialog)
    provider: str | None = None
    # what the provider said the message cost, when it says so in the report (Telnyx)
    price: str | None = None
    price_unit: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """A message a customer sent to one of our numbers (or a tenant's WhatsApp number)."""

    channel: str
    provider: str
    provider_message_id: str
    from_address: str
    to_address: str
    body: str
    payload: dict[str, Any]
