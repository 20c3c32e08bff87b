"""WhatsApp through Meta's Cloud API or 360dialog (which fronts the same API): the send, its
body (text, or one of the tenant's templates), and its error translation.

Error translation (DESIGN §8): throughput limits (130429) and 5xx are transient; 131047
(customer-service window closed) and 131026 (undeliverable) are permanent; a bad or missing
token (190, 104, HTTP 401/403, 360dialog's own auth failures) is a configuration error. The
Cloud API mostly reports 131047 and 131026 later, as a `failed` status webhook:
`webhooks.status_error` classifies those with the same table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from gateway.channel_models import WhatsAppConfig, WhatsAppTemplate
from gateway.domain.errors import ErrorKind, ProviderError
from gateway.domain.messages import OutboundMessage, SendResult
from gateway.providers.http import json_object, retry_after, transport_error

# https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/
_RATE_LIMITED = {
    4: "the app hit Meta's API call rate limit",
    80007: "the WhatsApp Business Account hit its rate limit",
    130429: "the phone number hit its Cloud API throughput limit",
    131056: "too many messages to this recipient in a short time",
}
_UNAVAILABLE = {
    2: "the Cloud API is temporarily unavailable",
    131016: "the WhatsApp service is temporarily unavailable",
}
_CONFIGURATION = {
    10: "the access token lacks the permission to send for this number",
    104: "no access token was sent",
    190: "the access token is invalid or expired",
    200: "the access token lacks the permission to send for this number",
    131005: "the access token lacks the permission to send for this number",
    131031: "the WhatsApp Business Account is locked",
    133010: "the phone number is not registered with the Cloud API",
}
_PERMANENT = {
    131026: "undeliverable: the recipient may not use WhatsApp or has not accepted its terms",
    131047: (
        "the 24-hour customer-service window is closed (the customer has not written in the "
        "last 24 hours): only an approved template message can be sent"
    ),
    131051: "WhatsApp does not support this message type",
    132000: "the template's parameters do not match its placeholders",
    132001: "the template does not exist in this language",
}
_TOKEN = re.compile(r"[\x21-\x7e]+")


class WhatsAppCloud:
    # Meta's Cloud API and 360dialog share this wire; each SendResult names the one used.
    name = "whatsapp"
    channel = "whatsapp"

    def __init__(
        self, graph_base: str, graph_version: str, d360_base: str, timeout: float = 10.0
    ) -> None:
        self.graph_base = graph_base.rstrip("/")
        self.graph_version = graph_version.strip("/")
        self.d360_base = d360_base.rstrip("/")
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        config = message.config
        if not isinstance(config, WhatsAppConfig):
            raise ProviderError("configuration", "the channel settings are not WhatsApp settings")
        url, headers = self._endpoint(config)
        body = build_body(message)
        try:
            response = await self._http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise classify_exception(exc, config.provider) from exc
        if response.status_code >= 300:
            raise classify_response(response, config.provider)
        return _accepted(response, config.provider)

    def _endpoint(self, config: WhatsAppConfig) -> tuple[str, dict[str, str]]:
        if config.provider == "360dialog":
            key = _secret(config.api_key, "api_key")
            return f"{self.d360_base}/messages", {"D360-API-KEY": key}
        if not config.phone_number_id:
            raise ProviderError("configuration", "the WhatsApp phone_number_id is not set")
        token = _secret(config.access_token, "access_token")
        url = f"{self.graph_base}/{self.graph_version}/{config.phone_number_id}/messages"
        return url, {"Authorization": f"Bearer {token}"}

    async def aclose(self) -> None:
        await self._http.aclose()


def build_body(message: OutboundMessage) -> dict[str, Any]:
    """The Cloud API request body: a template when `message.template` is set, else text."""
    to = re.sub(r"\D", "", message.to)
    if not to:
        raise ProviderError("permanent", f"invalid recipient number {message.to!r}")
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    }
    if message.template is not None:
        body["type"] = "template"
        body["template"] = _template(message.template)
    elif message.body:
        body["type"] = "text"
        body["text"] = {"body": message.body, "preview_url": False}
    else:
        raise ProviderError("permanent", "the message has neither a body nor a template")
    return body


def template_object(
    template: WhatsAppTemplate, variables: dict[str, Any] | list[Any] | None = None
) -> dict[str, Any]:
    """Graph's `template` object for one of the tenant's templates, with its body parameters:
    positional (a list) or named (an object). The message keeps it as it is sent."""
    # Graph wants {"code": "fr"}; the tenant's settings hold the bare code.
    result: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if isinstance(variables, list) and variables:
        parameters = [{"type": "text", "text": str(v)} for v in variables]
        result["components"] = [{"type": "body", "parameters": parameters}]
    elif isinstance(variables, dict) and variables:
        parameters = [
            {"type": "text", "parameter_name": k, "text": str(v)} for k, v in variables.items()
        ]
        result["components"] = [{"type": "body", "parameters": parameters}]
    return result


def _template(template: Mapping[str, Any]) -> dict[str, Any]:
    name, language = template.get("name"), template.get("language")
    if not isinstance(name, str) or not name or not isinstance(language, dict):
        raise ProviderError("permanent", "the WhatsApp template has no name or language")
    result: dict[str, Any] = {"name": name, "language": language}
    components = template.get("components")
    if components:
        result["components"] = components
    return result


def _secret(value: Any, name: str) -> str:
    secret = value.get_secret_value().strip() if value is not None else ""
    if not secret:
        raise ProviderError("configuration", f"the WhatsApp {name} is not set")
    # httpx refuses non-ASCII header values with an error that is not an HTTPError.
    if not _TOKEN.fullmatch(secret):
        raise ProviderError("configuration", f"the WhatsApp {name} contains invalid characters")
    return secret


def _accepted(response: httpx.Response, provider: str) -> SendResult:
    data = _json(response)
    messages = data.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    wamid = first.get("id") if isinstance(first, dict) else None
    if not isinstance(wamid, str) or not wamid:
        # The provider said yes without saying to what: the message may well go out.
        raise ProviderError(
            "unknown", f"{_label(provider)} accepted the request but returned no message id"
        )
    status = first.get("message_status") if isinstance(first, dict) else None
    return SendResult(
        provider=provider,
        provider_message_id=wamid,
        provider_status=status if isinstance(status, str) and status else "accepted",
        status="sent",
        raw=data,
    )


def classify_response(response: httpx.Response, provider: str = "meta_cloud") -> ProviderError:
    """Translate an error answer (Graph's `{"error": …}` or 360dialog's `{"meta": …}`)."""
    data = _json(response)
    status = response.status_code
    code: int | None = None
    detail = ""
    error = data.get("error")
    meta = data.get("meta")
    if isinstance(error, dict):
        code = _int(error.get("code"))
        error_data = error.get("error_data")
        details = error_data.get("details") if isinstance(error_data, dict) else None
        detail = str(details or error.get("message") or "")
    elif isinstance(meta, dict) and meta.get("success") is False:
        status = _int(meta.get("http_code")) or status
        detail = str(meta.get("developer_message") or "")
    return _classify(
        provider,
        code,
        detail,
        http_status=status,
        retry_after=_retry_after(response.headers.get("retry-after")),
    )


def classify_exception(exc: httpx.HTTPError, provider: str = "meta_cloud") -> ProviderError:
    # the request may have reached the provider: the message may be on its way
    return transport_error(exc, _label(provider))


def _classify(
    provider: str,
    code: int | None,
    detail: str,
    *,
    http_status: int | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    label = _label(provider)
    tag = str(code) if code is not None else str(http_status) if http_status else None
    suffix = f" ({detail})" if detail else ""
    kind: ErrorKind
    if code in _RATE_LIMITED or http_status == 429:
        kind, reason = "transient", _RATE_LIMITED.get(code or 0, f"{label} rate limit (429)")
    elif code in _UNAVAILABLE:
        kind, reason = "transient", _UNAVAILABLE[code or 0]
    elif code in _CONFIGURATION:
        kind, reason = "configuration", _CONFIGURATION[code or 0]
    elif http_status in (401, 403):
        kind, reason = "configuration", f"{label} rejected the gateway's credentials"
    elif code in _PERMANENT:
        kind, reason = "permanent", _PERMANENT[code or 0]
    elif http_status is not None and http_status >= 500:
        kind, reason = "transient", f"{label} server error {http_status}"
    else:
        kind, reason = "permanent", f"{label} refused the message"
    return ProviderError(
        kind,
        f"{reason}{suffix}",
        code=tag,
        retry_after=retry_after if kind == "transient" else None,
    )


def _label(provider: str) -> str:
    return "360dialog" if provider == "360dialog" else "WhatsApp Cloud API"


def _json(response: httpx.Response) -> dict[str, Any]:
    return json_object(response)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _retry_after(value: str | None) -> float | None:
    return retry_after(value)
