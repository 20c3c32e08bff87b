"""The SMS template preview: encoding, length, segments and the billed price of a text, as
the send endpoint would count and bill it (`gateway.services.segments` and `pricing`, at the
tenant's price per segment: the operator's setting for the tenant, else
`SMS_PRICE_PER_SEGMENT`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.console.form_body import read_form
from gateway.console.render import render
from gateway.console.session import ConsoleUser, require_console
from gateway.services import pricing, segments

if TYPE_CHECKING:
    from gateway.wiring import Gateway


async def price_per_segment(gw: Gateway, user: ConsoleUser) -> float:
    state = await gw.channels.load(user.db, "sms")
    return pricing.sms_price_per_segment(
        state.operator_settings, float(gw.settings.typed.sms_price_per_segment)
    )


def preview(text: str, price: float) -> dict[str, Any]:
    info = segments.analyze(text)
    # the characters that force UCS-2, so the tenant can replace them (a curly apostrophe → ')
    forcing = (
        sorted({c for c in text if segments.analyze(c).encoding == "UCS-2"})
        if info.encoding == "UCS-2"
        else []
    )
    return {
        "encoding": info.encoding,
        "characters": info.characters,
        "segments": info.segments,
        "per_segment": info.per_segment,
        "price": price,
        "billed": pricing.billed_cost(price, info.segments),
        "forcing": forcing,
    }


async def sms_preview(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    user = await require_console(request, gw)
    form = await read_form(request)
    text = str(form.get("text") or "")
    price = await price_per_segment(gw, user)
    return render(request, "channels/sms_preview.html", {"preview": preview(text, price)})
