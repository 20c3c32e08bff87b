"""What a provider package can do, declared as protocols and checked when it is registered
(gateway/providers/registry.py), never discovered with getattr at run time.

A provider package owns its whole wire: building and sending requests, reading its records,
verifying and parsing its webhooks, and mapping its errors into `ProviderError(kind=…)`.
Services only ever see the project's own types (gateway/domain).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from gateway.domain.calls import BridgedCall, CallAnswer, CallProgress, InboundCall, SipNumber
from gateway.domain.errors import ErrorKind, ProviderError
from gateway.domain.messages import (
    InboundMessage,
    OutboundMessage,
    ProviderMessage,
    SendResult,
    StatusReport,
)

__all__ = [
    "ErrorKind",
    "InboundMessage",
    "Lookup",
    "OutboundMessage",
    "ProviderError",
    "ProviderMessage",
    "SendResult",
    "Sender",
    "StatusReport",
    "Telephony",
    "VoiceAgent",
    "WebhookEvents",
    "WebhookRejected",
    "WebhookReply",
    "WebhookRequest",
    "WebhookSource",
]


@runtime_checkable
class Sender(Protocol):
    """Sends messages on one channel. `name` is what the message log records as its
    provider ("twilio", "telnyx", "smtp", "meta_cloud", "360dialog")."""

    name: str
    channel: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Lookup(Protocol):
    """A provider that can be asked about the messages it took: how a lost answer is found
    again instead of being sent twice, and how a final status whose callback was lost (or
    a price reported late) is learnt."""

    async def fetch(self, provider_message_id: str) -> ProviderMessage: ...

    async def find_sent(
        self, to: str, sender: str | None, since: datetime
    ) -> list[ProviderMessage]: ...

    def report(self, found: ProviderMessage, source: str) -> StatusReport | None:
        """Its record as a status report in our vocabulary (None: a status we ignore)."""
        ...


@runtime_checkable
class Telephony(Protocol):
    """Renders the voice service's answers to a call (gateway/domain/calls.py) in the
    provider's own language."""

    name: str
    media_type: str

    def render(self, answer: CallAnswer) -> str: ...


@runtime_checkable
class VoiceAgent(Protocol):
    """The voice assistants' platform: bridges a call to an assistant (bypass: a call it
    creates, answered with its own document; SIP: an address per tenant that the telephony
    provider dials), keeps assistants."""

    async def create_bypass_call(
        self,
        phone_number_id: str,
        assistant_id: str,
        customer_number: str,
        metadata: Mapping[str, Any],
    ) -> BridgedCall: ...

    async def bridged_call(self, call_id: str) -> BridgedCall | None: ...

    async def create_sip_number(
        self, sip_uri: str, server_url: str, server_secret: str | None, name: str
    ) -> SipNumber: ...

    async def update_sip_number(
        self, number_id: str, server_url: str, server_secret: str | None, name: str
    ) -> SipNumber: ...

    async def create_assistant(self, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def update_assistant(
        self, assistant_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's request to one of our webhooks, as the web layer received it. `url` is
    the public URL the provider called (PUBLIC_BASE_URL + path + query), which signatures
    are computed over; header names are lower case."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookReply:
    """What the provider expects back (an empty TwiML document, a 204, a challenge…)."""

    status: int = 200
    body: str = ""
    media_type: str = "text/plain"


@dataclass
class WebhookEvents:
    """What one webhook request says: status reports and inbound messages to apply, a call
    coming in or how one went, the provider's own fields, and the reply it expects (the
    voice service writes the reply to a call)."""

    statuses: list[StatusReport] = field(default_factory=list)
    inbound: list[InboundMessage] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    call: InboundCall | None = None
    progress: CallProgress | None = None
    reply: WebhookReply = field(default_factory=WebhookReply)


class WebhookRejected(Exception):
    """Unsigned, forged, or not for us: answered 403, nothing is read further or written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class WebhookSource(Protocol):
    """A provider that calls our webhooks. `kinds` are the webhooks it has
    (`POST /webhooks/{provider}/{kind}`); `verify` raises WebhookRejected unless the
    request is authentic — `secrets` are the tenant's channel settings for webhooks scoped
    to a tenant (WhatsApp), else None (the provider holds the operator's own secret) — and
    `parse` turns an authentic request into our types."""

    name: str
    kinds: frozenset[str]

    def verify(self, kind: str, request: WebhookRequest, secrets: Any | None = None) -> None: ...

    def parse(
        self, kind: str, request: WebhookRequest, secrets: Any | None = None
    ) -> WebhookEvents: ...
