"""The Twilio voice webhook: an inbound call on the shared line (or a dedicated number).

Twilio plays its own error message when a voice webhook fails, so once the signature is
valid this always answers TwiML (the voice service never raises); a forged or missing
signature answers 403 before anything is read or written.
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.routes.webhooks import twilio_form
from gateway.routing import Ctx, Endpoint


async def twilio_voice(ctx: Ctx) -> Response:
    params = await twilio_form(ctx, "twilio_voice")
    twiml = await ctx.gw.voice.handle_inbound_call(params)
    return Response(twiml, media_type="text/xml")


async def twilio_call_status(ctx: Ctx) -> Response:
    params = await twilio_form(ctx, "twilio_call_status")
    twiml = await ctx.gw.voice.call_status(params)
    return Response(twiml, media_type="text/xml")


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "/webhooks/twilio/voice",
        twilio_voice,
        "signature",
        "Twilio voice webhook: find the tenant and bridge the call to its Vapi assistant",
        tags=["webhooks"],
        form=True,
        description=(
            "Answers TwiML: Vapi's media-stream bridge, a `<Dial>` to the tenant's fallback "
            "number when Vapi fails or is slow, or a polite `<Say>` + `<Hangup>` when no "
            "tenant or no enabled phone channel is found."
        ),
    ),
    Endpoint(
        "POST",
        "/webhooks/twilio/call-status",
        twilio_call_status,
        "signature",
        "Twilio call status callback, and the end of a fallback <Dial>",
        tags=["webhooks"],
        form=True,
        description=(
            "Set it as the shared number's call status callback (and it is the `action` of "
            "the fallback `<Dial>`): the call's status, end time and duration are recorded; "
            "an ended call stays ended. Answers `<Hangup/>`."
        ),
    ),
]
