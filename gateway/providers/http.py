"""What every HTTP provider shares: how a transport failure is classified (whether the
request may have reached the provider decides everything) on httpx and on aiohttp (the
client of the hottest path, Twilio's send), Retry-After, a JSON object body.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx

from gateway.domain.errors import ErrorKind, ProviderError


def transport_error(exc: httpx.HTTPError, label: str) -> ProviderError:
    """A request that failed without an HTTP answer. Before the connection was made nothing
    reached `label`: transient (and another provider may take the message). A URL the client
    cannot use is the operator's configuration. Anything after — a read timeout, a dropped
    connection — may hide a message the provider accepted: unknown, never resent blindly."""
    name = type(exc).__name__
    kind: ErrorKind
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        kind, reason = "transient", f"could not reach {label}: {name}"
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        kind, reason = "configuration", f"the {label} base URL is not usable: {exc}"
    elif isinstance(exc, httpx.TransportError):
        kind, reason = "unknown", f"no answer from {label}: {name}"
    else:
        kind, reason = "unknown", f"{label} client error: {name}"
    return ProviderError(kind, reason)


def aiohttp_error(exc: aiohttp.ClientError | TimeoutError, label: str) -> ProviderError:
    """`transport_error` for aiohttp, class for class: not connected (refused, DNS, TLS
    handshake, connect or pool timeout) is transient; an unusable URL is configuration;
    anything once connected (read timeout, dropped connection, bad answer) is unknown."""
    name = type(exc).__name__
    kind: ErrorKind
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        kind, reason = "transient", f"could not reach {label}: {name}"
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        kind, reason = "configuration", f"the {label} base URL is not usable: {exc}"
    elif isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError):
        kind, reason = "unknown", f"no answer from {label}: {name}"
    else:
        kind, reason = "unknown", f"{label} client error: {name}"
    return ProviderError(kind, reason)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response body when it is a JSON object, else {}."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
