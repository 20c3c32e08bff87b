"""Vapi's REST API: the phone-call-provider bypass that bridges a Twilio call to an assistant,
and the assistant endpoints the operator's tooling uses.

Errors are translated at this edge into `VapiError`, classified like every provider error
(see `gateway.channels.base`): 429 and 5xx are transient; a rejected key (401/403), an unpaid
account (402) or an unknown assistant or phone number (404) is a configuration error; any
other refusal (400, 422: Vapi's NestJS validation) is permanent; a request that left without
an answer, or an answer that does not say what was created, is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from gateway.channels.base import ErrorKind, ProviderError

DEFAULT_BASE = "https://api.vapi.ai"


class VapiError(ProviderError):
    def __init__(self, kind: ErrorKind, reason: str, status: int | None = None) -> None:
        super().__init__(kind, reason, code=str(status) if status is not None else None)
        self.status = status


class VapiClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    async def create_bypass_call(
        self,
        phone_number_id: str,
        assistant_id: str,
        customer_number: str,
        metadata: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Create an inbound call whose telephony stays with us: Vapi answers the call object
        with the TwiML (`phoneCallProviderDetails.twiml`) that connects Twilio's media stream
        to the assistant."""
        body = {
            "phoneNumberId": phone_number_id,
            "phoneCallProviderBypassEnabled": True,
            "customer": {"number": customer_number},
            "assistantId": assistant_id,
            # metadata on the call and on the assistant: server messages carry the call, and
            # the assistant's copy is what a prompt or tool can see
            "assistantOverrides": {"metadata": dict(metadata)},
            "metadata": dict(metadata),
        }
        call = await self._request("POST", "/call", body)
        if not isinstance(call.get("id"), str) or not bridge_twiml(call):
            raise VapiError("unknown", "Vapi created a call but returned no id or TwiML")
        return call

    async def get_call(self, call_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/call/{call_id}")

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
            raise classify_exception(exc) from exc
        if response.status_code >= 300:
            raise classify_response(response)
        data = _json(response)
        if data is None:
            raise VapiError("unknown", "Vapi answered without a JSON object", response.status_code)
        return data

    async def aclose(self) -> None:
        await self._http.aclose()


def bridge_twiml(call: Mapping[str, Any]) -> str | None:
    details = call.get("phoneCallProviderDetails")
    twiml = details.get("twiml") if isinstance(details, Mapping) else None
    return twiml if isinstance(twiml, str) and twiml.strip() else None


def classify_response(response: httpx.Response) -> VapiError:
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
    return VapiError(kind, reason + suffix, status)


def classify_exception(exc: httpx.HTTPError) -> VapiError:
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return VapiError("transient", f"could not reach Vapi: {name}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return VapiError("configuration", f"the Vapi base URL is not usable: {exc}")
    # The request may have reached Vapi: a call may exist that we never heard of.
    return VapiError("unknown", f"no answer from Vapi: {name}")


def _message(response: httpx.Response) -> str:
    """Vapi's error body is NestJS's: `message` is a sentence or a list of them."""
    data = _json(response)
    message = data.get("message") if data else None
    if isinstance(message, list):
        return "; ".join(str(m) for m in message)[:300]
    return str(message)[:300] if message else ""


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
