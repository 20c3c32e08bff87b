"""Answers to Twilio's voice webhooks, rendered as TwiML with the official library."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from gateway.domain.calls import CallAnswer, DialSip, HangUp, Passthrough, Say, Transfer

MEDIA_TYPE = "text/xml"
# Twilio passes custom headers on a <Sip> INVITE when they are written as the URI's query
# (`sip:user@host?X-Name=value&…`, values URL-encoded), and only `X-` names that are SIP
# tokens; the body of <Sip> must stay under 255 characters.
_HEADER_NAME = re.compile(r"[Xx]-[A-Za-z0-9-]{1,64}")
MAX_SIP_URI = 255


def sip_address(uri: str, headers: Mapping[str, str]) -> str:
    """`uri` with `headers` as Twilio sends them on the INVITE."""
    for name in headers:
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a custom SIP header Twilio can send")
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in headers.items())
    address = f"{uri}{'&' if '?' in uri else '?'}{query}" if query else uri
    if len(address) >= MAX_SIP_URI:
        raise ValueError(f"the SIP address is {len(address)} characters, Twilio takes < 255")
    return address


def render(answer: CallAnswer) -> str:
    if isinstance(answer, Passthrough):
        return answer.document
    response = VoiceResponse()
    if isinstance(answer, Say):
        response.say(answer.text, language=answer.language)
        response.hangup()
    elif isinstance(answer, Transfer):
        response.say(answer.text, language=answer.language)
        if answer.action:
            response.dial(answer.number, action=answer.action, method="POST")
        else:
            response.dial(answer.number)
    elif isinstance(answer, DialSip):
        # the caller hears ringing until the assistant picks up, not silence
        response.dial(answer_on_bridge=True).sip(sip_address(answer.uri, answer.headers))
    elif isinstance(answer, HangUp):
        response.hangup()
    return str(response)


def no_reply() -> str:
    """The empty messaging answer: Twilio sends nothing back to the texter."""
    return str(MessagingResponse())


class TwilioTelephony:
    """The telephony provider of the voice service: renders its answers."""

    name = "twilio"
    media_type = MEDIA_TYPE

    @staticmethod
    def render(answer: CallAnswer) -> str:
        return render(answer)
