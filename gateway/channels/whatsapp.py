"""WhatsApp through Meta's Cloud API or 360dialog (which fronts the same API), plus the pure
helpers the webhook routes need: signature check, subscription challenge, payload parsing.

Error translation (DESIGN §8): throughput limits (130429) and 5xx are transient; 131047
(customer-service window closed) and 131026 (undeliverable) are permanent; a bad or missing
token (190, 104, HTTP 401/403, 360dialog's own auth failures) is a configuration error. The
Cloud API mostly reports 131047 and 131026 later, as a `failed` status webhook:
`status_error` classifies those with the same table.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from gateway.channel_models import WhatsAppConfig
from gateway.channels.base import ErrorKind, OutboundMessage, ProviderError, SendResult

GRAPH_BASE = "https://graph.facebook.com"
GRAPH_VERSION = "v21.0"
D360_BASE = "https://waba-v2.360dialog.io"

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


class WhatsAppAdapter:
    # The Adapter protocol's name; each SendResult names the actual provider used.
    provider = "whatsapp"

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


def resolve_template(
    config: WhatsAppConfig, alias: str, components: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """`OutboundMessage.template` for one of the tenant's template aliases."""
    found = config.templates.get(alias)
    if found is None:
        raise ProviderError("permanent", f"no WhatsApp template is configured as {alias!r}")
    template: dict[str, Any] = {"name": found.name, "language": found.language}
    if components:
        template["components"] = components
    return template


def _template(template: Mapping[str, Any]) -> dict[str, Any]:
    name = template.get("name")
    if not isinstance(name, str) or not name:
        raise ProviderError("permanent", "the WhatsApp template has no name")
    language = template.get("language") or "en_US"
    # Graph wants {"code": "en_US"}; the tenant's settings hold the bare code.
    if isinstance(language, str):
        language = {"code": language}
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
    label = _label(provider)
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return ProviderError("transient", f"could not reach {label}: {name}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ProviderError("configuration", f"the {label} base URL is not http(s): {exc}")
    # The request may have reached the provider: the message may be on its way.
    return ProviderError("unknown", f"no answer from {label}: {name}")


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
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _retry_after(value: str | None) -> float | None:
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


# -- webhooks ------------------------------------------------------------------------------


def verify_meta_signature(raw_body: bytes, header_value: str | None, app_secret: str) -> bool:
    """Check `X-Hub-Signature-256` against the exact bytes received (never a re-serialised
    body: Meta escapes "/" and non-ASCII, so re-encoding changes the bytes)."""
    if not header_value or not app_secret:
        return False
    scheme, _, given = header_value.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


def subscription_challenge(query: Mapping[str, str], verify_token: str) -> str | None:
    """The `hub.challenge` to echo for Meta's GET verification, or None to refuse it."""
    if not verify_token or query.get("hub.mode") != "subscribe":
        return None
    given = query.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), verify_token.encode()):
        return None
    return query.get("hub.challenge")


@dataclass
class StatusUpdate:
    wamid: str
    status: str
    timestamp: datetime
    recipient_id: str | None
    error_code: str | None
    error_reason: str | None
    raw: dict[str, Any]


@dataclass
class InboundMessage:
    wamid: str
    from_wa_id: str
    phone_number_id: str
    timestamp: datetime
    type: str
    text: str | None
    profile_name: str | None
    raw: dict[str, Any]


def parse_webhook(payload: Any) -> tuple[list[StatusUpdate], list[InboundMessage]]:
    """Statuses and customer messages in a Cloud API webhook (Meta's, or forwarded by
    360dialog in the same envelope). Malformed items are skipped: one bad item must not make
    the provider retry, and lose, the whole batch."""
    statuses: list[StatusUpdate] = []
    inbound: list[InboundMessage] = []
    for value in _values(payload):
        metadata = value.get("metadata")
        number_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        for item in _dicts(value.get("statuses")):
            update = _status(item)
            if update is not None:
                statuses.append(update)
        names = _profile_names(value.get("contacts"))
        for item in _dicts(value.get("messages")):
            message = _inbound(item, str(number_id) if number_id else "", names)
            if message is not None:
                inbound.append(message)
    return statuses, inbound


def status_error(update: StatusUpdate) -> ProviderError | None:
    """The failure a `failed` status reports, classified like a synchronous error."""
    if update.status != "failed":
        return None
    code = _int(update.error_code)
    if code is None:
        return ProviderError("permanent", update.error_reason or "WhatsApp reported a failure")
    return _classify("meta_cloud", code, update.error_reason or "")


def _values(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict):
        return []
    values: list[dict[str, Any]] = []
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if change.get("field", "messages") == "messages" and isinstance(value, dict):
                values.append(value)
    return values


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _status(item: dict[str, Any]) -> StatusUpdate | None:
    wamid, status = item.get("id"), item.get("status")
    when = _timestamp(item.get("timestamp"))
    if not isinstance(wamid, str) or not wamid or not isinstance(status, str) or when is None:
        return None
    recipient = item.get("recipient_id")
    errors = _dicts(item.get("errors"))
    code: str | None = None
    reason: str | None = None
    if errors:
        first = errors[0]
        code = str(first["code"]) if first.get("code") is not None else None
        error_data = first.get("error_data")
        details = error_data.get("details") if isinstance(error_data, dict) else None
        text = details or first.get("message") or first.get("title")
        reason = str(text) if text else None
    return StatusUpdate(
        wamid=wamid,
        status=status,
        timestamp=when,
        recipient_id=str(recipient) if recipient is not None else None,
        error_code=code,
        error_reason=reason,
        raw=item,
    )


def _profile_names(contacts: Any) -> dict[str, str]:
    names: dict[str, str] = {}
    for contact in _dicts(contacts):
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        if isinstance(name, str):
            names[str(contact.get("wa_id", ""))] = name
    return names


def _inbound(
    item: dict[str, Any], phone_number_id: str, names: dict[str, str]
) -> InboundMessage | None:
    wamid, sender = item.get("id"), item.get("from")
    when = _timestamp(item.get("timestamp"))
    digits = re.sub(r"\D", "", str(sender)) if sender is not None else ""
    if not isinstance(wamid, str) or not wamid or not digits or when is None:
        return None
    kind = item.get("type")
    kind = kind if isinstance(kind, str) else "unknown"
    name = names.get(str(sender))
    if name is None and len(names) == 1:
        # A lone contact is the sender, even when its wa_id is written differently.
        name = next(iter(names.values()))
    return InboundMessage(
        wamid=wamid,
        from_wa_id=f"+{digits}",
        phone_number_id=phone_number_id,
        timestamp=when,
        type=kind,
        text=_text(item, kind),
        profile_name=name,
        raw=item,
    )


def _text(item: dict[str, Any], kind: str) -> str | None:
    part = item.get(kind)
    if not isinstance(part, dict):
        return None
    if kind == "text":
        text = part.get("body")
    elif kind == "button":
        text = part.get("text")
    elif kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply")
        text = reply.get("title") if isinstance(reply, dict) else None
    else:
        text = part.get("caption")
    return text if isinstance(text, str) else None
