"""Telnyx's error answers as ProviderError kinds.

Every error body is `{"errors": [{"code", "title", "detail", "source", "meta"}]}`; the code
names the cause more precisely than the HTTP status, so it is read first
(https://developers.telnyx.com/development/api-fundamentals/api-errors,
https://developers.telnyx.com/docs/messaging/messages/error-codes).
"""

from __future__ import annotations

from typing import Any

import httpx

from gateway.domain.errors import ProviderError
from gateway.providers.http import json_object, retry_after, transport_error

# API request errors no retry will fix: the recipient or the message is the problem.
_PERMANENT = {
    "10002": "invalid phone number",
    "10016": "the phone number must be in +E.164 format",
    "40300": "the recipient replied STOP and is unsubscribed",
    "40301": "the 'to' address cannot receive this type of message",
    "40302": "the message is too large",
    "40309": "the destination region is not enabled on the messaging profile",
    "40310": "invalid 'to' phone number",
}
# The operator's account, number or profile is the problem: every message would fail.
_CONFIGURATION = {
    "10009": "Telnyx rejected the gateway's API key",
    "10010": "the gateway's API key may not send messages",
    "40100": "the sending number is not enabled for messaging",
    "40305": "the 'from' address cannot send from this account",
    "40306": "no alphanumeric sender is configured on the messaging profile",
}
_RATE_LIMITED = "10011"


def classify_response(response: httpx.Response) -> ProviderError:
    """An error answer (status 400 and above) as a ProviderError."""
    status = response.status_code
    code, said = _first_error(response)
    label = code or str(status)
    if status == 429 or code == _RATE_LIMITED:
        return ProviderError(
            "transient", "Telnyx rate limit (429)", code=label, retry_after=_retry_after(response)
        )
    if status >= 500:
        return ProviderError("transient", f"Telnyx server error {status}", code=label)
    if code in _PERMANENT:
        return ProviderError(
            "permanent",
            _PERMANENT[code],
            code=label,
            suppress="stop_keyword" if code == "40300" else None,
        )
    if code in _CONFIGURATION:
        return ProviderError("configuration", _CONFIGURATION[code], code=label)
    if status in (401, 403):
        return ProviderError("configuration", "Telnyx rejected the gateway's API key", code=label)
    if status == 404:
        return ProviderError("configuration", "no Telnyx API there: check its base URL", code=label)
    return ProviderError("permanent", f"Telnyx refused the message: {said}", code=label)


def classify_transport(exc: httpx.HTTPError, *, sent_something: bool) -> ProviderError:
    """A request that got no answer. A send that may have reached Telnyx (`sent_something`)
    has an unknown outcome; a read that got lost changes nothing and may simply be repeated."""
    found = transport_error(exc, "Telnyx")
    if found.kind == "unknown" and not sent_something:
        return ProviderError("transient", found.reason)
    return found


def _first_error(response: httpx.Response) -> tuple[str | None, str]:
    errors: Any = json_object(response).get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, f"HTTP {response.status_code}"
    first = errors[0]
    code = str(first.get("code") or "") or None
    said = first.get("detail") or first.get("title") or f"HTTP {response.status_code}"
    return code, str(said)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After if given, else Telnyx's own `x-ratelimit-reset` (seconds to the reset)."""
    for header in ("retry-after", "x-ratelimit-reset"):
        seconds = retry_after(response.headers.get(header))
        if seconds is not None:
            return seconds
    return None
