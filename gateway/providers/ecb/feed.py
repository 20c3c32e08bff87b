"""Parsing the ECB's `eurofxref-daily.xml`: a `gesmes:Envelope` whose `Cube time="YYYY-MM-DD"`
holds one `Cube currency="USD" rate="1.0866"` per currency, each rate in units of that
currency per euro.

The feed comes from the network, so the parser refuses what a reference-rate file never
holds: a document type declaration, entities, or more than `MAX_FEED_BYTES`. A hostile feed
(an entity expansion bomb, an external entity) is a `FeedError`, never an expansion."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from xml.parsers import expat

import httpx

MAX_FEED_BYTES = 256 * 1024
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class FeedError(ValueError):
    """The feed cannot be read as euro reference rates; the message says why."""


@dataclass(frozen=True)
class ReferenceRates:
    day: str  # the ECB's publication day, YYYY-MM-DD
    per_euro: dict[str, Decimal]  # units of each currency for one euro

    def eur_per_unit(self, currency: str) -> Decimal:
        try:
            rate = self.per_euro[currency]
        except KeyError:
            raise FeedError(f"the feed has no {currency} rate") from None
        return Decimal(1) / rate


def parse(document: bytes) -> ReferenceRates:
    if len(document) > MAX_FEED_BYTES:
        raise FeedError(f"the feed is larger than {MAX_FEED_BYTES} bytes")
    day: str | None = None
    rates: dict[str, Decimal] = {}

    def refuse(*_: object) -> None:
        raise FeedError("the feed declares a document type or entities")

    def refuse_reference(*_: object) -> int:
        raise FeedError("the feed refers to an external entity")

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal day
        if name.rpartition(" ")[2] != "Cube":  # namespaces resolved: "uri Cube"
            return
        if "time" in attributes:
            day = attributes["time"]
        if "currency" in attributes and "rate" in attributes:
            rates[attributes["currency"]] = _rate(attributes["currency"], attributes["rate"])

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse_reference
    parser.StartElementHandler = start
    try:
        parser.Parse(document, True)
    except expat.ExpatError as exc:
        raise FeedError(f"the feed is not well-formed XML: {exc}") from None
    if day is None or not _DAY.fullmatch(day):
        raise FeedError('the feed names no day (Cube time="YYYY-MM-DD")')
    if not rates:
        raise FeedError("the feed holds no rates")
    return ReferenceRates(day, rates)


def _rate(currency: str, text: str) -> Decimal:
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise FeedError(f"the {currency} rate {text[:40]!r} is not a number") from None
    if not rate.is_finite() or rate <= 0:
        raise FeedError(f"the {currency} rate {text[:40]!r} is not a positive number")
    return rate


async def fetch(client: httpx.AsyncClient, url: str) -> ReferenceRates:
    """GET and parse the feed at `url`; any failure is a `FeedError` saying why."""
    try:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise FeedError(f"the feed answered HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_FEED_BYTES:
                    raise FeedError(f"the feed is larger than {MAX_FEED_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise FeedError(f"could not fetch the feed: {type(exc).__name__}: {exc}"[:300]) from None
    return parse(bytes(body))
