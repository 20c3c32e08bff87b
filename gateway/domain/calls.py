"""Phone calls in the project's words: a call coming in, how it went, and what the caller is
answered — which the telephony provider renders in its own language (Twilio: TwiML)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InboundCall:
    """A call arriving on one of our numbers. Numbers are as the provider gave them (E.164
    when it could; "anonymous" or a SIP URI otherwise)."""

    call_sid: str | None
    from_number: str | None
    to_number: str | None
    forwarded_from: str | None = None
    # SIP headers the call carried (X-Tenant…), names as sent
    sip_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallProgress:
    """How a call went: its status in the provider's words, with what is known of its end."""

    call_sid: str
    status: str
    duration_seconds: float | None = None
    # set when the report is the end of a `Dial` to a fallback number
    dial_status: str | None = None


@dataclass(frozen=True)
class Say:
    """Say `text` and hang up."""

    text: str
    language: str


@dataclass(frozen=True)
class Transfer:
    """Say `text`, then put the caller through to `number`; when that call ends the provider
    reports to `action` (a URL of ours)."""

    number: str
    text: str
    language: str
    action: str | None = None


@dataclass(frozen=True)
class Passthrough:
    """An answer another party wrote in the provider's own language (Vapi's bridge TwiML)."""

    document: str


@dataclass(frozen=True)
class DialSip:
    """Put the caller through to a SIP address (a voice assistant's), with custom `X-`
    headers carried on the INVITE (names as written, values as they are: the telephony
    provider encodes them)."""

    uri: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HangUp:
    pass


CallAnswer = Say | Transfer | Passthrough | DialSip | HangUp


@dataclass(frozen=True)
class BridgedCall:
    """A call the voice assistants' platform created for a call we answer (bypass mode):
    its id there, and the answer that connects the caller to it."""

    call_id: str
    answer: Passthrough


@dataclass(frozen=True)
class SipNumber:
    """A SIP address the voice assistants' platform answers for one tenant (SIP mode): its
    id there and the URI the telephony provider dials."""

    id: str
    sip_uri: str
