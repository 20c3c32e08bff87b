"""Vapi's server messages (`POST` to the server URL, body `{"message": {"type": …}}`) as the
gateway reads them. Only the fields the gateway uses are typed; everything else Vapi sends
is kept as it came (`extra="allow"`), so a new Vapi field never breaks a call, while a field
the gateway reads with the wrong type (`"call": "abc"`, `"cost": "abc"`) is a 422 naming it.

`toolCallList` is typed as a list only: each tool call is read on its own (`ToolCall`), so one
malformed call becomes one `error` result and the others still run.

A call that reached Vapi over SIP carries the INVITE's headers: in the call's provider details
(`call.phoneCallProviderDetails.sip.headers`, or `call.transport.sip.headers` in newer
payloads), and, for the `x-` ones, as template variables named without the prefix
(`call.assistantOverrides.variableValues`); `sip_headers` reads them from wherever they are.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.validation import Instant

Text = Annotated[str, Field(max_length=1_000_000)]
Ref = Annotated[str, Field(max_length=500)]
# Vapi reports USD with a few decimals; the bound keeps converted costs finite
Usd = Annotated[float, Field(ge=-1_000_000, le=1_000_000)]
Seconds = Annotated[float, Field(ge=0, le=10_000_000)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class Customer(_Part):
    number: Ref | None = None


class PhoneNumber(_Part):
    id: Ref | None = None
    number: Ref | None = None
    # a Vapi SIP number's address (`provider: "vapi"`)
    sipUri: Ref | None = None


class Overrides(_Part):
    metadata: dict[str, Any] | None = None
    variableValues: dict[str, Any] | None = None


class Sip(_Part):
    # the INVITE's headers, names as the sender wrote them
    headers: dict[str, Any] | None = None
    uri: Ref | None = None


class SipDetails(_Part):
    sip: Sip | None = None


class Assistant(_Part):
    id: Ref | None = None
    metadata: dict[str, Any] | None = None


class Call(_Part):
    id: Ref | None = None
    assistantId: Ref | None = None
    phoneNumberId: Ref | None = None
    phoneNumber: PhoneNumber | None = None
    customer: Customer | None = None
    metadata: dict[str, Any] | None = None
    assistantOverrides: Overrides | None = None
    phoneCallProviderDetails: SipDetails | None = None
    transport: SipDetails | None = None
    startedAt: Instant | None = None
    endedAt: Instant | None = None
    endedReason: Ref | None = None
    cost: Usd | None = None


class ToolFunction(_Part):
    name: Ref
    # an object or a JSON string of one; anything else is that tool call's error result
    arguments: Any = None


class ToolCall(_Part):
    id: Ref
    function: ToolFunction


class Artifact(_Part):
    transcript: Text | None = None
    recordingUrl: Ref | None = None


class Analysis(_Part):
    summary: Text | None = None


class Message(_Part):
    type: Ref
    call: Call | None = None
    assistant: Assistant | None = None
    phoneNumber: PhoneNumber | None = None
    toolCallList: list[Any] | None = None
    status: Ref | None = None
    endedReason: Ref | None = None
    startedAt: Instant | None = None
    endedAt: Instant | None = None
    durationSeconds: Seconds | None = None
    cost: Usd | None = None
    artifact: Artifact | None = None
    analysis: Analysis | None = None
    summary: Text | None = None
    transcript: Text | None = None
    recordingUrl: Ref | None = None


class Envelope(_Part):
    message: Message


def sip_headers(call: Call) -> dict[str, str]:
    """The SIP headers the call arrived with, names in lower case (empty: not a SIP call,
    or one without headers). The INVITE's own headers win over the template variables Vapi
    made of its `x-` headers."""
    found: dict[str, str] = {}
    overrides = call.assistantOverrides.variableValues if call.assistantOverrides else None
    for name, value in (overrides or {}).items():
        if isinstance(value, str):
            found[f"x-{name.lower()}"] = value
    for details in (call.transport, call.phoneCallProviderDetails):
        headers = details.sip.headers if details and details.sip else None
        for name, value in (headers or {}).items():
            if isinstance(value, str):
                found[name.lower()] = value
    return found
