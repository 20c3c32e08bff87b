"""Twilio's webhooks: message status callbacks, inbound SMS, inbound calls and call status.

Every one is checked with the `twilio` library's RequestValidator against the public URL
Twilio called (PUBLIC_BASE_URL: proxies change scheme, host and port), keeping blank form
fields, before anything is parsed."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from gateway.domain.calls import CallProgress, HangUp, InboundCall
from gateway.domain.messages import InboundMessage
from gateway.providers.base import WebhookEvents, WebhookRejected, WebhookReply, WebhookRequest
from gateway.providers.twilio import statuses, twiml

_SIP_PREFIX = "sipheader_"


def form(request: WebhookRequest) -> dict[str, str]:
    try:
        text = request.body.decode()
    except UnicodeDecodeError:
        raise WebhookRejected("undecodable body") from None
    return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=False))


class TwilioWebhooks:
    name = "twilio"
    kinds = frozenset({"status", "sms", "voice", "call-status"})

    def __init__(self, auth_token: str | None) -> None:
        self.auth_token = auth_token

    def verify(self, kind: str, request: WebhookRequest, secrets: Any | None = None) -> None:
        if not self.auth_token:
            raise WebhookRejected("TWILIO_AUTH_TOKEN not set")
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            raise WebhookRejected("no signature")
        if not RequestValidator(self.auth_token).validate(request.url, form(request), signature):
            raise WebhookRejected("signature mismatch")

    def parse(
        self, kind: str, request: WebhookRequest, secrets: Any | None = None
    ) -> WebhookEvents:
        params = form(request)
        if kind == "status":
            return self._status(params, request)
        if kind == "sms":
            return self._sms(params)
        if kind == "voice":
            return WebhookEvents(fields=params, call=_call(params))
        return WebhookEvents(
            fields=params,
            progress=_progress(params),
            reply=WebhookReply(200, twiml.render(HangUp()), twiml.MEDIA_TYPE),
        )

    @staticmethod
    def _status(params: dict[str, str], request: WebhookRequest) -> WebhookEvents:
        found = statuses.report(
            params.get("MessageStatus") or params.get("SmsStatus") or "",
            "twilio_status",
            params,
            error_code=params.get("ErrorCode") or None,
            provider_message_id=params.get("MessageSid") or params.get("SmsSid") or None,
            # our message id, in the StatusCallback URL Twilio signed with the rest
            message_id=request.query.get("mid") or None,
        )
        return WebhookEvents(statuses=[found] if found else [], reply=WebhookReply(204))

    @staticmethod
    def _sms(params: dict[str, str]) -> WebhookEvents:
        reply = WebhookReply(200, twiml.no_reply(), twiml.MEDIA_TYPE)
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        if not sid:
            return WebhookEvents(reply=reply)
        message = InboundMessage(
            channel="sms",
            provider="twilio",
            provider_message_id=sid,
            from_address=params.get("From", ""),
            to_address=params.get("To", ""),
            body=params.get("Body", ""),
            payload=params,
        )
        return WebhookEvents(inbound=[message], reply=reply)


def _call(params: dict[str, str]) -> InboundCall:
    headers = {
        name[len("SipHeader_") :]: value
        for name, value in params.items()
        if name.lower().startswith(_SIP_PREFIX)
    }
    return InboundCall(
        call_sid=params.get("CallSid") or None,
        from_number=params.get("From") or None,
        to_number=params.get("To") or params.get("Called") or None,
        forwarded_from=params.get("ForwardedFrom") or None,
        sip_headers=headers,
    )


def _progress(params: dict[str, str]) -> CallProgress | None:
    call_sid = params.get("CallSid") or ""
    dialled = params.get("DialCallStatus") or None
    status = "completed" if dialled else params.get("CallStatus") or ""
    if not call_sid or not status:
        return None
    raw = params.get("CallDuration") or params.get("DialCallDuration") or ""
    return CallProgress(
        call_sid=call_sid,
        status=status,
        duration_seconds=float(raw) if raw.isdigit() else None,
        dial_status=dialled,
    )
