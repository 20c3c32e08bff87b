"""The ECB's daily euro reference rates, emulated: `GET /stats/eurofxref/eurofxref-daily.xml`
answers a document of the real feed's shape (today's date, a fixed set of rates).

`with_feed(app)` serves it in front of another emulator's ASGI app, so `gateway sandbox`
needs no port of its own for it; `feed_app()` serves it alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

FEED_PATH = "/stats/eurofxref/eurofxref-daily.xml"
# units of each currency per euro, as the ECB publishes them
RATES = {"USD": "1.0850", "JPY": "169.21", "GBP": "0.8540", "CHF": "0.9780"}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def feed_document(day: str | None = None, rates: dict[str, str] | None = None) -> bytes:
    day = day or datetime.now(UTC).date().isoformat()
    cubes = "\n".join(
        f"\t\t\t<Cube currency='{currency}' rate='{rate}'/>"
        for currency, rate in (rates or RATES).items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
        'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
        "\t<gesmes:subject>Reference rates</gesmes:subject>\n"
        "\t<gesmes:Sender>\n\t\t<gesmes:name>European Central Bank</gesmes:name>\n"
        "\t</gesmes:Sender>\n"
        f"\t<Cube>\n\t\t<Cube time='{day}'>\n{cubes}\n\t\t</Cube>\n\t</Cube>\n"
        "</gesmes:Envelope>\n"
    ).encode()


async def _answer(send: Send) -> None:
    body = feed_document()
    headers = [(b"content-type", b"text/xml"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def with_feed(app: App) -> App:
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == FEED_PATH:
            await _answer(send)
            return
        await app(scope, receive, send)

    return serve


def feed_app() -> App:
    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return with_feed(not_found)
