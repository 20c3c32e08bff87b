"""Vapi's REST API: the two ways a call on our line reaches a tenant's assistant, and the
assistant endpoints the operator's tooling uses.

- bypass: `POST /call` with `phoneCallProviderBypassEnabled` creates an inbound call whose
  telephony stays with us; Vapi answers with the TwiML (`phoneCallProviderDetails.twiml`)
  that connects Twilio's media stream to the assistant.
- SIP: `POST /phone-number` with `provider: "vapi"` creates a SIP address
  (`sip:<user>@sip.vapi.ai`) that Twilio dials; with no assistant on it, Vapi asks our server
  URL which assistant answers (`assistant-request`).

Errors are translated at this edge into the project's `ProviderError`, classified like
every provider error (see `gateway.domain.errors`): 429 and 5xx are transient; a rejected
key (401/403), an unpaid account (402) or an unknown assistant or phone number (404) is a
configuration error; any other refusal (400, 422: Vapi's NestJS validation) is permanent; a
request that left without an answer, or an answer that does not say what was created, is
unknown. The HTTP status is the error's `code`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from gateway.domain.calls import BridgedCall, Passthrough, SipNumber
from gateway.domain.errors import ErrorKind, ProviderError
from gateway.providers.http import json_object, transport_error

DEFAULT_BASE = "https://api.vapi.ai"
# Vapi's `name` fields take at most 40 characters
NAME_LENGTH = 40


class VapiClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    # -- bypass ------------------------------------------------------------------------------

    async def create_bypass_call(
        self,
        phone_number_id: str,
        assistant_id: str,
        customer_number: str,
        metadata: Mapping[str, Any],
    ) -> BridgedCall:
        """Create an inbound call whose telephony stays with us, and the answer that connects
        the caller to it."""
        body = bypass_call_body(phone_number_id, assistant_id, customer_number, metadata)
        bridged = _bridged(await self._request("POST", "/call", body))
        if bridged is None:
            raise ProviderError("unknown", "Vapi created a call but returned no id or TwiML")
        return bridged

    async def bridged_call(self, call_id: str) -> BridgedCall | None:
        """A call created by `create_bypass_call`, again (None: it has no TwiML)."""
        return _bridged(await self._request("GET", f"/call/{call_id}"))

    # -- SIP ---------------------------------------------------------------------------------

    async def create_sip_number(
        self, sip_uri: str, server_url: str, server_secret: str | None, name: str
    ) -> SipNumber:
        """A SIP address without an assistant: Vapi asks `server_url` which one answers."""
        fields = _number_fields(server_url, server_secret, name)
        body = {"provider": "vapi", "sipUri": sip_uri, **fields}
        return _sip_number(await self._request("POST", "/phone-number", body))

    async def update_sip_number(
        self, number_id: str, server_url: str, server_secret: str | None, name: str
    ) -> SipNumber:
        """Point an existing SIP address at `server_url` again (a new secret, a new URL)."""
        body = _number_fields(server_url, server_secret, name)
        return _sip_number(await self._request("PATCH", f"/phone-number/{number_id}", body))

    # -- assistants --------------------------------------------------------------------------

    async def create_assistant(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._request("POST", "/assistant", dict(body))

    async def update_assistant(self, assistant_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._request("PATCH", f"/assistant/{assistant_id}", dict(body))

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "Vapi") from exc
        if response.status_code >= 300:
            raise classify_response(response)
        data = json_object(response)
        if not data:
            raise ProviderError(
                "unknown", "Vapi answered without a JSON object", code=str(response.status_code)
            )
        return data

    async def aclose(self) -> None:
        await self._http.aclose()


def bypass_call_body(
    phone_number_id: str, assistant_id: str, customer_number: str, metadata: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "phoneNumberId": phone_number_id,
        "phoneCallProviderBypassEnabled": True,
        "customer": {"number": customer_number},
        "assistantId": assistant_id,
        # metadata on the call and on the assistant: server messages carry the call, and the
        # assistant's copy is what a prompt or tool can see
        "assistantOverrides": {"metadata": dict(metadata)},
        "metadata": dict(metadata),
    }


def _number_fields(server_url: str, server_secret: str | None, name: str) -> dict[str, Any]:
    server: dict[str, Any] = {"url": server_url}
    if server_secret:
        server["secret"] = server_secret
    return {"name": name[:NAME_LENGTH], "server": server}


def _bridged(call: Mapping[str, Any]) -> BridgedCall | None:
    details = call.get("phoneCallProviderDetails")
    twiml = details.get("twiml") if isinstance(details, Mapping) else None
    call_id = call.get("id")
    if not isinstance(call_id, str) or not isinstance(twiml, str) or not twiml.strip():
        return None
    return BridgedCall(call_id, Passthrough(twiml))


def _sip_number(number: Mapping[str, Any]) -> SipNumber:
    number_id, sip_uri = number.get("id"), number.get("sipUri")
    if not isinstance(number_id, str) or not isinstance(sip_uri, str):
        raise ProviderError("unknown", "Vapi answered without the phone number's id or sipUri")
    return SipNumber(number_id, sip_uri)


def classify_response(response: httpx.Response) -> ProviderError:
    status = response.status_code
    detail = _message(response)
    suffix = f": {detail}" if detail else ""
    kind: ErrorKind
    if status == 429:
        kind, reason = "transient", "Vapi rate limit (429)"
    elif status >= 500:
        kind, reason = "transient", f"Vapi server error {status}"
    elif status in (401, 403):
        kind, reason = "configuration", "Vapi rejected the API key"
    elif status == 402:
        kind, reason = "configuration", "the Vapi account cannot pay for calls"
    elif status == 404:
        kind, reason = "configuration", "Vapi does not know this assistant or phone number"
    else:
        kind, reason = "permanent", f"Vapi refused the request ({status})"
    return ProviderError(kind, reason + suffix, code=str(status))


def _message(response: httpx.Response) -> str:
    """Vapi's error body is NestJS's: `message` is a sentence or a list of them."""
    message = json_object(response).get("message")
    if isinstance(message, list):
        return "; ".join(str(m) for m in message)[:300]
    return str(message)[:300] if message else ""
