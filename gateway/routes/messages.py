"""Tenant messaging endpoints: send on each channel, list and read messages."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator
from starlette.responses import Response

from gateway.channel_models import MessageType
from gateway.errors import ValidationFailed
from gateway.regions import tenant_region
from gateway.routing import Ctx, Endpoint, json_response, page_response
from gateway.services import message_log
from gateway.services.message_log import MessageFilter
from gateway.services.messaging import Draft
from gateway.validation import (
    E164,
    BodyText,
    EmailAddress,
    HeaderText,
    Instant,
    RequestModel,
    TemplateName,
    normalize_e164,
    safe_body,
)


def _safe_scalar(value: str | int | float) -> str | int | float:
    return safe_body(value) if isinstance(value, str) else value


# template variables end up in the message body
Scalar = Annotated[str | int | float, AfterValidator(_safe_scalar)]
Label = Annotated[HeaderText, Field(min_length=1, max_length=100)]
Reference = Annotated[HeaderText, Field(max_length=100)]
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class SendBase(RequestModel):
    message_type: MessageType | None = None
    agent: Label | None = Field(None, description="Label of the AI agent that sends the message")
    metadata: dict[str, Any] = Field(default_factory=dict)
    call_id: Reference | None = None
    appointment_id: Reference | None = None
    send_at: Instant | None = Field(None, description="Send later (ISO-8601 with offset)")

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > 4096:
            raise ValueError("must stay under 4 KB of JSON")
        return value


def _one_of(first: object, second: object, names: str) -> None:
    if (first is None) == (second is None):
        raise ValueError(f"give exactly one of {names}")


class SmsSend(SendBase):
    to: E164
    body: Annotated[BodyText, Field(min_length=1, max_length=1600)] | None = None
    template: TemplateName | None = Field(None, description="Name of one of the SMS templates")
    variables: dict[str, Scalar] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _body_or_template(self) -> SmsSend:
        _one_of(self.body, self.template, "body or template")
        return self


class EmailSend(SendBase):
    to: EmailAddress
    subject: Annotated[HeaderText, Field(min_length=1, max_length=998)]
    text: Annotated[BodyText, Field(min_length=1, max_length=500_000)] | None = None
    html: Annotated[BodyText, Field(min_length=1, max_length=500_000)] | None = None

    @model_validator(mode="after")
    def _some_content(self) -> EmailSend:
        if self.text is None and self.html is None:
            raise ValueError("give text, html or both")
        return self


class WhatsAppSend(SendBase):
    to: E164
    text: Annotated[BodyText, Field(min_length=1, max_length=4096)] | None = None
    template: TemplateName | None = Field(None, description="Alias of a WhatsApp template")
    variables: list[Scalar] | dict[str, Scalar] | None = Field(
        None, description="Body parameters: a list (positional) or an object (named)"
    )

    @model_validator(mode="after")
    def _text_or_template(self) -> WhatsAppSend:
        _one_of(self.text, self.template, "text or template")
        return self


def _idempotency_key(ctx: Ctx) -> str | None:
    key = ctx.request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed.one(
            "Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces"
        )
    return key


def _common(body: SendBase) -> dict[str, Any]:
    return {
        "message_type": body.message_type,
        "agent": body.agent,
        "metadata": body.metadata,
        "call_id": body.call_id,
        "appointment_id": body.appointment_id,
        "send_at": body.send_at,
        "request": body.model_dump(mode="json"),
    }


async def _accept(ctx: Ctx, draft: Draft) -> Response:
    key = _idempotency_key(ctx)
    message, created = await ctx.gw.messaging.accept(ctx.tenant, draft, key)
    headers = None if created else {"Idempotent-Replayed": "true"}
    return json_response(message, status=202, headers=headers)


async def send_sms(ctx: Ctx) -> Response:
    await ctx.gw.check_send_rate(ctx.tenant.tenant.id)
    body: SmsSend = ctx.body
    draft = Draft(
        "sms",
        body.to,
        body=body.body,
        template=body.template,
        variables=body.variables,
        **_common(body),
    )
    return await _accept(ctx, draft)


async def send_email(ctx: Ctx) -> Response:
    await ctx.gw.check_send_rate(ctx.tenant.tenant.id)
    body: EmailSend = ctx.body
    draft = Draft(
        "email", body.to, body=body.text, subject=body.subject, html_body=body.html, **_common(body)
    )
    return await _accept(ctx, draft)


async def send_whatsapp(ctx: Ctx) -> Response:
    await ctx.gw.check_send_rate(ctx.tenant.tenant.id)
    body: WhatsAppSend = ctx.body
    draft = Draft(
        "whatsapp",
        body.to,
        body=body.text,
        template=body.template,
        variables=body.variables,
        **_common(body),
    )
    return await _accept(ctx, draft)


Status = Literal[
    "queued",
    "sending",
    "sent",
    "delivered",
    "read",
    "undelivered",
    "failed",
    "received",
    "canceled",
]


class MessageQuery(RequestModel):
    channel: Literal["sms", "email", "whatsapp"] | None = None
    status: Status | None = None
    to: Annotated[str, Field(max_length=320)] | None = Field(
        None,
        description="Recipient: a phone number (international, or national in the tenant's "
        "country) or an email address",
    )
    message_type: MessageType | None = None
    direction: Literal["outbound", "inbound"] | None = None
    since: Instant | None = Field(None, description="Created at or after (inclusive)")
    until: Instant | None = Field(None, description="Created before (exclusive)")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=500, description="next_cursor of the previous page")


def _recipient(ctx: Ctx, to: str | None) -> str | None:
    """The `to` filter as stored: an address lowercased, a number in E.164 (national numbers
    read in the tenant's country)."""
    if to is None:
        return None
    if "@" in to:
        return to.strip().lower()
    try:
        return normalize_e164(to, tenant_region(ctx.tenant.tenant))
    except ValueError as exc:
        raise ValidationFailed.one("to", str(exc)) from None


async def list_messages(ctx: Ctx) -> Response:
    query: MessageQuery = ctx.query
    where = MessageFilter(
        channel=query.channel,
        status=query.status,
        to=_recipient(ctx, query.to),
        message_type=query.message_type,
        direction=query.direction,
        since=query.since,
        until=query.until,
    )
    rows = await message_log.list_messages(ctx.tenant.db, where, query.limit + 1, query.cursor)
    return page_response("messages", rows, query.limit)


async def get_message(ctx: Ctx) -> Response:
    return json_response(await message_log.get_message(ctx.tenant.db, ctx.param("message_id")))


_SEND_RESPONSES = {
    409: "Channel disabled or not configured, recipient suppressed, or Idempotency-Key reused",
    429: "Rate limited (see Retry-After)",
}
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/channels/sms/send",
        send_sms,
        "tenant",
        "Send an SMS",
        scope="send",
        tags=["messaging"],
        body=SmsSend,
        status=202,
        responses=_SEND_RESPONSES,
    ),
    Endpoint(
        "POST",
        "/api/channels/email/send",
        send_email,
        "tenant",
        "Send an email",
        scope="send",
        tags=["messaging"],
        body=EmailSend,
        status=202,
        responses=_SEND_RESPONSES,
    ),
    Endpoint(
        "POST",
        "/api/channels/whatsapp/send",
        send_whatsapp,
        "tenant",
        "Send a WhatsApp message",
        scope="send",
        tags=["messaging"],
        body=WhatsAppSend,
        status=202,
        responses=_SEND_RESPONSES,
    ),
    Endpoint(
        "GET",
        "/api/messages",
        list_messages,
        "tenant",
        "List messages, newest first",
        scope="read",
        tags=["messaging"],
        query=MessageQuery,
    ),
    Endpoint(
        "GET",
        "/api/messages/{message_id}",
        get_message,
        "tenant",
        "A message with its events",
        scope="read",
        tags=["messaging"],
    ),
]
