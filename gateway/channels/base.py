"""The one small interface every provider adapter implements (httpx's transport shape).

ProviderError                   what went wrong at the provider, classified for the pipeline
 ├── kind="transient"           retry later with backoff (429, 5xx, SMTP 4xx, connect errors)
 ├── kind="permanent"           fail now with the reason (invalid number, unsubscribed, 5xx)
 ├── kind="configuration"       the tenant's settings are wrong (bad token, auth failure)
 └── kind="unknown"             the request left and no answer came back: never resend
                                blindly, reconcile first
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

ErrorKind = Literal["transient", "permanent", "configuration", "unknown"]


class ProviderError(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        reason: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        suppress: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.code = code
        self.retry_after = retry_after
        # a reason to add the recipient to the tenant's suppression list (e.g. "hard_bounce")
        self.suppress = suppress


@dataclass(frozen=True)
class OutboundMessage:
    """What an adapter needs to send one message; `config` is the channel's settings model
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
    raw: dict[str, Any] = field(default_factory=dict)


class Adapter(Protocol):
    provider: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def aclose(self) -> None: ...


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


@runtime_checkable
class Lookup(Protocol):
    """A provider that can be asked about the messages it took: how a lost answer is found
    again instead of being sent twice, and how a final status whose callback was lost is
    learnt."""

    async def fetch(self, provider_message_id: str) -> ProviderMessage: ...

    async def find_sent(
        self, to: str, sender: str | None, since: datetime
    ) -> list[ProviderMessage]: ...
